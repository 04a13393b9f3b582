defmodule Munition.Options do
  @moduledoc false
  # The options of Munition.fire/4 and Munition.Pool, checked in one place:
  # each check raises ArgumentError naming the value. fire/4 checks them on
  # every call; a pool checks its defaults once when it starts and, on each
  # pooled call, only the options that call gives.

  alias Munition.Host.{Capabilities, Functions, WASI}
  alias Munition.Instance.State
  alias Munition.Runtime.Config

  # What decides how imports link: fixed for a pool's lifetime.
  @link_defaults [capabilities: [], host_functions: [], runtime: nil]
  # What bounds compiling the module fire/4 is given as bytes.
  @compile_defaults [limits: [], compile_timeout: nil]
  # What may differ from call to call.
  @call_defaults [
    fuel: nil,
    timeout: nil,
    max_memory: nil,
    forensics: :full,
    result: :values,
    alloc: "alloc",
    dump_dir: nil,
    wasi: nil
  ]

  @doc false
  # All of fire/4's options, checked; a map.
  @spec fire!(keyword()) :: map()
  def fire!(opts) do
    opts = Keyword.validate!(keyword!(opts), @link_defaults ++ @compile_defaults ++ @call_defaults)
    runtime = runtime!(opts[:runtime])
    host_functions = Functions.normalize!(opts[:host_functions])
    capabilities = Capabilities.expand!(opts[:capabilities], host_functions, runtime)

    opts
    |> Keyword.take(Keyword.keys(@call_defaults))
    |> call!()
    |> Map.merge(%{runtime: runtime, host_functions: host_functions, capabilities: capabilities})
    |> Map.put(:limits, Config.limits!(opts[:limits]))
    |> Map.put(:compile_timeout, compile_timeout!(opts[:compile_timeout]))
  end

  defp compile_timeout!(nil), do: nil
  defp compile_timeout!(value), do: timeout!(value, :compile_timeout)

  @doc false
  # The options of compiling (Munition.compile/2, validate/2): the limits
  # and the deadline, checked, for Munition.Runtime.compile/2. The call is
  # the compilation, so its :timeout bounds it, as does :compile_timeout,
  # whichever is shorter; with neither, config :munition, :compile_timeout.
  @spec compile!(keyword()) :: keyword()
  def compile!(opts) do
    timeout =
      case {compile_timeout!(opts[:compile_timeout]), opts[:timeout]} do
        {nil, nil} -> timeout!(Config.compile_timeout(), :compile_timeout)
        {compile_timeout, nil} -> compile_timeout
        {nil, timeout} -> timeout!(timeout)
        {compile_timeout, timeout} -> min(compile_timeout, timeout!(timeout))
      end

    [limits: Config.limits!(opts[:limits] || []), timeout: timeout]
  end

  @doc false
  # How long fire/4 waits for the compilation of bytes: its :compile_timeout
  # within its :timeout (which covers compiling and running), or the whole
  # :timeout.
  @spec compile_bound(map()) :: pos_integer()
  def compile_bound(%{compile_timeout: nil, timeout: timeout}), do: timeout
  def compile_bound(%{compile_timeout: compile_timeout, timeout: timeout}), do: min(compile_timeout, timeout)

  @doc false
  # The per-call options (`fuel`, `timeout`, `max_memory`, `forensics`,
  # `result`, `alloc`, `dump_dir`, `wasi`), checked; unset ones take the
  # defaults. `wasi` is kept as the keys given (see Munition.Host.WASI).
  @spec call!(keyword()) :: map()
  def call!(opts) do
    opts = Keyword.validate!(opts, @call_defaults)

    %{
      # Checked now; resolved against the module later (:auto, :adaptive).
      fuel: Munition.Fuel.Policy.check!(opts[:fuel]),
      timeout: timeout!(opts[:timeout] || Config.default_timeout()),
      max_memory: max_memory!(opts[:max_memory] || Config.default_max_memory()),
      forensics: one_of!(:forensics, opts[:forensics], [:full, :minimal, false]),
      result: one_of!(:result, opts[:result], [:values, :binary]),
      alloc: alloc!(opts[:alloc]),
      dump_dir: dump_dir!(opts[:dump_dir] || Config.dump_dir()),
      # From the application environment: read once for a pool.
      log_limit: Config.log_limit(),
      wasi: WASI.check!(opts[:wasi])
    }
  end

  @doc false
  # Overrides `base` (from fire!/1 or call!/1) with the per-call options
  # `opts` gives; only those are checked (the fuel spec for its shape: it is
  # resolved against the module by the caller).
  # The keys of a call's `wasi` override the base's one by one.
  @spec override!(map(), keyword()) :: map()
  def override!(base, []), do: base

  def override!(base, opts) do
    given = pooled_keys!(opts)
    checked = given |> call!() |> Map.take(Keyword.keys(given))

    checked =
      case checked do
        %{wasi: wasi} when wasi != nil -> %{checked | wasi: Map.merge(base.wasi || %{}, wasi)}
        _ -> checked
      end

    Map.merge(base, checked)
  end

  @doc false
  # Whether checking `opts` looks at the file system: preopened directories
  # are checked to exist, so a call that names some is checked again every
  # time instead of reusing an earlier check (`Munition.fire/4` and
  # `Munition.Pool` each keep a caller's last preparation).
  @spec checked_every_call?(keyword()) :: boolean()
  def checked_every_call?(opts) do
    wasi = Keyword.get(opts, :wasi)
    is_list(wasi) and Keyword.has_key?(wasi, :preopens)
  end

  defp pooled_keys!(opts) do
    case Keyword.split(opts, Keyword.keys(@call_defaults)) do
      {given, []} ->
        given

      {_given, other} ->
        raise ArgumentError,
              "a pooled call takes only #{inspect(Keyword.keys(@call_defaults))}; " <>
                "#{inspect(Keyword.keys(other))} are fixed when the pool starts"
    end
  end

  @doc false
  # The options of a call on another node (`:node` already taken out), checked
  # here for their shape only, the same whether or not the node is up: the
  # keys, and each value's type and range. What depends on the node that
  # runs the guest (the runtime module, the directories of wasi preopens,
  # fuel profiles, the names of host functions registered there) is checked
  # there, and its ArgumentError raised here. `at` is where host functions
  # run: `:caller` (they are checked here, and returned), `:node` (names
  # registered there) or `:pooled` (fixed by the pool; only per-call options
  # are allowed). Returns the host functions that run on this node.
  @spec remote!(keyword(), :caller | :node | :pooled) :: [Munition.Host.Function.t()]
  def remote!(opts, at) do
    opts =
      if at == :pooled,
        do: pooled_keys!(opts),
        else: Keyword.validate!(opts, @link_defaults ++ @compile_defaults ++ @call_defaults)

    remote_fuel!(opts[:fuel])
    _ = opts |> Keyword.take([:timeout, :max_memory, :forensics, :result, :alloc, :dump_dir]) |> call!()
    _ = opts |> Keyword.get(:wasi) |> without_preopens() |> WASI.check!()
    _ = if opts[:limits] not in [nil, []], do: Config.limits!(opts[:limits])
    _ = compile_timeout!(opts[:compile_timeout])

    case at do
      :caller ->
        host_functions = Functions.normalize!(opts[:host_functions])
        _ = Capabilities.expand!(opts[:capabilities], host_functions)
        host_functions

      :node ->
        Enum.each(list!(:host_functions, opts[:host_functions]), fn
          name when is_atom(name) ->
            :ok

          other ->
            raise ArgumentError,
                  "with host_functions_at: :node, host functions are names registered on that node; " <>
                    "a function given here never travels, got: #{inspect(other, limit: 5)}"
        end)

        Enum.each(list!(:capabilities, opts[:capabilities]), fn
          capability when is_atom(capability) -> :ok
          other -> raise ArgumentError, "capabilities must be a list of atoms, got: #{inspect(other)}"
        end)

        []

      :pooled ->
        []
    end
  end

  # Fuel profiles are the node's: only their shape is checked here.
  defp remote_fuel!(fuel) when is_atom(fuel), do: :ok
  defp remote_fuel!(fuel) when is_integer(fuel) and fuel > 0 and fuel <= 0x7FFF_FFFF_FFFF_FFFF, do: :ok

  defp remote_fuel!(other) do
    raise ArgumentError,
          "fuel must be a positive integer (at most 2^63-1), a profile name, :auto or :adaptive, got: #{inspect(other)}"
  end

  # Preopens name directories of the node that runs the guest.
  defp without_preopens(wasi) when is_list(wasi) do
    if Keyword.keyword?(wasi), do: Keyword.delete(wasi, :preopens), else: wasi
  end

  defp without_preopens(wasi), do: wasi

  defp list!(_name, list) when is_list(list), do: list
  defp list!(name, other), do: raise(ArgumentError, "#{name} must be a list, got: #{inspect(other)}")

  @doc false
  # Whether a call goes to another node (it gives `:node`): one BIF on the
  # local path. Anything but a proper keyword list is left to fire!/1, which
  # says what is wrong with it.
  @spec remote?(term()) :: boolean()
  def remote?(opts) when is_list(opts) do
    :lists.keymember(:node, 1, opts)
  rescue
    ArgumentError -> false
  end

  def remote?(_opts), do: false

  @doc false
  # The options of a call on another node (see Munition.Cluster), taken out
  # of `opts` and checked: `:node` (a node name, or `:any` for a pooled call
  # placed among the pool's members) and `:host_functions_at` (`:caller`,
  # the default, or `:node`). The rest is left for the node that runs the
  # guest. Only calls that give `:node` come here.
  @spec cluster!(keyword()) :: {%{node: node() | :any, host_functions_at: :caller | :node}, keyword()}
  def cluster!(opts) do
    {cluster, rest} = Keyword.split(keyword!(opts), [:node, :host_functions_at])

    node =
      case cluster[:node] do
        :any -> :any
        node when is_atom(node) and node not in [nil, true, false] -> node_name!(node)
        other -> raise ArgumentError, "node must be a node name (an atom), got: #{inspect(other)}"
      end

    at = one_of!(:host_functions_at, Keyword.get(cluster, :host_functions_at, :caller), [:caller, :node])
    {%{node: node, host_functions_at: at}, rest}
  end

  # A node's name is name@host: an atom without "@" names no node.
  defp node_name!(node) do
    if String.contains?(Atom.to_string(node), "@"),
      do: node,
      else: raise(ArgumentError, "node must be a node name (name@host) or :any, got: #{inspect(node)}")
  end

  @doc false
  # The State of one call. A module compiled by another runtime than the
  # call's is the caller's mistake (Munition.Module.runtime!/2).
  @spec state(map(), Munition.Module.t(), [tuple()], String.t(), list(), pos_integer()) :: State.t()
  def state(options, module, links, function, args, fuel) do
    %State{
      module: Munition.Module.runtime!(module, options.runtime),
      function: function,
      args: args,
      runtime: options.runtime,
      fuel: fuel,
      timeout: options.timeout,
      max_memory: options.max_memory,
      capabilities: options.capabilities,
      links: links,
      inert_links: Capabilities.inert_links(links, options.capabilities, options.runtime),
      host_functions: options.host_functions,
      forensics: options.forensics,
      result: options.result,
      alloc: options.alloc,
      log_limit: options.log_limit,
      wasi: WASI.config(options.wasi, options.capabilities),
      journal: {:record, Config.replay_log_limit()}
    }
  end

  @doc false
  @spec function!(term()) :: String.t()
  # Wasm names are UTF-8: other bytes can name no export.
  def function!(function) when is_binary(function) do
    if String.valid?(function),
      do: function,
      else:
        raise(
          ArgumentError,
          "function must be the export's name, UTF-8 as every wasm name, got: #{inspect(function)}"
        )
  end

  def function!(other) do
    raise ArgumentError, "function must be the export's name as a string, got: #{inspect(other)}"
  end

  @doc false
  @spec args!(term()) :: list()
  def args!(args) when is_list(args) do
    unless proper_list?(args), do: raise(ArgumentError, "args must be a proper list, got: #{inspect(args)}")
    args
  end

  def args!(other), do: raise(ArgumentError, "args must be a list, got: #{inspect(other)}")

  @doc false
  # A call's arguments, checked once the module's kind is known: a core
  # module's are numbers, the float atoms, or binaries; a component's are WIT
  # values, which the runtime checks against its types.
  @spec call_args!(Munition.Module.t(), list()) :: :ok
  def call_args!(%Munition.Module{kind: :component}, _args), do: :ok

  # Checked on every call: one pass, no closure.
  def call_args!(%Munition.Module{}, args), do: check_args!(args, args)

  defp check_args!([], _args), do: :ok

  defp check_args!([arg | rest], args)
       when is_number(arg) or is_binary(arg) or arg in [:nan, :infinity, :neg_infinity],
       do: check_args!(rest, args)

  defp check_args!([arg | _rest], _args) do
    raise ArgumentError,
          "arguments must be integers, floats (or :nan, :infinity, :neg_infinity) or binaries, got: #{inspect(arg)}"
  end

  defp check_args!(_improper_tail, args),
    do: raise(ArgumentError, "args must be a proper list, got: #{inspect(args)}")

  @doc false
  # Options are a proper keyword list; anything else is the caller's mistake.
  @spec keyword!(term()) :: keyword()
  def keyword!(opts) do
    if proper_list?(opts) and Enum.all?(opts, &match?({key, _} when is_atom(key), &1)),
      do: opts,
      else: raise(ArgumentError, "options must be a keyword list, got: #{inspect(opts)}")
  end

  defp proper_list?([]), do: true
  defp proper_list?([_ | tail]), do: proper_list?(tail)
  defp proper_list?(_), do: false

  @doc false
  # The runtime of a call: `nil` is the configured one. A module is a
  # runtime when it exports every non-optional callback of Munition.Runtime
  # (checked once per module: a call pays one :persistent_term read); one
  # that lacks some is the caller's mistake, named with what it lacks.
  @spec runtime!(term()) :: module()
  def runtime!(nil), do: checked_runtime!(Config.runtime(), "config :munition, :runtime")
  def runtime!(runtime) when is_atom(runtime), do: checked_runtime!(runtime, "runtime")
  def runtime!(other), do: raise(ArgumentError, "runtime must be a module, got: #{inspect(other)}")

  defp checked_runtime!(runtime, where) do
    if :persistent_term.get({__MODULE__, :runtime, runtime}, false) do
      runtime
    else
      check_runtime!(runtime, where)
    end
  end

  defp check_runtime!(runtime, where) do
    required =
      Munition.Runtime.behaviour_info(:callbacks) -- Munition.Runtime.behaviour_info(:optional_callbacks)

    missing =
      if Code.ensure_loaded?(runtime),
        do: Enum.reject(required, fn {name, arity} -> function_exported?(runtime, name, arity) end),
        else: :not_loaded

    case missing do
      [] ->
        # Written once per module: putting an equal value again is a no-op.
        :persistent_term.put({__MODULE__, :runtime, runtime}, true)
        runtime

      :not_loaded ->
        raise ArgumentError,
              "#{where} must be a module implementing Munition.Runtime, got: #{inspect(runtime)} " <>
                "(no such module)"

      missing ->
        raise ArgumentError,
              "#{where} must be a module implementing Munition.Runtime, got: #{inspect(runtime)}, " <>
                "which does not export #{Enum.map_join(Enum.sort(missing), ", ", fn {n, a} -> "#{n}/#{a}" end)}"
    end
  end

  # A 32-bit memory's whole range: the native pool reserves slots of that size.
  @max_memory_limit 4 * 1024 * 1024 * 1024

  defp max_memory!(value) when is_integer(value) and value > 0 and value <= @max_memory_limit, do: value

  defp max_memory!(value) do
    raise ArgumentError,
          "max_memory must be a positive integer of at most #{@max_memory_limit} bytes, got: #{inspect(value)}"
  end

  # A day: far beyond any sensible guest call, and well inside what
  # `receive ... after` and the native deadline can represent.
  @max_timeout 86_400_000

  @doc false
  # `name` is the option's, for the message: :timeout or :compile_timeout.
  @spec timeout!(term(), :timeout | :compile_timeout) :: pos_integer()
  def timeout!(value, name \\ :timeout)
  def timeout!(value, _name) when is_integer(value) and value > 0 and value <= @max_timeout, do: value

  def timeout!(value, name) do
    raise ArgumentError,
          "#{name} must be a positive integer of at most #{@max_timeout} ms, got: #{inspect(value)}"
  end

  defp dump_dir!(nil), do: nil
  defp dump_dir!(dir) when is_binary(dir), do: dir

  defp dump_dir!(other),
    do: raise(ArgumentError, "dump_dir must be a directory path (a string), got: #{inspect(other)}")

  defp alloc!(name) when is_binary(name), do: name

  defp alloc!(other),
    do: raise(ArgumentError, "alloc must be an export's name as a string, got: #{inspect(other)}")

  defp one_of!(name, value, allowed) do
    if value in allowed do
      value
    else
      raise ArgumentError, "#{name} must be one of #{inspect(allowed)}, got: #{inspect(value)}"
    end
  end
end

defmodule Munition.Host.Capabilities do
  @moduledoc """
  Capabilities: what a guest may reach on the host, granted per call.

  The check happens when imports are resolved, before any guest code runs: a
  module that imports anything not granted (nor linked inert, below) does
  not instantiate, and
  `Munition.fire/4` returns
  `{:error, {:capability_denied, [%{module: m, name: n, needs: capability_or_nil}]}}`
  listing every refused import, with the capability that would grant it where
  one exists. Calls pay nothing for the check afterwards.

  ## Built-in host functions

  | capability | import module | import name        | signature                                | what it does |
  |------------|---------------|--------------------|------------------------------------------|--------------|
  | `:time`    | `"munition"`  | `get_time_ms`      | `() -> i64`                              | wall clock, milliseconds since the Unix epoch |
  | `:time`    | `"munition"`  | `get_monotonic_ns` | `() -> i64`                              | monotonic nanoseconds since the instance was created |
  | `:random`  | `"munition"`  | `get_random`       | `() -> i64`                              | 64 random bits from the OS CSPRNG |
  | `:random`  | `"munition"`  | `random_bytes`     | `(ptr: i32, len: i32) -> ()`             | fills guest memory `[ptr, ptr+len)` from the OS CSPRNG |
  | `:log`     | `"munition"`  | `log`              | `(level: i32, ptr: i32, len: i32) -> ()` | records a log line (bytes `[ptr, ptr+len)`) |
  | `:abort`   | `"env"`       | `abort`            | `(msg: i32, file: i32, line: i32, col: i32) -> ()` | AssemblyScript's abort: ends the call as a `:trap` crash with trap `:abort` and the message |

  A host function given a range outside the guest's memory ends the call as a
  `:trap` crash with trap `:memory_out_of_bounds` (never touching host memory).

  Log lines are kept up to `Munition.Runtime.Config.log_limit/0` bytes per call
  (later lines are counted, not kept), returned in the metadata of a successful
  call as `:log` and in every dump.

  ## WASI

  Every function of WASI preview 1 (`wasi_snapshot_preview1`) but sockets
  and `proc_raise` is a built-in too, each under one capability:
  `:wasi_stdio`, `:wasi_args`, `:wasi_env`, `:wasi_clock`, `:wasi_random`,
  `:wasi_exit`, `:wasi_poll`, `:wasi_fs`, `:wasi_fs_write`. The table of
  which function needs which, and what they do, is in `Munition.Host.WASI`.

  A component's outgoing HTTP (WASI 0.2's `wasi:http`) is granted by
  `:wasi_http`, and reaches only the hosts the call lists in its `:wasi`
  option's `:http_allow` (see "Outgoing HTTP" in `Munition.Host.WASI`).

  ## Inert links

  A grant matches what the guest can reach, not what it imports. A guest
  built with wasi-libc imports the file function behind every libc call it
  contains (`fopen`'s `path_open`, `remove`'s `path_unlink_file`, ...),
  whether or not a run calls them; without `:wasi_fs` it has no directory
  to call them on, since preopens are given only with `:wasi_fs`, and
  without `:wasi_fs_write` no writable one.
  So a call granting `:wasi_stdio` (as `:wasi` does) links the file
  functions of `:wasi_fs` and `:wasi_fs_write` it does not grant *inert*:
  linked, answering the guest with WASI's errno (`EBADF`: no directory
  descriptor; `EPERM` under a read-only one), reaching nothing on the host.
  `fd_renumber` is the exception, refused as before: with no directory it
  would still move or close the guest's stdin, stdout and stderr on
  Wasmtime, where Wasmi answers `EBADF`. `Munition.Host.WASI` says what each
  function does with nothing to reach.

  The audit trail says what was linked so: `:inert_links` in the metadata
  of every call and in every dump (`Munition.Forensics.Dump`), `[]` when
  nothing was, else one `t:inert_link/0` per such import:

      %{module: "wasi_snapshot_preview1", name: "path_open", needs: :wasi_fs, reason: :no_preopen}

  `needs` is the capability that would grant it, `reason` why it reaches
  nothing: `:no_preopen` (a function of `:wasi_fs`: the guest has no
  directory) or `:no_writable_preopen` (one of `:wasi_fs_write`: none it has
  is writable). A component's WASI 0.2 imports have reasons of their own:
  `:no_preopen` for `wasi:filesystem`, `:no_network` for `wasi:sockets`,
  `:no_http_grant` for `wasi:http/types` and `wasi:http/outgoing-handler`
  without `:wasi_http` (every request is denied), and `:not_implemented`
  for an interface Munition does not implement. `inert_links/3` computes
  the list, and `mix munition.validate --cap ...` prints it.

  ## Groups

    * `:basic` - `[:time, :log, :abort]`
    * `:all` - every capability of the built-ins above (not WASI's: granting
      `:all` never grants WASI)
    * `:wasi` - every WASI capability but `:wasi_fs` and `:wasi_fs_write`
      (whose file functions it links inert: see "Inert links") and
      `:wasi_http` (outgoing HTTP is granted by name only)

  Capabilities of Elixir host functions (`Munition.Host.Functions`) are the atoms
  those functions declare; granting one that no built-in and no host function of
  the call declares is an `ArgumentError`.
  """

  # The built-ins themselves (which capability grants which import, with
  # which signature) are the runtime's: each call's own runtime is asked
  # (`builtins/1` reads its table once per runtime module and keeps it in
  # :persistent_term). The table above documents Munition's two runtimes'.
  @basic [:time, :log, :abort]
  @groups [:all, :basic, :wasi]

  # The WASI 0.2 interfaces wasmtime-wasi implements, without `wasi:` and the
  # version (the native side's `WASI_P2`, engine/component/module.rs).
  @wasi_p2 ~w(io/error io/poll io/streams clocks/wall-clock clocks/monotonic-clock filesystem/types
              filesystem/preopens random/random random/insecure random/insecure-seed cli/exit
              cli/environment cli/stdin cli/stdout cli/stderr cli/terminal-input cli/terminal-output
              cli/terminal-stdin cli/terminal-stdout cli/terminal-stderr sockets/tcp
              sockets/tcp-create-socket sockets/udp sockets/udp-create-socket sockets/instance-network
              sockets/network sockets/ip-name-lookup http/types http/outgoing-handler)

  # Capabilities of no built-in: a component's outgoing HTTP (`wasi:http`),
  # known to every runtime (a core module never needs it), in no group.
  @component_capabilities [:wasi_http]

  @typedoc "A wasm value type a host function can take or return."
  @type val_type :: :i32 | :i64 | :f32 | :f64

  @typedoc """
  An import linked without the capability that would grant it, because it
  reaches nothing in the call (see "Inert links"): `needs` is that
  capability, `reason` why nothing is in reach, `:no_preopen` (the guest has
  no directory), `:no_writable_preopen` (it has no writable one), and for a
  component's WASI 0.2 imports `:no_network`, `:no_http_grant` or
  `:not_implemented`.
  """
  @type inert_link :: %{
          module: String.t(),
          name: String.t(),
          needs: atom(),
          reason: :no_preopen | :no_writable_preopen | :no_network | :no_http_grant | :not_implemented
        }

  @typedoc """
  What one import is linked to, for the runtime: a built-in host function by
  its import name, or the Elixir host function at `index` in the call's list,
  with its signature.
  """
  @type link ::
          {:builtin, module :: String.t(), name :: String.t()}
          | {:elixir, module :: String.t(), name :: String.t(), index :: non_neg_integer(),
             params :: [val_type()], results :: [val_type()]}

  @doc """
  The built-in host functions of `runtime` (the configured one by default),
  one map per import (see the table above), as its
  `c:Munition.Runtime.builtins/0` reports them:
  `%{capability: atom, module: string, name: string, params: [type], results: [type]}`.
  """
  @spec builtins(module()) :: [map()]
  def builtins(runtime \\ Munition.Runtime.Config.runtime()), do: table(runtime).builtins

  @doc "Capabilities that unlock built-in host functions of `runtime` (the configured one by default)."
  @spec builtin_capabilities(module()) :: [atom()]
  def builtin_capabilities(runtime \\ Munition.Runtime.Config.runtime()), do: table(runtime).capabilities

  defp table(runtime) do
    key = {__MODULE__, runtime}

    case :persistent_term.get(key, nil) do
      nil ->
        builtins = runtime.builtins()
        capabilities = builtins |> Enum.map(& &1.capability) |> Enum.uniq()
        wasi = Munition.Host.WASI.capabilities(builtins)

        table = %{
          builtins: builtins,
          by_import: Map.new(builtins, &{{&1.module, &1.name}, &1}),
          capabilities: capabilities ++ @component_capabilities,
          all: capabilities -- wasi,
          wasi: Munition.Host.WASI.group(builtins)
        }

        # Written once per runtime module: putting an equal value again is a no-op.
        :persistent_term.put(key, table)
        table

      table ->
        table
    end
  end

  @doc "The names of the groups `expand!/2` accepts: `:all`, `:basic`, `:wasi`."
  @spec groups() :: [atom()]
  def groups, do: @groups

  defp group(:basic, _table), do: @basic
  defp group(:all, table), do: table.all
  defp group(:wasi, table), do: table.wasi

  @doc """
  Validates `capabilities` and expands groups, returning a sorted list.

  `host_functions` are the host functions of the call (from
  `Munition.Host.Functions.new!/1`): their capabilities are known too, as
  are the built-ins of `runtime` (the configured one by default), the call's
  runtime.

      iex> Munition.Host.Capabilities.expand!([:basic, :random])
      [:abort, :log, :random, :time]
      iex> Munition.Host.Capabilities.expand!([:wasi])
      [:wasi_args, :wasi_clock, :wasi_env, :wasi_exit, :wasi_poll, :wasi_random, :wasi_stdio]
  """
  @spec expand!([atom()], [Munition.Host.Functions.t()], module()) :: [atom()]
  def expand!(capabilities, host_functions \\ [], runtime \\ Munition.Runtime.Config.runtime())

  def expand!(capabilities, host_functions, runtime) when is_list(capabilities) do
    table = table(runtime)
    known = table.capabilities ++ Enum.map(host_functions, & &1.capability)

    capabilities
    |> Enum.flat_map(fn
      capability when capability in @groups ->
        group(capability, table)

      capability when is_atom(capability) ->
        if capability in known do
          [capability]
        else
          raise ArgumentError,
                "unknown capability: #{inspect(capability)} (known: #{inspect(Enum.uniq(known) ++ @groups)})"
        end

      other ->
        raise ArgumentError, "capabilities must be atoms, got: #{inspect(other)}"
    end)
    |> Enum.uniq()
    |> Enum.sort()
  end

  def expand!(other, _host_functions, _runtime) do
    raise ArgumentError, "capabilities must be a list of atoms, got: #{inspect(other)}"
  end

  @doc """
  Decides what each import of `module` links to, given the `granted` (expanded)
  capabilities, the call's host functions and the built-ins of `runtime`, the
  call's runtime (by default the one that compiled `module`).

  Returns `{:ok, links}` for the runtime, one `t:link/0` per import in import
  order, `{:error, {:capability_denied, denied}}` listing every import that is
  not granted, or `{:error, {:instantiation_failed, message}}` for a granted
  import whose signature differs from the host function's. This is the only
  place signatures are compared before the engine instantiates.

  A WASI file function whose capability is not granted is linked inert when
  `:wasi_stdio` is (see "Inert links" above); `inert_links/3` lists them.
  """
  @spec resolve(Munition.Module.t(), [atom()], [Munition.Host.Functions.t()], module() | nil) ::
          {:ok, [link()]} | {:error, {:capability_denied, [map()]} | {:instantiation_failed, String.t()}}
  def resolve(module, granted, host_functions, runtime \\ nil)

  def resolve(%Munition.Module{kind: :component} = module, granted, host_functions, _runtime) do
    indexed = Enum.with_index(host_functions)

    {links, denied} =
      Enum.reduce(module.imports, {[], []}, fn import, {links, denied} ->
        case link_component(import, granted, indexed) do
          {:ok, link} -> {[link | links], denied}
          {:denied, needs} -> {links, [%{module: import.module, name: import.name, needs: needs} | denied]}
          {:error, _} = error -> throw(error)
        end
      end)

    if denied == [],
      do: {:ok, Enum.reverse(links)},
      else: {:error, {:capability_denied, Enum.reverse(denied)}}
  catch
    {:error, _} = error -> error
  end

  def resolve(%Munition.Module{} = module, granted, host_functions, runtime) do
    with {:ok, resolved} <- link_all(module, granted, host_functions, runtime || module.runtime) do
      case Enum.find(resolved, fn {import, _link, signature} ->
             {import.params, import.results} != signature
           end) do
        nil ->
          {:ok, Enum.map(resolved, fn {_import, link, _signature} -> link end)}

        {import, _link, {params, results}} ->
          {:error,
           {:instantiation_failed,
            "import #{import.module}.#{import.name} has signature #{inspect(import.params)} -> " <>
              "#{inspect(import.results)}, but the host function is #{inspect(params)} -> #{inspect(results)}"}}
      end
    end
  end

  @doc """
  The imports among `links` (from `resolve/4`) linked inert: built-ins whose
  capability is not among `granted`, which reach nothing in the call (see
  "Inert links" above), one `t:inert_link/0` each, in import order. `[]` for
  most calls.

      iex> wat = ~s{(module
      ...>   (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
      ...>   (import "wasi_snapshot_preview1" "path_open" (func (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32))))}
      iex> {:ok, module} = Munition.compile(wat)
      iex> granted = Munition.Host.Capabilities.expand!([:wasi])
      iex> {:ok, links} = Munition.Host.Capabilities.resolve(module, granted, [])
      iex> Munition.Host.Capabilities.inert_links(links, granted, module.runtime)
      [%{module: "wasi_snapshot_preview1", name: "path_open", needs: :wasi_fs, reason: :no_preopen}]
  """
  @spec inert_links([link()], [atom()], module()) :: [inert_link()]
  def inert_links(links, granted, runtime) do
    # Only a call granting :wasi_stdio and not both file capabilities can
    # have any among a core module's: the others (most calls) pay one check.
    # A component's WASI 0.2 links are named by interface (`wasi:...`).
    cond do
      Enum.any?(links, &match?({:builtin, "wasi:" <> _, _}, &1)) ->
        component_inert(links, granted)

      :wasi_stdio in granted and not (:wasi_fs in granted and :wasi_fs_write in granted) ->
        core_inert(links, granted, runtime)

      true ->
        []
    end
  end

  defp core_inert(links, granted, runtime) do
    by_import = table(runtime).by_import

    for {:builtin, module, name} <- links,
        builtin = Map.fetch!(by_import, {module, name}),
        reason = Munition.Host.WASI.inert(builtin, granted) do
      %{module: module, name: name, needs: builtin.capability, reason: reason}
    end
  end

  # A component's WASI 0.2 links that reach nothing (see `link_component/3`):
  # files without `:wasi_fs` (no preopen is given), sockets (the network is
  # denied: no capability grants it yet), outgoing HTTP without `:wasi_http`
  # (no allowlist is given: every request is denied) and interfaces
  # Munition does not implement (a call traps).
  defp component_inert(links, granted) do
    # A generator, not a match: most interfaces have no reason (nil).
    for {:builtin, "wasi:" <> rest = interface, name} <- links,
        {needs, reason} <- List.wrap(component_inert_reason(rest, granted)) do
      %{module: interface, name: name, needs: needs, reason: reason}
    end
  end

  defp component_inert_reason("filesystem/" <> _, granted),
    do: if(:wasi_fs not in granted, do: {:wasi_fs, :no_preopen})

  defp component_inert_reason("sockets/" <> _, _granted), do: {nil, :no_network}

  defp component_inert_reason("http/" <> _ = interface, granted) do
    cond do
      not wasi_p2?(interface) -> {nil, :not_implemented}
      :wasi_http not in granted -> {:wasi_http, :no_http_grant}
      true -> nil
    end
  end

  defp component_inert_reason(interface, _granted) do
    unless Munition.Host.Capabilities.wasi_p2?(interface), do: {nil, :not_implemented}
  end

  defp link_all(%Munition.Module{imports: imports}, granted, host_functions, runtime) do
    indexed = Enum.with_index(host_functions)
    builtins = builtins(runtime)

    {resolved, denied} =
      Enum.reduce(imports, {[], []}, fn import, {resolved, denied} ->
        case link(import, granted, indexed, builtins) do
          {:ok, link, signature} -> {[{import, link, signature} | resolved], denied}
          {:denied, needs} -> {resolved, [%{module: import.module, name: import.name, needs: needs} | denied]}
        end
      end)

    if denied == [],
      do: {:ok, Enum.reverse(resolved)},
      else: {:error, {:capability_denied, Enum.reverse(denied)}}
  end

  # {:ok, link, {params, results}} with the signature of what it links to, or
  # {:denied, capability_or_nil}.
  defp link(%{kind: :func} = import, granted, host_functions, builtins) do
    host = Enum.find(host_functions, fn {f, _} -> f.module == import.module and f.name == import.name end)
    builtin = Enum.find(builtins, &(&1.module == import.module and &1.name == import.name))

    cond do
      host != nil ->
        {function, index} = host

        if function.capability in granted,
          do:
            {:ok, {:elixir, import.module, import.name, index, function.params, function.results},
             {function.params, function.results}},
          else: {:denied, function.capability}

      builtin != nil ->
        # An inert file function is linked as a granted one is: what keeps
        # it from reaching anything is the call's WASI configuration, which
        # gives no directory without :wasi_fs and no writable one without
        # :wasi_fs_write (Munition.Host.WASI.config/2).
        if builtin.capability in granted or Munition.Host.WASI.inert(builtin, granted) != nil,
          do: {:ok, {:builtin, import.module, import.name}, {builtin.params, builtin.results}},
          else: {:denied, builtin.capability}

      true ->
        {:denied, nil}
    end
  end

  defp link(_import, _granted, _host_functions, _builtins), do: {:denied, nil}

  # A component's import. WASI 0.2 interfaces are granted as preview 1's
  # functions are (`wasi_capability/1`); those that reach nothing unless
  # something else is given (files without a preopen, sockets, which the
  # context denies, outgoing HTTP without `:wasi_http` and an allowlist, and
  # interfaces Munition does not implement, which trap if called) are
  # linked without a capability: a plugin that imports them and never uses
  # them runs. Any other interface is served by an Elixir
  # host function given as `{interface, name, :wit, capability, fun}`.
  defp link_component(%{module: "wasi:" <> _ = interface} = import, granted, _host_functions) do
    case wasi_capability(interface) do
      nil ->
        {:ok, {:builtin, interface, import.name}}

      capability ->
        if capability in granted, do: {:ok, {:builtin, interface, import.name}}, else: {:denied, capability}
    end
  end

  defp link_component(import, granted, host_functions) do
    case Enum.find(host_functions, fn {f, _} -> f.module == import.module and f.name == import.name end) do
      nil ->
        {:denied, nil}

      {%{params: :wit} = function, index} ->
        cond do
          function.capability not in granted ->
            {:denied, function.capability}

          import.refused != nil ->
            {:error,
             {:instantiation_failed,
              "import #{import.module}.#{import.name} cannot be served: #{import.refused}"}}

          not is_function(function.fun, length(import.params) + 1) ->
            {:error,
             {:instantiation_failed,
              "import #{import.module}.#{import.name} takes #{length(import.params)} argument(s), so its " <>
                "host function's fun must have arity #{length(import.params) + 1} (context first)"}}

          true ->
            {:ok, {:elixir, import.module, import.name, index, [], []}}
        end

      {function, _index} ->
        {:error,
         {:instantiation_failed,
          "import #{import.module}.#{import.name} is a component's: its host function is typed by the component " <>
            "(give {#{inspect(import.module)}, #{inspect(import.name)}, :wit, capability, fun}), not " <>
            "#{inspect(function.params)} -> #{inspect(function.results)}"}}
    end
  end

  @doc false
  # Whether wasmtime-wasi implements the WASI 0.2 interface (`rest` after
  # `wasi:`, with its version): as the native linker's table.
  @spec wasi_p2?(String.t()) :: boolean()
  def wasi_p2?(rest) do
    unversioned(rest) in @wasi_p2
  end

  @doc false
  # An interface's name without its version: every import of every call
  # goes through here, so no list is built.
  @spec unversioned(String.t()) :: String.t()
  def unversioned(interface) do
    case :binary.match(interface, "@") do
      {at, _} -> binary_part(interface, 0, at)
      :nomatch -> interface
    end
  end

  @doc false
  # The capability that grants a WASI 0.2 interface (its name without the
  # version), or nil for those linked without one (see `link_component/3`).
  # Also read by `mix munition.validate`.
  @spec wasi_capability(String.t()) :: atom()
  def wasi_capability(interface) do
    case unversioned(interface) do
      "wasi:cli/environment" -> :wasi_env
      "wasi:cli/exit" -> :wasi_exit
      "wasi:cli/" <> _stdio -> :wasi_stdio
      "wasi:io/poll" -> :wasi_poll
      "wasi:io/" <> _streams -> :wasi_stdio
      "wasi:clocks/" <> _ -> :wasi_clock
      "wasi:random/" <> _ -> :wasi_random
      _files_sockets_or_unimplemented -> nil
    end
  end
end

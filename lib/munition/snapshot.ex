defmodule Munition.Snapshot do
  @moduledoc false
  # `Munition.snapshot/4` (documented there): an initialisation run as an
  # ordinary call, then the idle instance written into a new module.
  #
  #   1. The runtime instruments the module (`c:Munition.Runtime.snapshot_instrument/1`,
  #      wasmtime-wizer's first half): the same module, every memory and
  #      mutable global exported under names of Wizer's.
  #   2. The instrumented module is compiled and called as `fire/4` calls
  #      any module: same options, links, fuel, deadline, slices, WASI,
  #      host functions and dumps (`Munition.execute/2`), with the State's
  #      `:snapshot` set, so that once the call returns the manager has the
  #      runtime write the idle instance into a new module
  #      (`c:Munition.Runtime.snapshot/3`, Wizer's second half).
  #   3. The new module is compiled (and cached) like any other, and marked
  #      with where it comes from (`mark/2`), which its bytes also say: their
  #      first section, `munition.snapshot` (`provenance/2`).
  #
  # What the instance cannot carry is refused by name (`:not_capturable`):
  # preopened directories (the descriptors live in the WASI context, not in
  # the instance, while libc keeps their numbers in memory), a `proc_exit`,
  # and, unless `:bake` allows it, a read of what every call would then
  # share: the clock, randomness, arguments, environment. Those reads are
  # found as they happen: the imports that make them are linked, for the
  # initialisation, to a refusal that names them (`seal/4`), so a module
  # that imports them and never calls them is snapshotted.

  import Bitwise, only: [<<<: 2]

  alias Munition.Host.{Capabilities, Function}
  alias Munition.Options

  @section "munition.snapshot"
  @bakeable [:clock, :random, :env, :args]

  # The imports whose results a snapshot would bake in, by what they read.
  @reads %{
    {"wasi_snapshot_preview1", "clock_time_get"} => :clock,
    {"wasi_snapshot_preview1", "random_get"} => :random,
    {"wasi_snapshot_preview1", "args_get"} => :args,
    {"wasi_snapshot_preview1", "args_sizes_get"} => :args,
    {"wasi_snapshot_preview1", "environ_get"} => :env,
    {"wasi_snapshot_preview1", "environ_sizes_get"} => :env,
    {"munition", "get_time_ms"} => :clock,
    {"munition", "get_monotonic_ns"} => :clock,
    {"munition", "get_random"} => :random,
    {"munition", "random_bytes"} => :random
  }

  # A component's WASI 0.2 imports that read the same, by interface
  # (without its version) and function; `nil` for every function of it.
  # `wasmtime-wasi` serves them in the engine, where no Elixir link can
  # stand in for them: a component is checked by what it imports, before
  # anything runs.
  @component_reads [
    {"wasi:clocks/wall-clock", "now", :clock},
    {"wasi:clocks/monotonic-clock", "now", :clock},
    {"wasi:random/random", nil, :random},
    {"wasi:random/insecure", nil, :random},
    {"wasi:random/insecure-seed", nil, :random},
    {"wasi:cli/environment", "get-environment", :env},
    {"wasi:cli/environment", "get-arguments", :args}
  ]

  @doc false
  @spec run(Munition.wasm(), String.t(), list(), keyword()) ::
          {:ok, Munition.Module.t(), map()}
          | {:crash, Munition.crash_reason(), Munition.Forensics.Dump.t() | nil}
          | {:error, Munition.error_reason()}
  def run(wasm, function, args, opts) do
    {bake, opts} = Keyword.pop(Options.keyword!(opts), :bake, [])
    bake = bake!(bake)

    if Options.remote?(opts) do
      raise ArgumentError,
            "Munition.snapshot/4 runs on this node; give the snapshot module to calls with :node"
    end

    options = Options.fire!(opts)
    {bytes, of} = source!(wasm)
    runtime = options.runtime

    with :ok <- snapshots?(runtime),
         :ok <- no_preopens(options.wasi),
         {:ok, {plain, instrumented}} <- runtime.snapshot_instrument(bytes),
         {:ok, module, options} <- Munition.compile_for_call(instrumented, options),
         :ok <- component_reads(module, bake) do
      # The instrumented module stands for the caller's: its dumps and the
      # meter's figures name the module whose initialisation ran, and list
      # its exports without Wizer's.
      module = %{module | hash: of, exports: Enum.reject(module.exports, &wizer_export?/1)}

      with {:ok, links} <- Capabilities.resolve(module, options.capabilities, options.host_functions, runtime) do
        ref = make_ref()
        {links, host_functions} = seal(links, options, bake, {self(), ref})
        fuel = Munition.Fuel.Policy.resolve!(options.fuel, module, function)

        state = %{
          Options.state(options, module, links, function, args, fuel)
          | host_functions: host_functions,
            snapshot: {plain, provenance(of, function)}
        }

        result = Munition.execute(state, options.dump_dir)

        refused =
          receive do
            {^ref, read, import} -> {read, import}
          after
            0 -> nil
          end

        finish(result, refused, of, function, options)
      end
    end
  end

  # Wizer's exports: a module's `__wizer_*` memories and globals, a
  # component's `wasmtime:wizer/access` instance of accessors.
  defp wizer_export?(%{name: "__wizer_" <> _}), do: true
  defp wizer_export?(%{name: "wasmtime:wizer/access#" <> _}), do: true
  defp wizer_export?(_export), do: false

  # The first WASI 0.2 import of a component that reads what `bake` does
  # not allow, refused: whether the initialisation calls it is not seen.
  defp component_reads(%Munition.Module{kind: :component, imports: imports}, bake) do
    refused =
      Enum.find_value(imports, fn %{module: interface, name: name} ->
        unversioned = Capabilities.unversioned(interface)

        Enum.find_value(@component_reads, fn {reads_interface, reads_name, read} ->
          if unversioned == reads_interface and reads_name in [nil, name] and read not in bake,
            do: {read, "#{interface}##{name}"}
        end)
      end)

    case refused do
      nil ->
        :ok

      {read, import} ->
        {:error,
         {:not_capturable,
          "the component imports #{import}, which reads #{describe(read)}, and every call on the snapshot " <>
            "would share what the initialisation read: give bake: [#{inspect(read)}] to snapshot it all the same " <>
            "(a component's WASI 0.2 reads are served inside the engine, so Munition refuses what it imports, " <>
            "not only what it calls)"}}
    end
  end

  defp component_reads(_module, _bake), do: :ok

  defp bake!(bake) when is_list(bake) do
    Enum.each(bake, fn read ->
      unless read in @bakeable do
        raise ArgumentError, "bake takes #{inspect(@bakeable)}, got: #{inspect(read)} in #{inspect(bake)}"
      end
    end)

    bake
  end

  defp bake!(other),
    do: raise(ArgumentError, "bake must be a list of #{inspect(@bakeable)}, got: #{inspect(other)}")

  # The bytes to instrument and the hash the snapshot says it was made of.
  # A snapshot is snapshotted again from its own bytes; other compiled
  # modules keep no bytes.
  defp source!(bytes) when is_binary(bytes), do: {bytes, hash(bytes)}
  defp source!(%Munition.Module{snapshot: %{bytes: bytes}, hash: hash}), do: {bytes, hash}

  defp source!(%Munition.Module{} = module) do
    raise ArgumentError,
          "Munition.snapshot/4 takes the module's bytes (or WAT text), or a snapshot: #{inspect(module)} is compiled code only"
  end

  defp source!(other) do
    raise ArgumentError, "wasm must be wasm bytes, WAT text or a %Munition.Module{}, got: #{inspect(other)}"
  end

  defp hash(bytes), do: :sha256 |> :crypto.hash(bytes) |> Base.encode16(case: :lower)

  defp snapshots?(runtime) do
    if function_exported?(runtime, :snapshot_instrument, 1) and function_exported?(runtime, :snapshot, 3),
      do: :ok,
      else: {:error, {:unsupported, "#{inspect(runtime)} takes no snapshots: use Munition.Runtime.Wasmtime"}}
  end

  defp no_preopens(%{preopens: [_ | _] = preopens}) do
    paths = Enum.map(preopens, &elem(&1, 0))

    {:error,
     {:not_capturable,
      "preopened directories (#{Enum.join(paths, ", ")}): their descriptors live outside the instance, " <>
        "while libc keeps their numbers in its memory; give files to the calls on the snapshot instead"}}
  end

  defp no_preopens(_wasi), do: :ok

  # Each import among `links` that reads what a snapshot would bake in, and
  # that `bake` does not allow, is linked to a refusal instead: a host
  # function that tells `to` what was read and fails the initialisation.
  defp seal(links, options, bake, to) do
    host_functions = options.host_functions

    {links, refusals} =
      links
      |> Enum.map_reduce([], fn
        {:builtin, module, name} = link, refusals ->
          case Map.fetch(@reads, {module, name}) do
            {:ok, read} ->
              if read in bake do
                {link, refusals}
              else
                index = length(host_functions) + length(refusals)
                refusal = refusal(options.runtime, {module, name}, read, to)
                {{:elixir, module, name, index, refusal.params, refusal.results}, [refusal | refusals]}
              end

            :error ->
              {link, refusals}
          end

        link, refusals ->
          {link, refusals}
      end)

    {links, host_functions ++ Enum.reverse(refusals)}
  end

  # Its funs end the guest's call by raising, as a failing host function
  # does: they have no other return, which is the point.
  @dialyzer {:nowarn_function, refusal: 4}
  defp refusal(runtime, {module, name}, read, {pid, ref}) do
    %{params: params, results: results} =
      Enum.find(runtime.builtins(), &(&1.module == module and &1.name == name))

    refuse = fn ->
      send(pid, {ref, read, "#{module}.#{name}"})
      raise "snapshot: the initialisation read #{read} (#{module}.#{name}), not allowed by :bake"
    end

    fun =
      case length(params) do
        0 -> fn _ctx -> refuse.() end
        2 -> fn _ctx, _a, _b -> refuse.() end
        3 -> fn _ctx, _a, _b, _c -> refuse.() end
      end

    %Function{module: module, name: name, params: params, results: results, capability: :snapshot, fun: fun}
  end

  defp finish({:ok, nil, %{exit_code: code}}, nil, _of, _function, _options) do
    {:error,
     {:not_capturable,
      "the initialisation called proc_exit(#{code}): an instance that exited has no state to start calls from"}}
  end

  defp finish({:ok, result, meta}, nil, of, function, options) do
    {bytes, meta} = Map.pop!(meta, :snapshot)

    # Its own compilation, bounded as compile/2's: the initialisation's
    # deadline bounded the initialisation.
    timeout = options.compile_timeout || Munition.Runtime.Config.compile_timeout()

    case options.runtime.compile(bytes, limits: options.limits, timeout: timeout) do
      {:ok, module} ->
        module = %{module | snapshot: %{of: of, function: function, bytes: bytes}}
        {:ok, module, Map.put(meta, :result, result)}

      {:error, _} = error ->
        error
    end
  end

  defp finish(_result, {read, import}, _of, _function, _options) do
    {:error,
     {:not_capturable,
      "the initialisation read #{describe(read)} (#{import}), which every call on the snapshot would share: " <>
        "give bake: [#{inspect(read)}] to snapshot it all the same"}}
  end

  defp finish({:crash, _reason, _dump} = crash, nil, _of, _function, _options), do: crash
  defp finish({:error, _reason} = error, nil, _of, _function, _options), do: error

  defp describe(:clock), do: "the clock"
  defp describe(:random), do: "random bytes"
  defp describe(:args), do: "its arguments"
  defp describe(:env), do: "its environment"

  @doc false
  # The payload of the `munition.snapshot` section: a version, the hash of
  # the module the snapshot was made of, and the initialisation's export.
  @spec provenance(String.t(), String.t()) :: binary()
  def provenance(of, function), do: "1\n" <> of <> "\n" <> function

  @doc false
  # `module`, compiled from `bytes`, with where it comes from when `bytes`
  # are a snapshot's: their first section says so. A match on the first
  # bytes, nothing read further: cheap enough for every compile. A
  # module's header or a component's (version 0x0d, layer 1), the section
  # first in both.
  @spec mark(Munition.Module.t(), binary()) :: Munition.Module.t()
  def mark(module, <<0, "asm", version, 0, layer, 0, 0, rest::binary>> = bytes)
      when {version, layer} in [{1, 0}, {0x0D, 1}] do
    with {size, rest} <- leb128(rest, 0, 0),
         name_size = byte_size(@section),
         <<^name_size, @section, "1\n", of::binary-size(64), "\n", rest::binary>> <- rest,
         function_size = size - 1 - name_size - 67,
         true <- function_size >= 0,
         <<function::binary-size(function_size), _::binary>> <- rest do
      %{module | snapshot: %{of: of, function: function, bytes: bytes}}
    else
      _ -> module
    end
  end

  def mark(module, _bytes), do: module

  defp leb128(<<1::1, byte::7, rest::binary>>, shift, acc) when shift < 35,
    do: leb128(rest, shift + 7, acc + (byte <<< shift))

  defp leb128(<<0::1, byte::7, rest::binary>>, shift, acc), do: {acc + (byte <<< shift), rest}
  defp leb128(_bytes, _shift, _acc), do: :error
end

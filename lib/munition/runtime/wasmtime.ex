defmodule Munition.Runtime.Wasmtime do
  @moduledoc """
  The Wasmtime runtime, through Munition's NIF: with
  `Munition.Runtime.Wasmi`, the only module that calls the engines' native
  code.

  Turns native results into Munition's vocabulary; holds no state of its own.
  Guests run on a fiber stack the NIF owns (so deep recursion is a
  `:stack_overflow` trap, not a crash of the VM), metered by fuel, stopped at
  their deadline when they come back into wasm from a fuel yield (every
  100,000 units) or a host function, and in slices (see
  `Munition.Runtime`). The callbacks are documented there.
  """

  @behaviour Munition.Runtime

  alias Munition.Instance.State
  alias Munition.Native
  alias Munition.Runtime.Config

  ## Modules

  @doc """
  Compiles `bytes` (see `c:Munition.Runtime.compile/2`), or finds them in the
  module cache.

  A cache hit is answered on the caller's scheduler (on a dirty one for
  inputs over 64 KiB, which take a few milliseconds to hash). Compiling runs
  on Munition's compile threads, never on a scheduler (see "Where compiling
  runs" in `Munition.Runtime.Config`): this process waits for the result
  until the deadline and is free for nothing else meanwhile, but holds no
  scheduler thread. With a compile cache directory, the compile thread
  first looks there for the code compiled before for the same wasm, and
  leaves there what it compiles (see "Compiled code on disk" in
  `Munition.Runtime.Config`).

  ## Options

    * `:limits` - a map from `Munition.Runtime.Config.limits!/1`, or a keyword
      list of overrides. Defaults to the configured limits.
    * `:timeout` - milliseconds to wait. Defaults to
      `Munition.Runtime.Config.compile_timeout/0`.
    * `:cache_size` - the module cache's capacity. Defaults to
      `Munition.Runtime.Config.module_cache_size/0`.
    * `:compile_cache_dir` - the directory of compiled code on disk, or
      `nil` for none. Defaults to `Munition.Runtime.Config.compile_cache_dir/0`.
  """
  @impl true
  def compile(bytes, opts \\ []) do
    started = System.monotonic_time(:millisecond)
    cache_size = Keyword.get_lazy(opts, :cache_size, &Config.module_cache_size/0)
    timeout = Keyword.get_lazy(opts, :timeout, &Config.compile_timeout/0)

    disk_dir =
      case Keyword.fetch(opts, :compile_cache_dir) do
        {:ok, dir} -> Config.check_compile_cache_dir!(dir, ":compile_cache_dir")
        :error -> Config.compile_cache_dir()
      end

    limits =
      case Keyword.get(opts, :limits, []) do
        %{} = limits -> limits
        overrides -> Config.limits!(overrides)
      end

    kind = if Munition.Module.component_bytes?(bytes), do: :component, else: :module
    limits = if kind == :component, do: Config.component_limits(limits), else: limits

    case lookup(kind, bytes, cache_size, limits) do
      {:ok, {resource, info}} ->
        {:ok, to_module(resource, info)}

      {:miss, hash} ->
        compile_off_scheduler(kind, bytes, hash, {cache_size, limits, disk_dir}, started + timeout, timeout)

      {:error, _} = error ->
        error
    end
  end

  # A cache hit is answered on this scheduler; large inputs are hashed on a
  # dirty one. Components have NIFs of their own (the engine is the same,
  # its compiled code another kind).
  defp lookup(:module, bytes, cache_size, limits) do
    case Native.module_lookup(bytes, cache_size, limits) do
      :large -> Native.module_lookup_dirty(bytes, cache_size, limits)
      other -> other
    end
  end

  defp lookup(:component, bytes, cache_size, limits) do
    case Native.component_lookup(bytes, cache_size, limits) do
      :large -> Native.component_lookup_dirty(bytes, cache_size, limits)
      other -> other
    end
  end

  # Both kinds keep their code in the `:compile_cache_dir`, under keys of
  # their own.
  defp compile_start(:module, bytes, hash, {cache_size, limits, disk_dir}, tag),
    do: Native.module_compile_start(bytes, hash, cache_size, limits, disk_dir, tag)

  defp compile_start(:component, bytes, hash, {cache_size, limits, disk_dir}, tag),
    do: Native.component_compile_start(bytes, hash, cache_size, limits, disk_dir, tag)

  defp compile_cancel(:module, ticket), do: Native.module_compile_cancel(ticket)
  defp compile_cancel(:component, ticket), do: Native.component_compile_cancel(ticket)

  defp compile_off_scheduler(kind, bytes, hash, settings, deadline, timeout) do
    tag = make_ref()

    case compile_start(kind, bytes, hash, settings, tag) do
      {:started, ticket} ->
        receive do
          {^tag, result} -> compiled(result)
        after
          max(deadline - System.monotonic_time(:millisecond), 0) ->
            # After the cancel no answer is sent; one sent before is here now.
            fate = compile_cancel(kind, ticket)

            receive do
              {^tag, result} -> compiled(result)
            after
              0 -> {:error, {:timeout, timeout_message(timeout, fate)}}
            end
        end

      {:ok, {resource, info}} ->
        {:ok, to_module(resource, info)}

      {:error, _} = error ->
        error
    end
  end

  defp compiled({:ok, {resource, info}}), do: {:ok, to_module(resource, info)}
  defp compiled({:error, _} = error), do: error

  @doc false
  # The message of a compilation that outlived its caller's timeout, `fate`
  # being what the cancel said (`:running` or `:dropped`): shared with
  # Munition.Runtime.Wasmi, whose compilations end the same two ways.
  @spec timeout_message(non_neg_integer(), :running | :dropped) :: String.t()
  def timeout_message(timeout, fate) do
    then =
      case fate do
        :running -> "it goes on in the background and its result will be cached, so a retry may find it"
        :dropped -> "it was still waiting for a compile thread and was dropped"
      end

    "compiling the module did not finish within #{timeout} ms: nothing ran, so there is no " <>
      "guest state to dump; #{then}"
  end

  @doc """
  Compilations running and waiting for a compile thread, and the compile
  threads: `%{running: n, queued: n, threads: n}` (`threads` is 0 before the
  first compilation).
  """
  @spec compile_stats() :: %{
          running: non_neg_integer(),
          queued: non_neg_integer(),
          threads: non_neg_integer()
        }
  def compile_stats do
    {running, queued, threads} = Native.module_compile_stats()
    %{running: running, queued: queued, threads: threads}
  end

  @doc """
  Sets the native library's capacity before an engine is first built (see
  `c:Munition.Runtime.configure/1`): `:max_instances`,
  `:max_memories_per_module`, `:max_concurrent_compiles` (`nil` or absent:
  sized for the machine). Munition's application calls it with the
  application environment when it starts. `Munition.Runtime.Wasmi`'s
  compile threads are sized by the same `:max_concurrent_compiles`.

  Returns `:ok`; `{:error, {:bad_config, message}}` for values the machine
  cannot hold (checked first, always); `{:error, {:too_late, message}}` once
  the engine exists (its pools are reserved and cannot be resized); or
  `{:error, :nif_not_loaded}`.
  """
  @impl true
  def configure(settings) when is_map(settings) do
    defaults = %{max_instances: nil, max_memories_per_module: nil, max_concurrent_compiles: nil}

    case Native.engine_configure(Map.merge(defaults, settings)) do
      {:ok, :ok} -> :ok
      {:error, _} = error -> error
    end
  rescue
    error in ErlangError ->
      if error.original == :nif_not_loaded,
        do: {:error, :nif_not_loaded},
        else: reraise(error, __STACKTRACE__)
  end

  defp to_module(resource, %{component: nil} = info) do
    Munition.Module.new(
      resource: resource,
      runtime: __MODULE__,
      hash: info.hash,
      imports: info.imports,
      exports: info.exports,
      memories: info.memories,
      stats: info.stats
    )
  end

  defp to_module(resource, %{component: world} = info) do
    Munition.Module.new(
      resource: resource,
      runtime: __MODULE__,
      kind: :component,
      hash: info.hash,
      imports: Enum.map(world.imports, &wit_function(&1, :module)),
      exports: Enum.map(world.exports, &wit_function(&1, :name)),
      memories: [],
      stats: info.stats
    )
  end

  # A function of a component's world: an import is named by its interface
  # and name, an export by the name a call gives it (`interface#name`).
  # WASI's are linked by Munition (or trap, where it implements none): what
  # cannot cross typed to Elixir does not concern them.
  defp wit_function(function, :module) do
    function =
      if String.starts_with?(function.interface, "wasi:"), do: %{function | refused: nil}, else: function

    %{module: function.interface, name: function.name, kind: :func} |> Map.merge(wit_types(function))
  end

  defp wit_function(%{interface: ""} = function, :name),
    do: Map.put(wit_types(function), :name, function.name)

  defp wit_function(function, :name),
    do: Map.put(wit_types(function), :name, "#{function.interface}##{function.name}")

  defp wit_types(function),
    do: %{kind: :func, params: function.params, results: function.results, refused: function.refused}

  @impl true
  def builtins, do: Native.host_builtins()

  @impl true
  def live_count, do: Native.instance_live_count() + Native.component_live_count()

  @doc """
  The compiled-module cache (see `c:Munition.Runtime.cache_stats/0`): two
  caches, core modules' and components', each holding up to
  `:module_cache_size`, so `:entries`, `:capacity` and `:compilations` add
  both. With what the compiled code on disk gave since the VM started (see
  "Compiled code on disk" in `Munition.Runtime.Config`) under `:disk`:

    * `:hits` - modules and components whose code was loaded from the disk
      instead of compiled (not counted in `:compilations`);
    * `:misses` - modules and components with no file for them: compiled,
      then written;
    * `:rejected` - files (or a directory) refused by a check, or code
      Wasmtime would not load: compiled instead, and written over the file
      when the directory passes its checks;
    * `:written` - files written;
    * `:write_failed` - files that could not be written (the directory
      refused, the disk full...): the code compiled serves all the same;
    * `:last_problem` - why the last rejection or failed write happened,
      with the file's path, or `nil`.

  All zero, and `:last_problem` `nil`, while no directory is configured.

  Compiled components are cached apart, under the same capacity:
  `:components` has their `:entries` and `:compilations`.
  """
  @impl true
  def cache_stats do
    {entries, capacity, compilations} = Native.module_cache_stats()
    {component_entries, _capacity, component_compilations} = Native.component_cache_stats()

    %{
      entries: entries,
      capacity: capacity,
      compilations: compilations,
      components: %{entries: component_entries, compilations: component_compilations},
      disk: Native.module_disk_cache_stats()
    }
  end

  ## Instances
  #
  # A component's instance is `{:component, handle}`: its NIFs are its own.

  @impl true
  def instantiate(%Munition.Module{kind: :component, resource: resource}, %State{} = state) do
    with {:ok, {instance, progress}} <- Native.component_instance_new(resource, State.to_native(state)) do
      {:ok, if(instance == :released, do: :released, else: {:component, instance}), progress}
    end
  end

  def instantiate(%Munition.Module{resource: resource}, %State{} = state) do
    with {:ok, {instance, progress}} <- Native.instance_new(resource, State.to_native(state)) do
      {:ok, instance, progress}
    end
  end

  @impl true
  def call({:component, instance}, function, params),
    do: Native.component_instance_call(instance, function, params)

  def call(instance, function, params), do: Native.instance_call(instance, function, params)

  @impl true
  def resume({:component, instance}), do: Native.component_instance_resume(instance)
  def resume(instance), do: Native.instance_resume(instance)

  @impl true
  def read_memory({:component, _instance}, _ptr, _len), do: no_memory()
  # Up to 64 KiB on this scheduler; more on a dirty one (see the NIF).
  def read_memory(instance, ptr, len) do
    case Native.instance_memory_read(instance, ptr, len) do
      {:ok, :large} -> Native.instance_memory_read_dirty(instance, ptr, len)
      other -> other
    end
  end

  @impl true
  def write_memory({:component, _instance}, _ptr, _bytes), do: no_memory()

  def write_memory(instance, ptr, bytes) do
    case Native.instance_memory_write(instance, ptr, bytes) do
      {:ok, :ok} -> :ok
      {:ok, :large} -> write_memory_dirty(instance, ptr, bytes)
      {:error, _} = error -> error
    end
  end

  defp write_memory_dirty(instance, ptr, bytes) do
    case Native.instance_memory_write_dirty(instance, ptr, bytes) do
      {:ok, :ok} -> :ok
      {:error, _} = error -> error
    end
  end

  defp no_memory,
    do: {:error, {:invalid_state, "a component's values cross typed: it has no memory for the binary ABI"}}

  @impl true
  def capture({:component, instance}, mode) when mode in [:full, :minimal],
    do: Native.component_instance_capture(instance, mode)

  def capture(instance, mode) when mode in [:full, :minimal] do
    Native.instance_capture(instance, mode)
  end

  @impl true
  def cleanup(:released), do: :ok

  def cleanup({:component, instance}) do
    case Native.component_instance_cleanup(instance) do
      :ok -> :ok
      :large -> Native.component_instance_cleanup_dirty(instance)
    end
  end

  def cleanup(instance) do
    # A large memory is released on a dirty scheduler (see the NIF).
    case Native.instance_cleanup(instance) do
      :ok -> :ok
      :large -> Native.instance_cleanup_dirty(instance)
    end
  end

  ## Host calls

  @impl true
  # A component's import (`:wit`): the reply is decoded against its WIT
  # types on the guest's side.
  def host_reply(call, reply, :wit), do: Native.component_host_reply(call, reply)
  def host_reply(call, reply, result_types), do: Native.host_reply(call, reply, result_types)

  @impl true
  def host_read(call, ptr, len), do: Native.host_read(call, ptr, len)

  @impl true
  def host_write(call, ptr, bytes), do: Native.host_write(call, ptr, bytes)

  @impl true
  def info, do: Native.engine_info()

  ## Snapshots (core modules and components)

  @impl true
  def snapshot_instrument(bytes), do: Native.snapshot_instrument(bytes)

  @impl true
  def snapshot({:component, instance}, wasm, provenance),
    do: Native.component_instance_snapshot(instance, wasm, provenance)

  def snapshot(instance, wasm, provenance), do: Native.instance_snapshot(instance, wasm, provenance)
end

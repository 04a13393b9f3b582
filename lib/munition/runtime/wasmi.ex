defmodule Munition.Runtime.Wasmi do
  @moduledoc """
  The Wasmi runtime: Wasmi 2.0 (an interpreter written in Rust) behind the
  same NIF library as `Munition.Runtime.Wasmtime`, and the same
  `Munition.Runtime` contract. Choose it per call, per pool, or for the node:

      Munition.fire(wasm, "run", [], runtime: Munition.Runtime.Wasmi)
      {Munition.Pool, name: :rules, wasm: wasm, runtime: Munition.Runtime.Wasmi}
      config :munition, runtime: Munition.Runtime.Wasmi

  ## Why an interpreter

  Wasmi needs no executable memory (deployments that forbid it cannot run
  a JIT at all), and compiles lazily: a module is validated when compiled
  and each function is translated the first time it runs, so a module run
  once starts at once and pays only for the code it runs. Wasmtime's
  optimised code runs a compute-heavy guest faster (2.56x on the loop of
  `bench/engines.exs`). [Engines](engines.md#when-to-choose-which) says when
  to choose which, with the figures of `make bench`.

  ## How the guarantees are kept

    * **Bounded.** Every execution is a resumable call; the store holds at
      most 100,000 units of fuel at a time and, when they are used, Wasmi
      suspends the call and the NIF checks the deadline and the slice's
      time before it refills and resumes. Slices and the manager's loop are
      as on Wasmtime (`:yielded`, `{:waiting, ms}`).
    * **The VM's stacks.** Wasmi keeps wasm frames on a heap stack of its
      own: guest recursion never deepens the scheduler's stack, and at
      20,000 nested calls it is a `:stack_overflow` trap.
    * **Start functions** are run the same way: the start section is moved
      to a private export before compiling and called, resumably, right
      after instantiation.
    * **Fresh stores, capabilities, built-ins, Elixir host functions, the
      binary ABI** are the same code or the same table as Wasmtime's. A
      call of an Elixir host function suspends the whole execution (no
      thread is held) until its reply.

  ## What differs (each one tested)

    * **WASI's file operations run on the guest's thread**: the same
      capability table, captured and bounded output, clocks, random,
      arguments, environment, exit codes, thread-free sleeps and files
      (preopens, read-only unless writable and `:wasi_fs_write` granted,
      paths sandboxed by `cap-primitives`) as on Wasmtime, from Munition's
      own preview-1 layer (Wasmtime's is `wasmtime-wasi`, made for
      Wasmtime only). Wasmi has no fiber to park the guest on, so each file
      operation, bounded, runs on the thread running the guest's slice (a
      dirty CPU scheduler, never a normal one) where Wasmtime runs it on `wasmtime-wasi`'s threads.
    * **Fuel** is Wasmi's measure, not Wasmtime's: about one unit per
      instruction too, but the counts of a call differ between engines
      (`fuel_consumed`), and so does where exactly a budget runs out.
    * **Forensics.** A dump has what a Wasmtime dump has (every memory and
      every global, exported or not) but the backtrace: Wasmi records no
      wasm frames, so `dump.backtrace` is `[]`. Trap messages are Wasmi's
      wording. (Wasmi reaches items only through exports: compiling for it
      exports each memory and global under reserved names, which no
      caller sees or calls.)
    * **No instance pool**, so no `{:error, {:overloaded, _}}` from the
      engine; Munition's own line for instance slots still bounds instances
      per node.
    * **Modules are per engine.** A `%Munition.Module{}` compiled by one
      runtime given to a call on the other is a caller's mistake:
      `ArgumentError` naming both.
  """

  @behaviour Munition.Runtime

  alias Munition.Instance.State
  alias Munition.Native
  alias Munition.Runtime.{Config, Wasmtime}

  ## Modules

  @doc """
  Compiles `bytes` for Wasmi (see `c:Munition.Runtime.compile/2`), or finds
  them in Wasmi's module cache. Options as `Munition.Runtime.Wasmtime.compile/2`.

  A cache hit, and a miss on a binary of up to 4 KiB (validating it takes
  microseconds), are answered on the caller's scheduler; anything larger
  compiles on Munition's compile threads, shared with Wasmtime
  (`max_concurrent_compiles` of them, an express lane for small modules and
  a queue behind; callers of the same bytes share one compilation) while
  this process waits, until the deadline.
  """
  @impl true
  def compile(bytes, opts \\ []) do
    started = System.monotonic_time(:millisecond)
    cache_size = Keyword.get_lazy(opts, :cache_size, &Config.module_cache_size/0)
    timeout = Keyword.get_lazy(opts, :timeout, &Config.compile_timeout/0)

    limits =
      case Keyword.get(opts, :limits, []) do
        %{} = limits -> limits
        overrides -> Config.limits!(overrides)
      end

    case lookup(bytes, cache_size, limits) do
      {:ok, {resource, info}} -> {:ok, to_module(resource, info)}
      {:miss, hash} -> compile_on_thread(bytes, hash, cache_size, limits, started + timeout, timeout)
      {:error, _} = error -> error
    end
  end

  defp lookup(bytes, cache_size, limits) do
    case Native.wasmi_module_lookup(bytes, cache_size, limits) do
      :large -> Native.wasmi_module_lookup_dirty(bytes, cache_size, limits)
      other -> other
    end
  end

  defp compile_on_thread(bytes, hash, cache_size, limits, deadline, timeout) do
    tag = make_ref()

    case Native.wasmi_module_compile_start(bytes, hash, cache_size, limits, tag) do
      {:started, ticket} ->
        receive do
          {^tag, result} -> compiled(result)
        after
          max(deadline - System.monotonic_time(:millisecond), 0) ->
            # After the cancel no answer is sent; one sent before is here now.
            fate = Native.wasmi_module_compile_cancel(ticket)

            receive do
              {^tag, result} -> compiled(result)
            after
              0 -> {:error, {:timeout, Wasmtime.timeout_message(timeout, fate)}}
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

  defp to_module(resource, info) do
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

  @doc """
  The same table as Wasmtime's (`Munition.Host.Capabilities` grants from
  it), WASI's rows included: every row has its function on Wasmi too.
  """
  @impl true
  def builtins, do: Native.host_builtins()

  @impl true
  def live_count, do: Native.wasmi_live_count()

  @impl true
  def cache_stats do
    {entries, capacity, compilations} = Native.wasmi_module_cache_stats()
    %{entries: entries, capacity: capacity, compilations: compilations}
  end

  @impl true
  def info, do: Native.wasmi_engine_info()

  ## Instances

  @impl true
  def instantiate(%Munition.Module{resource: resource}, %State{} = state) do
    with {:ok, {instance, progress}} <- Native.wasmi_instance_new(resource, State.to_native(state)) do
      {:ok, instance, progress}
    end
  end

  @impl true
  def call(instance, function, params), do: Native.wasmi_instance_call(instance, function, params)

  @impl true
  def resume(instance), do: Native.wasmi_instance_resume(instance)

  @impl true
  # Up to 64 KiB on this scheduler; more on a dirty one (see the NIF).
  def read_memory(instance, ptr, len) do
    case Native.wasmi_instance_memory_read(instance, ptr, len) do
      {:ok, :large} -> Native.wasmi_instance_memory_read_dirty(instance, ptr, len)
      other -> other
    end
  end

  @impl true
  def write_memory(instance, ptr, bytes) do
    case Native.wasmi_instance_memory_write(instance, ptr, bytes) do
      {:ok, :ok} -> :ok
      {:ok, :large} -> write_memory_dirty(instance, ptr, bytes)
      {:error, _} = error -> error
    end
  end

  defp write_memory_dirty(instance, ptr, bytes) do
    case Native.wasmi_instance_memory_write_dirty(instance, ptr, bytes) do
      {:ok, :ok} -> :ok
      {:error, _} = error -> error
    end
  end

  @impl true
  def capture(instance, mode) when mode in [:full, :minimal],
    do: Native.wasmi_instance_capture(instance, mode)

  @impl true
  def cleanup(:released), do: :ok

  def cleanup(instance) do
    # A large memory is released on a dirty scheduler (see the NIF).
    case Native.wasmi_instance_cleanup(instance) do
      :ok -> :ok
      :large -> Native.wasmi_instance_cleanup_dirty(instance)
    end
  end

  ## Host calls: the engine-independent NIFs, as Wasmtime's.

  @impl true
  defdelegate host_reply(call, reply, result_types), to: Wasmtime

  @impl true
  defdelegate host_read(call, ptr, len), to: Wasmtime

  @impl true
  defdelegate host_write(call, ptr, bytes), to: Wasmtime
end

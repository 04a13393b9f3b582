defmodule Munition.Instance.Manager do
  @moduledoc false
  # Runs one execution: instantiate -> call -> capture -> cleanup, for a
  # `Munition.Instance.State` that `Munition.fire/4` built (module compiled,
  # imports resolved, bounds checked). For most calls the first two are one
  # step of the runtime: see the `:call` field of the State.
  #
  # ## Who drives the guest
  #
  # The calling process itself: it makes the runtime's calls, one slice at a
  # time (`drive/3`, the one loop over the runtime's slices). There is no task
  # per call: a task cost more than the guest's whole native work (a spawn, a
  # monitor and two messages per call), and each of its jobs is done without
  # one (below). A call with Elixir host functions is served by the caller
  # too (`Munition.Host.Calls`), unless the caller's mailbox already holds
  # more than `@busy_mailbox` messages: each host call is a selective
  # receive, which would scan every queued message (10 µs a round trip
  # became 200 µs in a caller with 20,000 queued messages), so such a call
  # is driven by a linked process of its own, whose mailbox holds nothing
  # else. That process, when every call had one, was a sixth of a
  # JavaScript plugin's fresh call (70-190 µs of 0.8-1 ms on 2 vCPUs).
  #
  #   * **The guest stops at its deadline.** The engine stops it (at a fuel
  #     yield, see `Munition.Runtime`), and between slices this process
  #     checks the deadline too: a guest still running one second past it (the
  #     grace for capturing a large memory) is abandoned and released, and the
  #     call is `{:crash, :timeout, dump}`.
  #   * **The caller always gets its answer.** A slice lasts at most a few
  #     milliseconds, so the caller regains control often; anything the runtime
  #     raises is `{:error, {:runtime_failure, message}}`.
  #   * **A dying caller cancels its guest.** The instance belongs to the
  #     caller's heap: when the caller dies, the native store is dropped with
  #     it, which cancels the guest mid-slice at its next suspension point.
  #   * **Nothing reaches the caller's mailbox.** Without host functions the
  #     runtime sends the caller no message, and a guest that waits (asleep)
  #     is waited for with a plain timeout. With them, what the call's host
  #     calls sent it is taken out before it returns (`Calls.stop/0`), and
  #     its own messages are left in place, in order.
  #
  # ## WASI: reactors and exits
  #
  # A module exporting `_initialize() -> ()` (a WASI reactor) has it called
  # first, in the same instance, before the export asked for (unless that is
  # `_initialize` or `_start`). A guest that calls WASI's `proc_exit` ends its
  # execution with the runtime's `{:exited, code, meta}`: the call returns
  # `{:ok, nil, metadata}` with `metadata.exit_code` (`Munition.run/2` turns it
  # into its result). A call with a WASI configuration has its output in the
  # metadata (`:stdout`, `:stderr`, `:stdout_truncated`, `:stderr_truncated`).
  #
  # Every failure path that leaves a store behind is captured before the store
  # is released; once the runtime hands out an instance, it is released on
  # every path; and every execution's fuel and time are recorded in
  # `Munition.Fuel.Meter`.

  alias Munition.Forensics.Capture
  alias Munition.Fuel.Meter
  alias Munition.Host.Calls
  alias Munition.Instance.{BinaryABI, Slots, State}

  @grace_ms 1_000

  @typedoc "What `Munition.fire/4` returns."
  @type result ::
          {:ok, term(), map()}
          | {:crash, Munition.Reason.crash(), Munition.Forensics.Dump.t() | nil}
          | {:error, Munition.Reason.error()}

  @doc """
  Runs `state` (a compiled module, the function, its arguments, its bounds
  and links). Returns what `Munition.fire/4` returns.
  """
  @spec execute(State.t()) :: result()
  def execute(%State{} = state) do
    with :ok <- BinaryABI.check(state) do
      # A pooled call comes with the time it asked for its place.
      started_at = state.started_at || System.monotonic_time(:millisecond)
      state = %{state | started_at: started_at, call: call_at_once(state)}
      if own_driver?(state), do: run_in_driver(state), else: run(state)
    end
  end

  # A linked task: it dies with the caller (and so does the guest, whose
  # store is on its heap). Its body cannot raise (`run/1` rescues), so it
  # answers; one that does not answer past the deadline and twice the grace
  # is stuck in native code and is abandoned.
  defp run_in_driver(state) do
    task = Task.async(fn -> run(state) end)
    wait = max(state.started_at + state.timeout + 2 * @grace_ms - System.monotonic_time(:millisecond), 0)

    case Task.yield(task, wait) || Task.shutdown(task, :brutal_kill) do
      {:ok, result} ->
        # A caller that traps exits must not find the task's exit in its
        # mailbox: unlink (no exit signal can follow) and drop one sent already.
        Process.unlink(task.pid)

        receive do
          {:EXIT, pid, _reason} when pid == task.pid -> :ok
        after
          0 -> :ok
        end

        result

      {:exit, reason} ->
        {:error, {:runtime_failure, Exception.format_exit(reason)}}

      nil ->
        abandon(state)
    end
  end

  # A call is driven by a process of its own when its wake-ups come from
  # other threads: WASI file operations and outgoing HTTP requests run on
  # Wasmtime's threads and wake the driver when done (see
  # `Munition.Host.WASI`), at any time, even after the call is over; or when
  # it has Elixir host functions and the caller's mailbox is busy (see the
  # moduledoc). Sleeps need no message: the driver waits the time.
  @busy_mailbox 100

  defp own_driver?(%State{wasi: %{preopens: [_ | _]}}), do: true
  defp own_driver?(%State{wasi: %{http_allow: [_ | _]}}), do: true

  defp own_driver?(%State{host_functions: [_ | _]}),
    do: Process.info(self(), :message_queue_len) > {:message_queue_len, @busy_mailbox}

  defp own_driver?(%State{}), do: false

  # Whether the runtime messages the driver: host calls and their wake-ups,
  # wake-ups from WASI's threads.
  defp messaged?(%State{host_functions: [_ | _]}), do: true
  defp messaged?(state), do: own_driver?(state)

  # Everything that touches the store, in the process that drives the guest
  # (the caller, or its driver): the one the guest sends its calls to Elixir
  # host functions and its wake-ups to.
  defp run(state) do
    state = if messaged?(state), do: %{state | host_pid: self()}, else: state

    case instantiate(state) do
      {:ok, instance, progress} ->
        try do
          # Instantiation runs the start function, which may crash or wait on
          # a host function too; a runtime that went on to the call at once
          # (see `call_at_once/1`) answers with the call's outcome.
          case drive(state, instance, {:ok, progress}) do
            {:ok, :ready} -> initialize(state, instance)
            {:ok, {:returned, values, meta}} -> returned(state, instance, values, meta)
            {:ok, {:crashed, reason}} -> crash(state, instance, reason)
            {:ok, {:exited, code, meta}} -> exited(state, code, meta)
            other -> unexpected(state, other)
          end
        after
          Calls.stop()
          state.runtime.cleanup(instance)
          Slots.released()
        end

      {:error, _} = error ->
        error
    end
  rescue
    exception -> {:error, {:runtime_failure, Exception.message(exception)}}
  end

  # The call the runtime may make in the same step as instantiating:
  # `{function, args, release, alloc, binary_result}`, whenever no reactor
  # has to be initialized first, which is most calls, and saves trips to the
  # engine. A runtime that can copies binary arguments in and reads a binary
  # result itself, in the same step (Wasmtime, up to 64 KiB each way);
  # otherwise the instance comes back ready and the call is made the long
  # way (`call/2`), or the result read after. The instance may go as soon as
  # the call returns, unless a binary result is still to be read; a
  # snapshot's initialisation keeps its instance: it is read after.
  defp call_at_once(%State{module: %{kind: :component}} = state),
    do: {state.function, state.args, state.snapshot == nil, state.alloc, false}

  defp call_at_once(state) do
    unless reactor?(state),
      do: {state.function, state.args, state.snapshot == nil, state.alloc, state.result == :binary}
  end

  # Backpressure: every instance slot in use is not an answer while the
  # deadline has not passed; wait for a slot (see `Munition.Instance.Slots`)
  # and try again with what is left of the timeout.
  defp instantiate(state), do: instantiate(state, state.started_at + state.timeout, :back)

  defp instantiate(state, deadline, place) do
    case state.runtime.instantiate(state.module, state) do
      {:error, {:overloaded, _}} ->
        with :ok <- Slots.await(deadline, place),
             left when left > 0 <- deadline - System.monotonic_time(:millisecond) do
          # The store's deadline stays the call's: it gets what is left.
          instantiate(%{state | timeout: left}, deadline, :front)
        else
          _ -> {:error, {:overloaded, "every instance slot stayed in use until the call's deadline"}}
        end

      other ->
        other
    end
  end

  # The one driver loop: a guest that used up its slice is resumed at once; a
  # guest waiting for an Elixir host function has the call served, then is
  # resumed when woken (or at its deadline). Anything else is where the guest
  # stands for good.
  defp drive(state, instance, {:ok, :yielded}) do
    if abandoned?(state),
      do: :abandoned,
      else: drive(state, instance, state.runtime.resume(instance))
  end

  defp drive(state, instance, {:ok, {:waiting, ms}}) do
    await_wake(state, ms)

    if abandoned?(state),
      do: :abandoned,
      else: drive(state, instance, state.runtime.resume(instance))
  end

  defp drive(_state, _instance, outcome), do: outcome

  # A driver of its own without host functions is woken only by the
  # runtime (a WASI file operation done); with them, it serves them.
  defp await_wake(%State{host_functions: [], host_pid: pid}, ms) when pid != nil do
    receive do
      :munition_wake -> :ok
    after
      ms -> :ok
    end
  end

  defp await_wake(state, ms), do: Calls.serve_until_woken(state, ms)

  # A WASI reactor is initialized before its export is called.
  @initialize "_initialize"

  defp reactor?(state), do: state.module.reactor and state.function not in [@initialize, "_start"]

  defp initialize(state, instance) do
    if reactor?(state) do
      case drive(state, instance, state.runtime.call(instance, @initialize, [])) do
        {:ok, {:returned, [], _meta}} -> call(state, instance)
        {:ok, {:crashed, reason}} -> crash(state, instance, reason)
        {:ok, {:exited, code, meta}} -> exited(state, code, meta)
        other -> unexpected(state, other)
      end
    else
      call(state, instance)
    end
  end

  # A component's arguments are WIT values, converted by the runtime.
  defp call(%State{module: %{kind: :component}} = state, instance),
    do: call(state, instance, {:ok, state.args})

  defp call(state, instance),
    do: call(state, instance, BinaryABI.lower(state.args, &copy_in(state, instance, &1)))

  defp call(state, instance, lowered) do
    with {:ok, params} <- lowered do
      case drive(state, instance, state.runtime.call(instance, state.function, params)) do
        {:ok, {:returned, values, meta}} -> returned(state, instance, values, meta)
        {:ok, {:crashed, reason}} -> crash(state, instance, reason)
        {:ok, {:exited, code, meta}} -> exited(state, code, meta)
        other -> unexpected(state, other)
      end
    end
  end

  # A binary argument: the guest's allocator makes room, then the bytes are
  # copied in.
  defp copy_in(state, instance, bytes) do
    case drive(state, instance, state.runtime.call(instance, state.alloc, [byte_size(bytes)])) do
      {:ok, {:returned, [ptr], _meta}} ->
        case state.runtime.write_memory(instance, BinaryABI.unsigned(ptr), bytes) do
          :ok ->
            {:ok, ptr}

          {:error, {:out_of_bounds, message}} ->
            out_of_bounds(state, instance, "#{state.alloc} returned #{ptr}: #{message}")

          {:error, _} = error ->
            error
        end

      {:ok, {:crashed, reason}} ->
        crash(state, instance, reason)

      {:ok, {:exited, code, meta}} ->
        exited(state, code, meta)

      other ->
        unexpected(state, other)
    end
  end

  # The guest ended itself with WASI's proc_exit: a result, not a crash.
  defp exited(state, code, meta) do
    Meter.record(state.module.hash, state.function, :ok, meta.fuel_consumed, meta.execution_time_us)
    {:ok, nil, meta |> metadata(state) |> Map.put(:exit_code, code)}
  end

  # The runtime's metadata, with the call's context and its WASI output (when
  # it has a WASI configuration) at the top level.
  defp metadata(meta, state) do
    context = %{
      module_hash: state.module.hash,
      capabilities: state.capabilities,
      inert_links: state.inert_links
    }

    case Map.pop(meta, :output) do
      {nil, meta} -> Map.merge(meta, context)
      {output, meta} -> meta |> Map.merge(output) |> Map.merge(context)
    end
  end

  # The initialisation of a snapshot returned: its instance, idle, is
  # written into a new module before anything else reads or releases it.
  defp returned(%State{snapshot: {wasm, provenance}} = state, instance, values, meta) do
    case state.runtime.snapshot(instance, wasm, provenance) do
      {:ok, bytes} -> returned(%{state | snapshot: nil}, instance, values, Map.put(meta, :snapshot, bytes))
      {:error, _} = error -> error
    end
  end

  defp returned(state, instance, values, meta) do
    Meter.record(state.module.hash, state.function, :ok, meta.fuel_consumed, meta.execution_time_us)
    meta = metadata(meta, state)

    case {state.result, values} do
      {:values, values} ->
        {:ok, unwrap(values), meta}

      # Read by the runtime with the call.
      {:binary, {:binary, bytes}} ->
        {:ok, bytes, meta}

      {:binary, values} ->
        {ptr, len} = BinaryABI.result_range(values)

        case state.runtime.read_memory(instance, ptr, len) do
          {:ok, bytes} -> {:ok, bytes, meta}
          {:error, {:out_of_bounds, message}} -> out_of_bounds(state, instance, "result #{message}")
          {:error, _} = error -> error
        end
    end
  end

  defp unwrap([]), do: nil
  defp unwrap([value]), do: value
  defp unwrap(values), do: values

  # The runtime's own errors pass through; a guest abandoned past its
  # deadline is a timeout; a progress that cannot come at this point (the
  # runtime broke its contract) is a runtime failure, never silently
  # something else.
  defp unexpected(_state, {:error, _} = error), do: error
  defp unexpected(state, :abandoned), do: abandon(state)

  defp unexpected(_state, other),
    do: {:error, {:runtime_failure, "unexpected progress from the runtime: #{inspect(other)}"}}

  # The backstop, for a guest the engine failed to stop: past the deadline and
  # its grace, the guest is abandoned (the `after` in `run/1` releases it).
  defp abandoned?(state),
    do: System.monotonic_time(:millisecond) > state.started_at + state.timeout + @grace_ms

  defp abandon(state) do
    # What it burnt is unknown: the budget is the bound.
    Meter.record(state.module.hash, state.function, :timeout, state.fuel, state.timeout * 1000)

    {:crash, :timeout,
     Capture.without_store(
       state,
       :timeout,
       :interrupt,
       "the guest did not return within #{state.timeout} ms plus #{@grace_ms} ms of grace; the call was abandoned"
     )}
  end

  defp out_of_bounds(state, instance, message) do
    {:crash, :trap, dump} = crash(state, instance, :trap)
    dump = dump && %{dump | reason: :trap, trap: :memory_out_of_bounds, message: message}
    {:crash, :trap, dump}
  end

  # Every crash is captured, at least minimally: the meter needs its fuel and
  # time even when the caller wants no dump (`forensics: false`).
  defp crash(state, instance, reason) do
    mode = if state.forensics == false, do: :minimal, else: state.forensics
    dump = %{Capture.capture(state, instance, mode) | reason: reason}
    Meter.record(state.module.hash, state.function, reason, dump.fuel_consumed, dump.execution_time_us)
    {:crash, reason, if(state.forensics, do: dump)}
  end
end

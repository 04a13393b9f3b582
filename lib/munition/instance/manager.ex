defmodule Munition.Instance.Manager do
  @moduledoc """
  Runs one execution: instantiate -> call -> capture -> cleanup, for a
  `Munition.Instance.State` that `Munition.fire/4` built (module compiled,
  imports resolved, bounds checked).

  The guest runs in a task linked to the calling process, which waits for it
  and enforces the timeout; the task drives the guest (`drive/3`, the one
  loop over the runtime's slices) and serves its calls to Elixir host
  functions (`Munition.Host.Calls`). The native side enforces the same
  deadline on its own (epoch interruption), so a guest past its deadline
  stops running instead of merely being abandoned. The wait here gives up on
  the task only one second after the deadline (the grace for capturing a
  large memory), which happens only if the native side failed to stop the
  guest.

  Every failure path that leaves a store behind is captured before the store
  is released; once the runtime hands out an instance, it is released on
  every path; and every execution's fuel and time are recorded in
  `Munition.Fuel.Meter`.
  """

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
      state = %{state | started_at: System.monotonic_time(:millisecond)}
      task = start_task(fn -> run(state) end)
      await(task, state, state.started_at + state.timeout + @grace_ms)
    end
  end

  # A plain linked task, not one started through a Task.Supervisor: going
  # through the supervisor process doubled the cost of a small call (measured
  # with bench/fire.exs). The link makes the task (and so the guest) die with
  # the caller. The task cannot take the caller down with it: its body catches
  # everything, and on timeout it is shut down (unlinked first).
  defp start_task(fun) do
    Task.async(fn ->
      try do
        fun.()
      rescue
        exception -> {:error, {:runtime_failure, Exception.message(exception)}}
      catch
        kind, value -> {:error, {:runtime_failure, Exception.format(kind, value)}}
      end
    end)
  end

  defp await(task, state, give_up_at) do
    wait = max(give_up_at - System.monotonic_time(:millisecond), 0)

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
  end

  # Runs inside the task: everything that touches the store. The task is also
  # the process the guest sends its calls to Elixir host functions to.
  defp run(state) do
    state = if state.host_functions == [], do: state, else: %{state | host_pid: self()}

    case instantiate(state) do
      {:ok, instance, progress} ->
        try do
          # Instantiation runs the start function, which may crash or wait on
          # a host function too.
          case drive(state, instance, {:ok, progress}) do
            {:ok, :ready} -> call(state, instance)
            {:ok, {:crashed, reason}} -> crash(state, instance, reason)
            other -> unexpected(other)
          end
        after
          Calls.stop()
          state.runtime.cleanup(instance)
          Slots.released()
        end

      {:error, _} = error ->
        error
    end
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
    drive(state, instance, state.runtime.resume(instance))
  end

  defp drive(state, instance, {:ok, {:waiting, ms}}) do
    Calls.serve_until_woken(state, ms)
    drive(state, instance, state.runtime.resume(instance))
  end

  defp drive(_state, _instance, outcome), do: outcome

  defp call(state, instance) do
    with {:ok, params} <- BinaryABI.lower(state.args, &copy_in(state, instance, &1)) do
      case drive(state, instance, state.runtime.call(instance, state.function, params)) do
        {:ok, {:returned, values, meta}} -> returned(state, instance, values, meta)
        {:ok, {:crashed, reason}} -> crash(state, instance, reason)
        other -> unexpected(other)
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

      other ->
        unexpected(other)
    end
  end

  defp returned(state, instance, values, meta) do
    Meter.record(state.module.hash, state.function, :ok, meta.fuel_consumed, meta.execution_time_us)
    meta = Map.merge(meta, %{module_hash: state.module.hash, capabilities: state.capabilities})

    case state.result do
      :values ->
        {:ok, unwrap(values), meta}

      :binary ->
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

  # The runtime's own errors pass through; a progress that cannot come at
  # this point (the runtime broke its contract) is a runtime failure, never
  # silently something else.
  defp unexpected({:error, _} = error), do: error

  defp unexpected(other),
    do: {:error, {:runtime_failure, "unexpected progress from the runtime: #{inspect(other)}"}}

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

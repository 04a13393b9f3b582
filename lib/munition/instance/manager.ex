defmodule Munition.Instance.Manager do
  @moduledoc """
  Runs one execution: compile -> instantiate -> execute -> capture -> cleanup.

  The guest runs in a task linked to the calling process, which waits for it
  and enforces the timeout; the task drives the guest and serves its calls to
  Elixir host functions. The native side enforces the same deadline on its own (epoch
  interruption), so a guest past its deadline stops running instead of merely
  being abandoned. The wait here gives up on the task only one second after the
  deadline (the grace for capturing a large memory), which happens only if the
  native side failed to stop the guest.

  Every failure path that leaves a store behind is captured before the store is
  released; the store is released on every path; and every execution's fuel and
  time are recorded in `Munition.Fuel.Meter`.
  """

  alias Munition.Forensics.Capture
  alias Munition.Fuel.Meter
  alias Munition.Host.Functions
  alias Munition.Instance.State

  @grace_ms 1_000

  @type plan :: %{
          runtime: module(),
          timeout: pos_integer(),
          max_memory: pos_integer(),
          links: [map()],
          host_functions: [Munition.Host.Function.t()],
          forensics: :full | :minimal | false,
          result: :values | :binary,
          alloc: String.t()
        }

  @doc """
  Runs `state` (a compiled module, the function, its arguments, fuel and
  capabilities) under `plan`. Returns what `Munition.fire/4` returns.
  """
  @spec execute(State.t(), plan()) ::
          {:ok, term(), map()} | {:crash, atom(), Munition.Forensics.Dump.t() | nil} | {:error, term()}
  def execute(%State{} = state, plan) do
    with :ok <- check_binary_abi(state, plan) do
      state = %{state | started_at: System.monotonic_time(:millisecond)}
      task = start_task(fn -> run(state, plan) end)
      await(task, state, plan, state.started_at + plan.timeout + @grace_ms)
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

  defp await(task, state, plan, give_up_at) do
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
        Meter.record(state.module.hash, state.function, :timeout, state.fuel, plan.timeout * 1000)

        {:crash, :timeout,
         Capture.without_store(
           state,
           :timeout,
           :interrupt,
           "the guest did not return within #{plan.timeout} ms plus #{@grace_ms} ms of grace; the call was abandoned"
         )}
    end
  end

  # Runs inside the task: everything that touches the store. The task is also
  # the process the guest sends its calls to Elixir host functions to, so it
  # serves them itself while the guest waits (see `drive/4`).
  defp run(state, plan) do
    runtime = plan.runtime

    config = %{
      fuel: state.fuel,
      timeout: plan.timeout,
      max_memory: plan.max_memory,
      links: plan.links,
      log_limit: Munition.Runtime.Config.log_limit(),
      host_pid: if(plan.host_functions == [], do: nil, else: self())
    }

    try do
      with {:instance, instance, outcome} <- instantiate(runtime, state, config, plan) do
        try do
          case outcome do
            :ready ->
              call(runtime, instance, %{State.advance(state, :instantiated) | instance: instance}, plan)

            {:crash, reason} ->
              crash(runtime, instance, State.advance(state, :crashed), reason, plan)

            {:error, _} = error ->
              error
          end
        after
          runtime.cleanup(instance)
        end
      end
    after
      stop_serving()
    end
  end

  # Instantiation runs the start function, which may crash or wait on a host
  # function too; either way there is an instance to capture and release.
  defp instantiate(runtime, state, config, plan) do
    case runtime.instantiate(state.module, config) do
      {:ok, instance} -> {:instance, instance, :ready}
      {:crash, reason, instance} -> {:instance, instance, {:crash, reason}}
      {:waiting, ms, instance} -> {:instance, instance, drive(runtime, instance, {:waiting, ms}, plan)}
      {:error, _} = error -> error
    end
  end

  # A guest waiting for an Elixir host function: serve the call, wait for the
  # answer (the native side wakes this process) or the deadline, resume.
  # Anything else is where the guest stands for good.
  defp drive(runtime, instance, {:waiting, ms}, plan) do
    serve_until_woken(System.monotonic_time(:millisecond) + ms, plan)
    drive(runtime, instance, runtime.resume(instance), plan)
  end

  defp drive(_runtime, _instance, outcome, _plan), do: outcome

  # The process running the current host function, its monitor and the guest
  # call it answers. A guest makes one host call at a time, so there is at
  # most one; it lives in this task's dictionary so the task's `after` can
  # stop it whatever happened.
  @serving :munition_host_function

  defp serve_until_woken(wake_by, plan) do
    receive do
      :munition_wake ->
        :ok

      {:munition_host_call, call, index, args, fuel} ->
        function = Enum.at(plan.host_functions, index)
        pid = Functions.serve(function, call, args, fuel)
        Process.put(@serving, {pid, Process.monitor(pid), call})
        serve_until_woken(wake_by, plan)

      {:DOWN, monitor, :process, _pid, reason} ->
        # A host function's process that ends without replying (killed, or
        # exiting by itself) is answered for: the guest gets a host error at
        # once instead of waiting for its deadline; the reply wakes this
        # process. If it did reply, the guest has taken that reply and closed
        # the channel (its wake came before this message), and this one goes
        # nowhere.
        with {_pid, ^monitor, call} <- Process.get(@serving) do
          Munition.Native.host_reply(
            call,
            {:error, "the host function's process ended without replying: #{inspect(reason)}"},
            []
          )
        end

        serve_until_woken(wake_by, plan)
    after
      max(wake_by - System.monotonic_time(:millisecond), 0) -> :ok
    end
  end

  defp stop_serving do
    with {pid, monitor, _call} <- Process.delete(@serving) do
      Process.demonitor(monitor, [:flush])
      Process.exit(pid, :kill)
    end
  end

  defp call(runtime, instance, state, plan) do
    with {:ok, params} <- lower_args(runtime, instance, state, plan) do
      state = State.advance(state, :called)

      case drive(runtime, instance, runtime.call(instance, state.function, params), plan) do
        {:ok, values, meta} -> lift_result(runtime, instance, state, values, meta, plan)
        {:crash, reason} -> crash(runtime, instance, state, reason, plan)
        {:error, _} = error -> error
      end
    end
  end

  # The binary ABI, checked against the exports' signatures before anything
  # runs: `alloc(i32) -> i32` when there are binary arguments, and a
  # `(i32, i32)` or `i64` result for `result: :binary`.
  defp check_binary_abi(%State{module: module} = state, plan) do
    alloc = Munition.Module.export(module, plan.alloc)
    function = Munition.Module.export(module, state.function)

    cond do
      Enum.any?(state.args, &is_binary/1) and not match?(%{params: [:i32], results: [:i32]}, alloc) ->
        {:error,
         {:bad_args,
          "binary arguments need the guest to export #{plan.alloc}(len: i32) -> ptr: i32 (see the :alloc option)"}}

      # A missing function is reported as such by the call.
      plan.result == :binary and function != nil and function.results not in [[:i32, :i32], [:i64]] ->
        {:error,
         {:bad_result,
          "result: :binary needs #{state.function} to return (ptr: i32, len: i32) or one i64 (ptr << 32 | len)"}}

      true ->
        :ok
    end
  end

  # Binary arguments are copied into guest memory through the guest's
  # allocator and passed as (pointer, length); see "Binary data" in the README.
  defp lower_args(runtime, instance, state, plan) do
    Enum.reduce_while(state.args, {:ok, []}, fn
      arg, {:ok, acc} when is_binary(arg) ->
        case copy_in(runtime, instance, state, arg, plan) do
          {:ok, ptr} -> {:cont, {:ok, acc ++ [ptr, byte_size(arg)]}}
          other -> {:halt, other}
        end

      arg, {:ok, acc} ->
        {:cont, {:ok, acc ++ [arg]}}
    end)
  end

  defp copy_in(runtime, instance, state, bytes, plan) do
    case drive(runtime, instance, runtime.call(instance, plan.alloc, [byte_size(bytes)]), plan) do
      {:ok, [ptr], _meta} ->
        case runtime.write_memory(instance, to_unsigned(ptr), bytes) do
          :ok ->
            {:ok, ptr}

          {:error, {:out_of_bounds, message}} ->
            out_of_bounds(runtime, instance, state, plan, "#{plan.alloc} returned #{ptr}: #{message}")

          {:error, _} = error ->
            error
        end

      {:crash, reason} ->
        crash(runtime, instance, state, reason, plan)

      {:error, _} = error ->
        error
    end
  end

  defp lift_result(runtime, instance, state, values, meta, plan) do
    state = State.advance(state, :returned)
    Meter.record(state.module.hash, state.function, :ok, meta.fuel_consumed, meta.execution_time_us)
    meta = Map.merge(meta, %{module_hash: state.module.hash, capabilities: state.capabilities})

    case plan.result do
      :values ->
        {:ok, unwrap(values), meta}

      :binary ->
        {ptr, len} = binary_range(values)

        case runtime.read_memory(instance, ptr, len) do
          {:ok, bytes} ->
            {:ok, bytes, meta}

          {:error, {:out_of_bounds, message}} ->
            out_of_bounds(runtime, instance, state, plan, "result #{message}")

          {:error, _} = error ->
            error
        end
    end
  end

  defp unwrap([]), do: nil
  defp unwrap([value]), do: value
  defp unwrap(values), do: values

  # The shapes were checked against the export's signature.
  defp binary_range([ptr, len]), do: {to_unsigned(ptr), to_unsigned(len)}

  defp binary_range([packed]) do
    <<ptr::32, len::32>> = <<packed::64>>
    {ptr, len}
  end

  # i32 results come back signed; pointers and lengths are unsigned.
  defp to_unsigned(value) when value < 0, do: value + 0x1_0000_0000
  defp to_unsigned(value), do: value

  defp out_of_bounds(runtime, instance, state, plan, message) do
    {:crash, :trap, dump} = crash(runtime, instance, state, :trap, plan)
    dump = dump && %{dump | reason: :trap, trap: :memory_out_of_bounds, message: message}
    {:crash, :trap, dump}
  end

  # Every crash is captured, at least minimally: the meter needs its fuel and
  # time even when the caller wants no dump (`forensics: false`).
  defp crash(runtime, instance, state, reason, plan) do
    mode = if plan.forensics == false, do: :minimal, else: plan.forensics
    dump = %{Capture.capture(runtime, instance, State.advance(state, :crashed), mode) | reason: reason}
    Meter.record(state.module.hash, state.function, reason, dump.fuel_consumed, dump.execution_time_us)
    {:crash, reason, if(plan.forensics, do: dump)}
  end
end

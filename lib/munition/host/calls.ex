defmodule Munition.Host.Calls do
  @moduledoc false
  # Serves a suspended guest's calls to Elixir host functions, in the process
  # that drives the guest (the caller of Munition.fire/4, or a process of its
  # own: see the manager). That may be the caller's own mailbox: only the
  # messages of this call are received, and `stop/0` leaves none behind.
  #
  # The runtime sends that process `{:munition_host_call, call, index, args,
  # fuel}`; the function runs in a process of its own, so that a slow or
  # misbehaving function never blocks the driver, and its reply goes back
  # through the runtime, which wakes the driver with `:munition_wake`. A guest
  # makes one host call at a time, so there is at most one such process; it
  # lives in the driver's dictionary so that `stop/0` can kill it whatever
  # happened.

  alias Munition.Host.{Context, Function}
  alias Munition.Instance.State

  @serving :munition_host_function

  @doc false
  # Serves host calls until the runtime wakes this process or `ms` pass (the
  # guest's deadline): then the driver resumes the guest. A call without host
  # functions is driven by its caller, whose mailbox is not ours to read: a
  # guest waiting there (asleep) only needs the time to pass.
  @spec serve_until_woken(State.t(), non_neg_integer()) :: :ok
  def serve_until_woken(%State{host_functions: []}, ms) do
    receive do
    after
      ms -> :ok
    end
  end

  def serve_until_woken(%State{} = state, ms) do
    loop(state, System.monotonic_time(:millisecond) + ms)
  end

  defp loop(state, wake_by) do
    # Only the DOWN of the host function's process serving now is ours.
    serving_monitor =
      case Process.get(@serving) do
        {_pid, monitor, _call} -> monitor
        nil -> nil
      end

    receive do
      :munition_wake ->
        :ok

      {:munition_host_call, call, index, args, fuel} ->
        # The previous call's process has replied (the guest went on): its
        # monitor goes, so no DOWN outlives the execution.
        with {_pid, monitor, _call} <- Process.get(@serving), do: Process.demonitor(monitor, [:flush])
        function = Enum.at(state.host_functions, index)
        pid = spawn_call(state.runtime, function, call, args, fuel)
        Process.put(@serving, {pid, Process.monitor(pid), call})
        loop(state, wake_by)

      {:DOWN, ^serving_monitor, :process, _pid, reason} ->
        # A host function's process that ends without replying (killed, or
        # exiting by itself) is answered for: the guest gets a host error at
        # once instead of waiting for its deadline; the reply wakes this
        # process. If it did reply, the guest has taken that reply and closed
        # the channel (its wake came before this message), and this one goes
        # nowhere.
        {_pid, _monitor, call} = Process.delete(@serving)

        state.runtime.host_reply(
          call,
          {:error, "the host function's process ended without replying: #{inspect(reason)}"},
          []
        )

        loop(state, wake_by)
    after
      max(wake_by - System.monotonic_time(:millisecond), 0) -> :ok
    end
  end

  @doc false
  # The guest call is over: kills the host function still running, if any,
  # and takes out of this process's mailbox what the call's host functions
  # sent it. A wake is sent by the host function's own process (its reply,
  # its memory requests), so once its DOWN is here (signals between two
  # processes keep their order) none of its wakes can follow. A process
  # that does not go within `@down_wait` ms (stuck in a NIF, where a kill
  # waits) is only demonitored.
  @down_wait 1_000

  @spec stop() :: :ok
  def stop do
    case Process.delete(@serving) do
      {pid, monitor, _call} ->
        Process.exit(pid, :kill)

        receive do
          {:DOWN, ^monitor, :process, _pid, _reason} -> :ok
        after
          @down_wait -> Process.demonitor(monitor, [:flush])
        end

        flush_wakes()

      nil ->
        :ok
    end
  end

  defp flush_wakes do
    receive do
      :munition_wake -> flush_wakes()
    after
      0 -> :ok
    end
  end

  # Runs one guest call of a host function in a process of its own and sends
  # the reply to the waiting guest. The process also dies with the driver: a
  # watchdog linked to it kills it when the driver goes down, however the
  # driver ends (killed with its caller, or shut down past the grace period).
  defp spawn_call(runtime, %Function{} = function, call, args, fuel_remaining) do
    driver = self()

    spawn(fn ->
      watchdog = watch(driver)

      context = %Context{
        call: call,
        runtime: runtime,
        function: function.name,
        fuel_remaining: fuel_remaining
      }

      runtime.host_reply(call, apply_function(function, context, args), function.results)
      unwatch(watchdog)
    end)
  end

  @doc false
  # Calls a host function's fun: `{:ok, value}`, or `{:error, message}` for
  # whatever it raised, threw or exited with. Also used for host functions
  # that run on the caller's node of a call on another node
  # (Munition.Cluster.HostProxy).
  @spec apply_function(Function.t(), Context.t(), list()) :: {:ok, term()} | {:error, String.t()}
  def apply_function(%Function{fun: fun}, context, args) do
    {:ok, apply(fun, [context | args])}
  rescue
    exception -> {:error, Exception.message(exception)}
  catch
    kind, value -> {:error, "#{kind}: #{inspect(value, limit: 20, printable_limit: 200)}"}
  end

  @doc false
  # A watchdog that kills the calling process when `driver` goes down: linked,
  # so it goes when the calling process is killed; `unwatch/1` stops it when
  # the calling process is done.
  @spec watch(pid()) :: pid()
  def watch(driver) do
    host = self()

    spawn_link(fn ->
      ref = Process.monitor(driver)

      receive do
        {:DOWN, ^ref, :process, _pid, _reason} -> Process.exit(host, :kill)
      end
    end)
  end

  @doc false
  # A guest may make thousands of host calls in one execution: do not leave
  # a watchdog per call waiting for the driver.
  @spec unwatch(pid()) :: true
  def unwatch(watchdog) do
    Process.unlink(watchdog)
    Process.exit(watchdog, :kill)
  end
end

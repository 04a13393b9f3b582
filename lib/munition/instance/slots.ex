defmodule Munition.Instance.Slots do
  @moduledoc """
  Backpressure: calls past the engine's capacity wait here for an instance
  slot, in order, instead of failing.

  The engine has a fixed number of instance slots (1,000; see "Limits" in the
  README). A call that finds them all in use does not fail while its deadline
  has not passed: it waits in this queue and tries again when a slot is
  released. A call still waiting at its deadline gets
  `{:error, {:overloaded, message}}`: nothing ran, so there is no guest state
  to dump, and the reason says why (the engine was full), which a caller can
  match and retry later or shed.

  The fast path costs one atomic read: a call simply instantiates, and only
  a call the runtime answers `{:overloaded, _}` comes here. A released slot
  wakes the oldest waiter, which tries again and, if a newcomer took the slot
  first, waits again at the head of the queue. Stores released by the garbage
  collector (their caller was killed) send no notice, so while anyone waits
  the head of the queue is also retried every 5 ms. A waiter that dies
  leaves the queue (monitored); one that times out leaves it itself.

  Without the application started there is no queue and a full engine is
  `{:error, {:overloaded, _}}` at once.
  """

  use GenServer

  @retry_ms 5
  # The number of waiting callers, readable without a message to the server.
  @counter {__MODULE__, :waiting}

  @doc false
  def start_link(opts \\ []), do: GenServer.start_link(__MODULE__, opts, name: __MODULE__)

  @doc "Calls waiting for an instance slot right now."
  @spec waiting() :: non_neg_integer()
  def waiting do
    case :persistent_term.get(@counter, nil) do
      nil -> 0
      counter -> :atomics.get(counter, 1)
    end
  end

  @doc false
  # Waits until a slot may be free (`:ok`: try again) or `deadline` (monotonic
  # milliseconds) passes (`:timeout`). `place` is `:back` for a first wait and
  # `:front` for a waiter that was woken and lost the slot to a newcomer.
  @spec await(integer(), :back | :front) :: :ok | :timeout
  def await(deadline, place \\ :back) do
    case Process.whereis(__MODULE__) do
      nil ->
        :timeout

      server ->
        ref = make_ref()
        send(server, {:wait, self(), ref, place})

        receive do
          {^ref, :retry} -> :ok
        after
          max(deadline - System.monotonic_time(:millisecond), 0) ->
            send(server, {:cancel, ref})
            # A wake that crossed the cancel is dropped: the deadline has passed.
            receive do
              {^ref, :retry} -> :timeout
            after
              0 -> :timeout
            end
        end
    end
  end

  @doc false
  # Called after a store is released: wakes the oldest waiter, if any.
  @spec released() :: :ok
  def released do
    with counter when counter != nil <- :persistent_term.get(@counter, nil),
         true <- :atomics.get(counter, 1) > 0,
         server when server != nil <- Process.whereis(__MODULE__) do
      send(server, :released)
    end

    :ok
  end

  @impl true
  def init(_opts) do
    counter = :atomics.new(1, signed: true)
    :persistent_term.put(@counter, counter)
    # monitors: waiter ref => monitor; waiters: monitor => waiter ref.
    {:ok, %{queue: :queue.new(), monitors: %{}, waiters: %{}, counter: counter, timer: nil}}
  end

  @impl true
  def handle_info({:wait, pid, ref, place}, state) do
    monitor = Process.monitor(pid)

    queue =
      if place == :front, do: :queue.in_r({ref, pid}, state.queue), else: :queue.in({ref, pid}, state.queue)

    :atomics.add(state.counter, 1, 1)

    state = %{
      state
      | queue: queue,
        monitors: Map.put(state.monitors, ref, monitor),
        waiters: Map.put(state.waiters, monitor, ref)
    }

    {:noreply, schedule(state)}
  end

  def handle_info(:released, state), do: {:noreply, schedule(wake_one(state))}

  def handle_info(:retry, state), do: {:noreply, schedule(wake_one(%{state | timer: nil}))}

  def handle_info({:cancel, ref}, state), do: {:noreply, drop(state, ref)}

  def handle_info({:DOWN, monitor, :process, _pid, _reason}, state) do
    case state.waiters do
      %{^monitor => ref} -> {:noreply, drop(state, ref)}
      _ -> {:noreply, state}
    end
  end

  defp wake_one(state) do
    case :queue.out(state.queue) do
      {{:value, {ref, pid}}, queue} ->
        {monitor, monitors} = Map.pop!(state.monitors, ref)
        Process.demonitor(monitor, [:flush])
        :atomics.sub(state.counter, 1, 1)
        send(pid, {ref, :retry})
        %{state | queue: queue, monitors: monitors, waiters: Map.delete(state.waiters, monitor)}

      {:empty, _} ->
        state
    end
  end

  defp drop(state, ref) do
    case Map.pop(state.monitors, ref) do
      {nil, _} ->
        state

      {monitor, monitors} ->
        Process.demonitor(monitor, [:flush])
        :atomics.sub(state.counter, 1, 1)
        queue = :queue.filter(fn {r, _pid} -> r != ref end, state.queue)
        %{state | queue: queue, monitors: monitors, waiters: Map.delete(state.waiters, monitor)}
    end
  end

  # While anyone waits, the head is retried every @retry_ms: a slot released
  # without a notice (a store collected with its killed caller) is found.
  defp schedule(%{timer: nil} = state) do
    if :queue.is_empty(state.queue),
      do: state,
      else: %{state | timer: Process.send_after(self(), :retry, @retry_ms)}
  end

  defp schedule(state), do: state
end

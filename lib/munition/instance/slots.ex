defmodule Munition.Instance.Slots do
  @moduledoc false
  # Backpressure: calls past the engine's capacity wait here for an instance
  # slot, in order, instead of failing.
  #
  # The engine has a fixed number of instance slots, set when it starts
  # (`config :munition, max_instances: n`, 1,000 by default: see
  # `Munition.Runtime.Config`). A call that finds them all in use does not fail while its deadline
  # has not passed: it waits in this line and tries again when a slot is
  # released. A call still waiting at its deadline gets
  # `{:error, {:overloaded, message}}`: nothing ran, so there is no guest state
  # to dump, and the reason says why (the engine was full), which a caller can
  # match to retry later or shed load.
  #
  # The fast path costs one atomic read: a call simply instantiates, and only
  # a call the runtime answers `{:overloaded, _}` comes here. A released slot
  # wakes the oldest waiter, which tries again and, if a newcomer took the slot
  # first, waits again at the head of the line. Stores released by the garbage
  # collector (their caller was killed) send no notice, so while anyone waits
  # the head of the line is also retried every 5 ms. A waiter that dies leaves
  # the line (monitored); one that times out leaves it itself.
  #
  # Without the application started there is no line, and a full engine is
  # `{:error, {:overloaded, _}}` at once.

  use GenServer

  alias Munition.Instance.Waiters

  @retry_ms 5
  @counter {__MODULE__, :waiting}

  @doc false
  def start_link(opts \\ []), do: GenServer.start_link(__MODULE__, opts, name: __MODULE__)

  @doc "Calls waiting for an instance slot right now."
  @spec waiting() :: non_neg_integer()
  def waiting do
    case :persistent_term.get(@counter, nil) do
      nil -> 0
      counter -> Waiters.count(counter)
    end
  end

  @doc false
  # Waits until a slot may be free (`:ok`: try again) or `deadline` passes
  # (`:timeout`; also without the application, when there is no line).
  @spec await(integer(), :back | :front) :: :ok | :timeout
  def await(deadline, place \\ :back) do
    case Waiters.await(__MODULE__, deadline, place) do
      :gone -> :timeout
      other -> other
    end
  end

  @doc false
  # Called after a store is released: wakes the oldest waiter, if any.
  @spec released() :: :ok
  def released do
    with counter when counter != nil <- :persistent_term.get(@counter, nil),
         true <- Waiters.count(counter) > 0,
         server when server != nil <- Process.whereis(__MODULE__) do
      send(server, :released)
    end

    :ok
  end

  @impl true
  def init(_opts) do
    counter = :atomics.new(1, signed: true)
    :persistent_term.put(@counter, counter)
    {:ok, %{line: Waiters.new(counter), timer: nil}}
  end

  @impl true
  def handle_info({:wait, pid, ref, place}, state),
    do: {:noreply, schedule(%{state | line: Waiters.add(state.line, pid, ref, place)})}

  def handle_info(:released, state), do: {:noreply, schedule(%{state | line: Waiters.wake(state.line)})}

  def handle_info(:retry, state),
    do: {:noreply, schedule(%{state | line: Waiters.wake(state.line), timer: nil})}

  def handle_info({:cancel, ref}, state), do: {:noreply, %{state | line: Waiters.cancel(state.line, ref)}}

  def handle_info({:DOWN, monitor, :process, _pid, _reason}, state),
    do: {:noreply, %{state | line: Waiters.down(state.line, monitor)}}

  defp schedule(state), do: %{state | timer: Waiters.schedule_retry(state.line, state.timer, @retry_ms)}
end

defmodule Munition.Instance.Waiters do
  @moduledoc false
  # A first-in, first-out line of processes waiting for a turn: the engine's
  # instance slots (Munition.Instance.Slots) and a pool's places
  # (Munition.Pool). The server that owns the line keeps this struct in its
  # state and calls `add/4`, `wake/1`, `cancel/2` and `down/2` from its
  # handle_info; waiting processes call `await/3`.
  #
  # Every waiter is monitored, so one that dies leaves the line. The number
  # waiting is kept in an :atomics counter (index 1 of `counter`) so that
  # callers and stats read it without a message.

  defstruct queue: :queue.new(), monitors: %{}, refs: %{}, counter: nil

  @type t :: %__MODULE__{}

  @doc false
  @spec new(:atomics.atomics_ref()) :: t()
  def new(counter), do: %__MODULE__{counter: counter}

  @doc false
  # Processes waiting on `counter`.
  @spec count(:atomics.atomics_ref()) :: non_neg_integer()
  def count(counter) do
    # Read by a compare-and-swap with the same value, which answers the
    # counter's value when it differs and costs half an :atomics.get/2 on
    # OTP 25: every pooled call reads it twice and every call once.
    case :atomics.compare_exchange(counter, 1, 0, 0) do
      :ok -> 0
      waiting -> waiting
    end
  end

  @doc false
  # Waits in `server`'s line until woken (`:ok`: try again), until `deadline`
  # (monotonic milliseconds) passes (`:timeout`), or until the server is gone
  # (`:gone`). `place` is `:back` for a first wait, `:front` for a waiter
  # that was woken and lost its turn to a newcomer.
  @spec await(pid() | atom(), integer(), :back | :front) :: :ok | :timeout | :gone
  def await(server, deadline, place) do
    case GenServer.whereis(server) do
      nil ->
        :gone

      pid ->
        ref = Process.monitor(pid)
        send(pid, {:wait, self(), ref, place})

        receive do
          {^ref, :retry} ->
            Process.demonitor(ref, [:flush])
            :ok

          {:DOWN, ^ref, :process, _pid, _reason} ->
            :gone
        after
          max(deadline - System.monotonic_time(:millisecond), 0) ->
            send(pid, {:cancel, ref})
            Process.demonitor(ref, [:flush])
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
  @spec add(t(), pid(), reference(), :back | :front) :: t()
  def add(%__MODULE__{} = line, pid, ref, place) do
    monitor = Process.monitor(pid)

    queue =
      if place == :front,
        do: :queue.in_r({ref, pid}, line.queue),
        else: :queue.in({ref, pid}, line.queue)

    :atomics.add(line.counter, 1, 1)

    %{
      line
      | queue: queue,
        monitors: Map.put(line.monitors, ref, monitor),
        refs: Map.put(line.refs, monitor, ref)
    }
  end

  @doc false
  # Wakes the oldest waiter, if any.
  @spec wake(t()) :: t()
  def wake(%__MODULE__{} = line) do
    case :queue.out(line.queue) do
      {{:value, {ref, pid}}, queue} ->
        line = forget(%{line | queue: queue}, ref)
        send(pid, {ref, :retry})
        line

      {:empty, _} ->
        line
    end
  end

  @doc false
  # A waiter that gave up (its deadline).
  @spec cancel(t(), reference()) :: t()
  def cancel(%__MODULE__{} = line, ref) do
    if Map.has_key?(line.monitors, ref) do
      queue = :queue.filter(fn {r, _pid} -> r != ref end, line.queue)
      forget(%{line | queue: queue}, ref)
    else
      line
    end
  end

  @doc false
  # A `:DOWN` the owner received: a waiter that died leaves the line.
  @spec down(t(), reference()) :: t()
  def down(%__MODULE__{} = line, monitor) do
    case line.refs do
      %{^monitor => ref} -> cancel(line, ref)
      _ -> line
    end
  end

  @doc false
  # While anyone waits, the owner sends itself `:retry` every `ms`: a turn
  # freed without a notice (a store or place of a killed caller) is found.
  # Returns the owner's timer: `timer` if one is pending, a new one, or nil.
  @spec schedule_retry(t(), reference() | nil, pos_integer()) :: reference() | nil
  def schedule_retry(line, nil, ms),
    do: if(empty?(line), do: nil, else: Process.send_after(self(), :retry, ms))

  def schedule_retry(_line, timer, _ms), do: timer

  @doc false
  @spec empty?(t()) :: boolean()
  def empty?(%__MODULE__{queue: queue}), do: :queue.is_empty(queue)

  @doc false
  # Everyone still waiting, in order: for an owner that stops.
  @spec to_list(t()) :: [{reference(), pid()}]
  def to_list(%__MODULE__{queue: queue}), do: :queue.to_list(queue)

  defp forget(line, ref) do
    {monitor, monitors} = Map.pop!(line.monitors, ref)
    Process.demonitor(monitor, [:flush])
    :atomics.sub(line.counter, 1, 1)
    %{line | monitors: monitors, refs: Map.delete(line.refs, monitor)}
  end
end

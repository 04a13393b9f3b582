defmodule Munition.Fuel.Meter.Window do
  @moduledoc """
  The last hour of a meter key, minute by minute, counted in the key's
  `:atomics` array next to its totals.

  The window is 60 slots, one per minute of the clock (the slot of a
  minute is the minute since the epoch modulo 60). A slot holds its minute's
  stamp (the minute plus one; `0` when never used, the largest unsigned
  64-bit integer while being recycled), one count per outcome, the sum and
  maximum of fuel, and the sum and maximum of execution time.

  The first caller of a new minute recycles the slot that minute maps to: it
  claims the slot by swapping its stamp, zeroes it, then stamps it. Callers
  that find the slot claimed retry a few times, then leave their call out of
  the window (the totals have it), so the window may miss the few calls that
  record while a slot is recycled. Reading ignores slots stamped more than an
  hour ago.

  This module owns the slot layout, recording into it and reading it back;
  the array and its other counters are `Munition.Fuel.Meter`'s.
  """

  alias Munition.Fuel.Meter.MinMax
  require MinMax

  @max_u64 0xFFFF_FFFF_FFFF_FFFF
  @minutes 60
  # A caller that keeps finding its slot claimed gives up after this many tries.
  @attempts 20

  @typedoc """
  Where a window lies in an array and what it counts: its first index, and the
  outcomes counted per minute, the first being success.
  """
  @type t :: {base :: pos_integer(), outcome_count :: pos_integer(), outcomes :: [atom(), ...]}

  @doc """
  A window from index `base`, counting `outcomes` per minute; the first
  outcome is success, and a minute's crashes are its calls of every other.
  """
  @spec new(pos_integer(), [atom(), ...]) :: t()
  def new(base, [_success | _] = outcomes), do: {base, length(outcomes), outcomes}

  @doc "The number of counters `window` takes, from its base."
  @spec size(t()) :: pos_integer()
  def size({_base, count, _outcomes}) when is_integer(count), do: @minutes * slot_size(count)

  # A slot: stamp, a count per outcome, fuel sum, fuel max, time sum, time max.
  defp slot_size(count) when is_integer(count), do: count + 5

  @doc """
  Counts a call at `now_ms` (milliseconds since the epoch) with outcome
  `index` (its position among the window's outcomes), `fuel` and `time`.
  """
  @spec record(
          :atomics.atomics_ref(),
          t(),
          non_neg_integer(),
          non_neg_integer(),
          non_neg_integer(),
          non_neg_integer()
        ) :: :ok
  def record(ref, {base, count, _outcomes}, now_ms, index, fuel, time) do
    minute = div(now_ms, 60_000)
    size = slot_size(count)
    record(ref, base + rem(minute, @minutes) * size, size, minute + 1, index, fuel, time, 0)
  end

  defp record(_ref, _slot, _size, _stamp, _index, _fuel, _time, @attempts), do: :ok

  defp record(ref, slot, size, stamp, index, fuel, time, attempt) do
    # Read as MinMax reads (a compare-and-swap of the stamp with itself):
    # `:ok` when the slot holds this minute already.
    case :atomics.compare_exchange(ref, slot, stamp, stamp) do
      :ok ->
        fuel_sum = slot + size - 4
        :atomics.add(ref, slot + 1 + index, 1)
        :atomics.add(ref, fuel_sum, fuel)
        MinMax.put_max(ref, fuel_sum + 1, fuel)
        :atomics.add(ref, fuel_sum + 2, time)
        MinMax.put_max(ref, fuel_sum + 3, time)

      @max_u64 ->
        # Another caller is recycling the slot: let it finish.
        :erlang.yield()
        record(ref, slot, size, stamp, index, fuel, time, attempt + 1)

      old when old < stamp ->
        if :atomics.compare_exchange(ref, slot, old, @max_u64) == :ok do
          for i <- 1..(size - 1), do: :atomics.put(ref, slot + i, 0)
          :atomics.put(ref, slot, stamp)
        end

        record(ref, slot, size, stamp, index, fuel, time, attempt + 1)

      _newer ->
        # The clock went back: this minute's slot already holds a later one.
        :ok
    end

    :ok
  end

  @doc """
  The window at `now_ms`, from `at`, which answers the counter at an index of
  the array (read once, so that the whole window comes from one reading).

  Returns `%{minutes: 60, calls, crashes, outcomes, fuel: %{sum, max, mean},
  time_us: %{sum, max, mean}, per_minute}`, `per_minute` being a list of
  `%{minute: DateTime, calls, crashes, outcomes, fuel_sum, fuel_max,
  time_us_sum, time_us_max}` for the minutes of the last hour that had calls,
  oldest first. `max` and `mean` are `nil` without calls.
  """
  @spec read((pos_integer() -> non_neg_integer()), t(), non_neg_integer()) :: map()
  def read(at, {base, count, [success | _] = outcomes}, now_ms) do
    minute = div(now_ms, 60_000)
    size = slot_size(count)

    slots =
      for slot <- 0..(@minutes - 1),
          first = base + slot * size,
          stamp = at.(first),
          stamp != 0 and stamp != @max_u64,
          m = stamp - 1,
          m > minute - @minutes and m <= minute do
        by_outcome = Map.new(Enum.with_index(outcomes), fn {o, i} -> {o, at.(first + 1 + i)} end)
        calls = by_outcome |> Map.values() |> Enum.sum()
        fuel_sum = first + size - 4

        %{
          minute: DateTime.from_unix!(m * 60),
          calls: calls,
          crashes: calls - by_outcome[success],
          outcomes: by_outcome,
          fuel_sum: at.(fuel_sum),
          fuel_max: at.(fuel_sum + 1),
          time_us_sum: at.(fuel_sum + 2),
          time_us_max: at.(fuel_sum + 3)
        }
      end
      |> Enum.sort_by(&DateTime.to_unix(&1.minute))

    calls = Enum.sum(Enum.map(slots, & &1.calls))
    fuel_sum = Enum.sum(Enum.map(slots, & &1.fuel_sum))
    time_sum = Enum.sum(Enum.map(slots, & &1.time_us_sum))

    %{
      minutes: @minutes,
      calls: calls,
      crashes: Enum.sum(Enum.map(slots, & &1.crashes)),
      outcomes: Map.new(outcomes, fn o -> {o, Enum.sum(Enum.map(slots, & &1.outcomes[o]))} end),
      fuel: %{
        sum: fuel_sum,
        max: Enum.max(Enum.map(slots, & &1.fuel_max), fn -> nil end),
        mean: mean(fuel_sum, calls)
      },
      time_us: %{
        sum: time_sum,
        max: Enum.max(Enum.map(slots, & &1.time_us_max), fn -> nil end),
        mean: mean(time_sum, calls)
      },
      per_minute: slots
    }
  end

  defp mean(_sum, 0), do: nil
  defp mean(sum, count), do: sum / count
end

defmodule Munition.Fuel.Meter.Window do
  @moduledoc false
  # The last hour of a meter key, minute by minute, counted in the key's
  # counters next to its totals.
  #
  # The window is 60 slots, one per minute of the clock (the slot of a
  # minute is the minute since the epoch modulo 60). A slot holds its minute's
  # stamp (the minute plus one; `0` when never used, the largest unsigned
  # 64-bit integer while being recycled), one count per outcome, the sum and
  # maximum of fuel, and the sum and maximum of execution time.
  #
  # The first caller of a new minute recycles the slot that minute maps to: it
  # claims the slot by swapping its stamp, zeroes it, then stamps it. Callers
  # that find the slot claimed look again a bounded number of times, then
  # leave their call out of the window (the totals have it), so the window may
  # miss the few calls that record while a slot is recycled. A call whose
  # minute is older than its slot's (the clock went back) is left out too.
  # Reading ignores slots stamped more than an hour ago.
  #
  # This module owns the slot layout (`layout/1`) and reading it back.
  # Recording into it is native (`munition_core::meter`, which takes the
  # layout from here), in the one call that records everything else; the
  # counters and their other contents are `Munition.Fuel.Meter`'s.

  @max_u64 0xFFFF_FFFF_FFFF_FFFF
  @minutes 60

  @typedoc """
  Where a window lies among a key's counters and what it counts: its first
  index (0-based), and the outcomes counted per minute, the first being
  success.
  """
  @type t :: {base :: non_neg_integer(), outcome_count :: pos_integer(), outcomes :: [atom(), ...]}

  @typedoc "Where each counter of a window lies, as the native side takes it (see `layout/1`)."
  @type layout :: %{
          base: non_neg_integer(),
          minutes: pos_integer(),
          slot_size: pos_integer(),
          stamp: non_neg_integer(),
          outcomes: non_neg_integer(),
          fuel_sum: non_neg_integer(),
          fuel_max: non_neg_integer(),
          time_sum: non_neg_integer(),
          time_max: non_neg_integer()
        }

  @doc """
  A window from index `base`, counting `outcomes` per minute; the first
  outcome is success, and a minute's crashes are its calls of every other.
  """
  @spec new(non_neg_integer(), [atom(), ...]) :: t()
  def new(base, [_success | _] = outcomes), do: {base, length(outcomes), outcomes}

  @doc "The number of counters `window` takes, from its base."
  @spec size(t()) :: pos_integer()
  def size({_base, count, _outcomes}) when is_integer(count), do: @minutes * slot_size(count)

  @doc """
  Where the counters of `window` lie: its base and number of minutes, the
  counters of a slot (`slot_size`), and the offset within a slot of its
  stamp, of its first outcome count (the others follow in the window's
  order), and of its fuel and time sums and maxima. The native recorder
  takes this map; `read/3` reads by it.

  ## Examples

      iex> Munition.Fuel.Meter.Window.layout(Munition.Fuel.Meter.Window.new(10, [:ok, :trap]))
      %{base: 10, minutes: 60, slot_size: 7, stamp: 0, outcomes: 1,
        fuel_sum: 3, fuel_max: 4, time_sum: 5, time_max: 6}
  """
  @spec layout(t()) :: layout()
  def layout({base, count, _outcomes}) when is_integer(count) do
    %{
      base: base,
      minutes: @minutes,
      slot_size: slot_size(count),
      stamp: 0,
      outcomes: 1,
      fuel_sum: count + 1,
      fuel_max: count + 2,
      time_sum: count + 3,
      time_max: count + 4
    }
  end

  # A slot: stamp, a count per outcome, fuel sum, fuel max, time sum, time max.
  defp slot_size(count) when is_integer(count), do: count + 5

  @doc """
  The window at `now_ms`, from `at`, which answers the key's counter at an
  index (read once, so that the whole window comes from one reading).

  Returns `%{minutes: 60, calls, crashes, outcomes, fuel: %{sum, max, mean},
  time_us: %{sum, max, mean}, per_minute}`, `per_minute` being a list of
  `%{minute: DateTime, calls, crashes, outcomes, fuel_sum, fuel_max,
  time_us_sum, time_us_max}` for the minutes of the last hour that had calls,
  oldest first. `max` and `mean` are `nil` without calls.
  """
  @spec read((non_neg_integer() -> non_neg_integer()), t(), non_neg_integer()) :: map()
  def read(at, {_base, _count, [success | _] = outcomes} = window, now_ms) do
    minute = div(now_ms, 60_000)
    l = layout(window)

    slots =
      for slot <- 0..(@minutes - 1),
          first = l.base + slot * l.slot_size,
          stamp = at.(first + l.stamp),
          stamp != 0 and stamp != @max_u64,
          m = stamp - 1,
          m > minute - @minutes and m <= minute do
        by_outcome = Map.new(Enum.with_index(outcomes), fn {o, i} -> {o, at.(first + l.outcomes + i)} end)
        calls = by_outcome |> Map.values() |> Enum.sum()

        %{
          minute: DateTime.from_unix!(m * 60),
          calls: calls,
          crashes: calls - by_outcome[success],
          outcomes: by_outcome,
          fuel_sum: at.(first + l.fuel_sum),
          fuel_max: at.(first + l.fuel_max),
          time_us_sum: at.(first + l.time_sum),
          time_us_max: at.(first + l.time_max)
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

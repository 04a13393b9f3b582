defmodule Munition.Fuel.Meter.MinMax do
  @moduledoc """
  The smallest and largest value recorded in an `:atomics` counter, kept
  without a lock by every caller at once.

  A caller reads the counter and, only when its value is smaller (or larger),
  swaps it in with compare-and-swap, retrying while another caller moves the
  counter the wrong way first. Counters are unsigned: a minimum starts at the
  largest 64-bit value, a maximum at `0`.

  The read is itself a compare-and-swap of the value with itself: it changes
  nothing, answers the counter's value when it differs, and costs half an
  `:atomics.get/2` (15 ns against
  30 on OTP 25 here, measured by `bench/meter.exs`).

  `put_min/3` and `put_max/3` are macros (`require` this module): once a key
  has seen a few calls its minimum and maximum rarely move, and the read and
  comparison that find nothing to change then cost the caller no function
  call. `Munition.Fuel.Meter.record/5` does up to eight of them per call.
  """

  @doc """
  Lowers counter `index` of `ref` to `value` if `value` is smaller. Returns
  `:ok`.

  ## Examples

      iex> require Munition.Fuel.Meter.MinMax, as: MinMax
      iex> ref = :atomics.new(1, signed: false)
      iex> :atomics.put(ref, 1, 10)
      iex> MinMax.put_min(ref, 1, 3)
      iex> MinMax.put_min(ref, 1, 7)
      iex> :atomics.get(ref, 1)
      3
  """
  defmacro put_min(ref, index, value) do
    quote bind_quoted: [ref: ref, index: index, value: value] do
      case :atomics.compare_exchange(ref, index, value, value) do
        :ok -> :ok
        current when value < current -> Munition.Fuel.Meter.MinMax.lower_to(ref, index, current, value)
        _current -> :ok
      end
    end
  end

  @doc """
  Raises counter `index` of `ref` to `value` if `value` is larger. Returns
  `:ok`.

  ## Examples

      iex> require Munition.Fuel.Meter.MinMax, as: MinMax
      iex> ref = :atomics.new(1, signed: false)
      iex> MinMax.put_max(ref, 1, 7)
      iex> MinMax.put_max(ref, 1, 3)
      iex> :atomics.get(ref, 1)
      7
  """
  defmacro put_max(ref, index, value) do
    quote bind_quoted: [ref: ref, index: index, value: value] do
      case :atomics.compare_exchange(ref, index, value, value) do
        :ok -> :ok
        current when value > current -> Munition.Fuel.Meter.MinMax.raise_to(ref, index, current, value)
        _current -> :ok
      end
    end
  end

  @doc false
  # The slow path of put_min/3: `current` was read and is above `value`.
  @spec lower_to(:atomics.atomics_ref(), pos_integer(), non_neg_integer(), non_neg_integer()) :: :ok
  def lower_to(ref, index, current, value) do
    case :atomics.compare_exchange(ref, index, current, value) do
      :ok -> :ok
      now when value < now -> lower_to(ref, index, now, value)
      _ -> :ok
    end
  end

  @doc false
  # The slow path of put_max/3: `current` was read and is below `value`.
  @spec raise_to(:atomics.atomics_ref(), pos_integer(), non_neg_integer(), non_neg_integer()) :: :ok
  def raise_to(ref, index, current, value) do
    case :atomics.compare_exchange(ref, index, current, value) do
      :ok -> :ok
      now when value > now -> raise_to(ref, index, now, value)
      _ -> :ok
    end
  end
end

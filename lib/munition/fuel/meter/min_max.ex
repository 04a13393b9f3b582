defmodule Munition.Fuel.Meter.MinMax do
  @moduledoc """
  The smallest and largest value recorded in an `:atomics` counter, kept
  without a lock by every caller at once.

  A caller reads the counter and, only when its value is smaller (or larger),
  swaps it in with compare-and-swap, retrying while another caller moves the
  counter the wrong way first. A value that changes nothing costs one read.
  Counters are unsigned: a minimum starts at the largest 64-bit value, a
  maximum at `0`.
  """

  @doc """
  Lowers counter `index` of `ref` to `value` if `value` is smaller.

  ## Examples

      iex> ref = :atomics.new(1, signed: false)
      iex> :atomics.put(ref, 1, 10)
      iex> Munition.Fuel.Meter.MinMax.put_min(ref, 1, 3)
      iex> Munition.Fuel.Meter.MinMax.put_min(ref, 1, 7)
      iex> :atomics.get(ref, 1)
      3
  """
  @spec put_min(:atomics.atomics_ref(), pos_integer(), non_neg_integer()) :: :ok
  def put_min(ref, index, value) do
    current = :atomics.get(ref, index)
    if value < current, do: cas_min(ref, index, current, value), else: :ok
  end

  defp cas_min(ref, index, current, value) do
    case :atomics.compare_exchange(ref, index, current, value) do
      :ok -> :ok
      now when value < now -> cas_min(ref, index, now, value)
      _ -> :ok
    end
  end

  @doc """
  Raises counter `index` of `ref` to `value` if `value` is larger.

  ## Examples

      iex> ref = :atomics.new(1, signed: false)
      iex> Munition.Fuel.Meter.MinMax.put_max(ref, 1, 7)
      iex> Munition.Fuel.Meter.MinMax.put_max(ref, 1, 3)
      iex> :atomics.get(ref, 1)
      7
  """
  @spec put_max(:atomics.atomics_ref(), pos_integer(), non_neg_integer()) :: :ok
  def put_max(ref, index, value) do
    current = :atomics.get(ref, index)
    if value > current, do: cas_max(ref, index, current, value), else: :ok
  end

  defp cas_max(ref, index, current, value) do
    case :atomics.compare_exchange(ref, index, current, value) do
      :ok -> :ok
      now when value > now -> cas_max(ref, index, now, value)
      _ -> :ok
    end
  end
end

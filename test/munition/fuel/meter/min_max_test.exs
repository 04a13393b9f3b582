defmodule Munition.Fuel.Meter.MinMaxTest do
  use ExUnit.Case, async: true

  alias Munition.Fuel.Meter.MinMax
  require MinMax

  doctest MinMax

  test "concurrent callers leave the smallest and the largest value, whatever their order" do
    ref = :atomics.new(2, signed: false)
    :atomics.put(ref, 1, 0xFFFF_FFFF_FFFF_FFFF)

    1..8
    |> Enum.map(fn caller ->
      Task.async(fn ->
        for i <- 1..2_000 do
          value = rem(i * 7_919 + caller * 104_729, 1_000_003) + 10
          MinMax.put_min(ref, 1, value)
          MinMax.put_max(ref, 2, value)
        end
      end)
    end)
    |> Task.await_many()

    values = for caller <- 1..8, i <- 1..2_000, do: rem(i * 7_919 + caller * 104_729, 1_000_003) + 10
    assert :atomics.get(ref, 1) == Enum.min(values)
    assert :atomics.get(ref, 2) == Enum.max(values)
  end

  test "equal values change nothing" do
    ref = :atomics.new(1, signed: false)
    :atomics.put(ref, 1, 5)
    assert MinMax.put_min(ref, 1, 5) == :ok
    assert MinMax.put_max(ref, 1, 5) == :ok
    assert :atomics.get(ref, 1) == 5
  end
end

defmodule Munition.Fuel.Meter.WindowTest do
  use ExUnit.Case, async: true

  alias Munition.Fuel.Meter.Window

  doctest Window

  @outcomes [:ok, :trap, :other]
  @base 5
  # A minute boundary, in milliseconds since the epoch.
  @t0 29_000_000 * 60_000

  # Counters as the native side leaves them: `slots` maps a minute's time to
  # {stamp, outcome counts, fuel sum, fuel max, time sum, time max}, and every
  # other counter is zero. Recording itself is tested in meter_test.exs and in
  # munition_core's unit tests.
  defp counters(window, slots) do
    l = Window.layout(window)
    zeros = List.duplicate(0, @base + Window.size(window))

    slots
    |> Enum.reduce(List.to_tuple(zeros), fn {now_ms, {stamp, counts, fuel_sum, fuel_max, time_sum, time_max}},
                                            acc ->
      first = l.base + rem(div(now_ms, 60_000), l.minutes) * l.slot_size

      counts
      |> Enum.with_index(fn n, i -> {l.outcomes + i, n} end)
      |> Enum.concat([
        {l.stamp, stamp},
        {l.fuel_sum, fuel_sum},
        {l.fuel_max, fuel_max},
        {l.time_sum, time_sum},
        {l.time_max, time_max}
      ])
      |> Enum.reduce(acc, fn {offset, value}, acc -> put_elem(acc, first + offset, value) end)
    end)
  end

  defp stamp(now_ms), do: div(now_ms, 60_000) + 1

  setup do
    %{window: Window.new(@base, @outcomes)}
  end

  test "takes 60 slots of a stamp, a count per outcome, and fuel and time sums and maxima" do
    assert Window.size(Window.new(0, @outcomes)) == 60 * (1 + 3 + 4)
    assert Window.size(Window.new(0, [:ok])) == 60 * (1 + 1 + 4)
  end

  test "lays out every counter of a slot once, within the slot", %{window: window} do
    l = Window.layout(window)
    assert %{base: @base, minutes: 60, slot_size: 8} = l
    offsets = [l.stamp, l.fuel_sum, l.fuel_max, l.time_sum, l.time_max | Enum.map(0..2, &(l.outcomes + &1))]
    assert Enum.sort(offsets) == Enum.to_list(0..(l.slot_size - 1))
  end

  test "reads calls per minute and sums them over the hour", %{window: window} do
    counters =
      counters(window, %{
        @t0 => {stamp(@t0), [2, 0, 0], 400, 300, 40, 30},
        (@t0 + 60_000) => {stamp(@t0 + 60_000), [0, 1, 0], 50, 50, 5, 5}
      })

    assert %{
             minutes: 60,
             calls: 3,
             crashes: 1,
             outcomes: %{ok: 2, trap: 1, other: 0},
             fuel: %{sum: 450, max: 300, mean: 150.0},
             time_us: %{sum: 45, max: 30, mean: 15.0},
             per_minute: [first, second]
           } = Window.read(&elem(counters, &1), window, @t0 + 60_000)

    assert first == %{
             minute: DateTime.from_unix!(div(@t0, 1_000)),
             calls: 2,
             crashes: 0,
             outcomes: %{ok: 2, trap: 0, other: 0},
             fuel_sum: 400,
             fuel_max: 300,
             time_us_sum: 40,
             time_us_max: 30
           }

    assert %{calls: 1, crashes: 1, outcomes: %{trap: 1}, fuel_max: 50} = second
    assert DateTime.diff(second.minute, first.minute) == 60
  end

  test "leaves out minutes over an hour old, after the reading's, and slots being recycled",
       %{window: window} do
    counters =
      counters(window, %{
        @t0 => {stamp(@t0), [1, 0, 0], 100, 100, 1, 1},
        (@t0 + 60_000) => {0xFFFF_FFFF_FFFF_FFFF, [1, 0, 0], 50, 50, 1, 1},
        (@t0 + 120_000) => {stamp(@t0 + 120_000), [0, 0, 1], 7, 7, 1, 1}
      })

    at = &elem(counters, &1)

    assert %{calls: 2, per_minute: [%{fuel_sum: 100}, %{fuel_sum: 7}]} =
             Window.read(at, window, @t0 + 120_000)

    assert %{calls: 1, per_minute: [%{fuel_sum: 7}]} = Window.read(at, window, @t0 + 60 * 60_000)

    assert %{calls: 0, crashes: 0, per_minute: [], fuel: %{sum: 0, max: nil, mean: nil}} =
             Window.read(at, window, @t0 + 180 * 60_000)

    assert %{calls: 0} = Window.read(at, window, @t0 - 60_000)
  end
end

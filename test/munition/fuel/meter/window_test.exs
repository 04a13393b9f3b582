defmodule Munition.Fuel.Meter.WindowTest do
  use ExUnit.Case, async: true

  alias Munition.Fuel.Meter.Window

  @outcomes [:ok, :trap, :other]
  @base 5
  # A minute boundary, in milliseconds since the epoch.
  @t0 29_000_000 * 60_000

  # A window at @base of a fresh array, with a counter on each side of it
  # that must stay untouched.
  setup do
    window = Window.new(@base, @outcomes)
    ref = :atomics.new(@base + Window.size(window), signed: false)
    %{window: window, ref: ref, at: &:atomics.get(ref, &1)}
  end

  defp outside(ref, window) do
    :atomics.get(ref, @base - 1) + :atomics.get(ref, @base + Window.size(window))
  end

  test "takes 60 slots of a stamp, a count per outcome, and fuel and time sums and maxima" do
    assert Window.size(Window.new(1, @outcomes)) == 60 * (1 + 3 + 4)
    assert Window.size(Window.new(1, [:ok])) == 60 * (1 + 1 + 4)
  end

  test "counts calls per minute and sums them over the hour", %{ref: ref, window: window, at: at} do
    Window.record(ref, window, @t0, 0, 100, 10)
    Window.record(ref, window, @t0 + 5_000, 0, 300, 30)
    Window.record(ref, window, @t0 + 60_000, 1, 50, 5)

    assert %{
             minutes: 60,
             calls: 3,
             crashes: 1,
             outcomes: %{ok: 2, trap: 1, other: 0},
             fuel: %{sum: 450, max: 300, mean: 150.0},
             time_us: %{sum: 45, max: 30, mean: 15.0},
             per_minute: [first, second]
           } = Window.read(at, window, @t0 + 60_000)

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
    assert outside(ref, window) == 0
  end

  test "a minute an hour later takes over its slot; older minutes drop out of the reading",
       %{ref: ref, window: window, at: at} do
    Window.record(ref, window, @t0, 0, 100, 1)
    Window.record(ref, window, @t0 + 60_000, 1, 50, 1)
    Window.record(ref, window, @t0 + 60 * 60_000, 0, 7, 1)

    assert %{calls: 2, per_minute: [%{fuel_sum: 50}, %{fuel_sum: 7, calls: 1}]} =
             Window.read(at, window, @t0 + 60 * 60_000)

    # Two hours on, nothing is in the window.
    assert %{calls: 0, crashes: 0, per_minute: [], fuel: %{sum: 0, max: nil, mean: nil}} =
             Window.read(at, window, @t0 + 180 * 60_000)

    # Minutes after the reading's are not in it either.
    assert %{calls: 0} = Window.read(at, window, @t0 - 60_000)
  end

  test "a call from a minute older than its slot's is left out (the clock went back)",
       %{ref: ref, window: window, at: at} do
    Window.record(ref, window, @t0 + 60 * 60_000, 0, 7, 1)
    assert Window.record(ref, window, @t0, 0, 100, 1) == :ok
    assert %{calls: 1, fuel: %{sum: 7}} = Window.read(at, window, @t0 + 60 * 60_000)
  end

  test "a caller that keeps finding its slot claimed gives up, and the call is left out",
       %{ref: ref, window: window, at: at} do
    # The slot of @t0's minute, as another caller recycling it leaves it.
    slot = @base + rem(div(@t0, 60_000), 60) * (1 + 3 + 4)
    :atomics.put(ref, slot, 0xFFFF_FFFF_FFFF_FFFF)

    assert Window.record(ref, window, @t0, 0, 100, 1) == :ok
    assert :atomics.get(ref, slot) == 0xFFFF_FFFF_FFFF_FFFF
    assert %{calls: 0} = Window.read(at, window, @t0)
    assert Enum.sum(for i <- (slot + 1)..(slot + 7), do: :atomics.get(ref, i)) == 0
  end
end

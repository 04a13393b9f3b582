defmodule Munition.Fuel.MeterTest do
  # The meter is global: every test resets it.
  use ExUnit.Case, async: false
  import Munition.Fixtures, only: [counter_wat: 1]
  import Munition.AppEnv

  alias Munition.Fuel.Meter

  doctest Munition.Fuel.Meter

  defp compile!(wat) do
    {:ok, module} = Munition.compile(wat)
    module
  end

  # What the meter should report for a percentile: the top of the histogram
  # bucket holding the nearest-rank sample, never above the max.
  defp expected_percentile(sorted, q) do
    exact = Enum.at(sorted, max(ceil(q * length(sorted)), 1) - 1)
    {exact, min(Meter.bucket_max(Meter.bucket(exact)), List.last(sorted))}
  end

  setup do
    Meter.reset()
    :ok
  end

  describe "record/5 from fire/4" do
    test "counts calls and outcomes and agrees with each call's metadata on fuel and time" do
      module = compile!(counter_wat("known"))

      oks =
        for n <- 0..99 do
          {:ok, nil, meta} = Munition.fire(module, "f", [n])
          assert meta.fuel_consumed == 4 + 8 * n
          meta
        end

      {:crash, :fuel_exhausted, exhausted} = Munition.fire(module, "f", [1_000], fuel: 500)
      {:crash, :trap, _} = Munition.fire(module, "boom", [])

      stats = Meter.stats(module, "f")
      assert stats == Meter.stats(module.hash, "f")

      assert stats.module_hash == module.hash
      assert stats.calls == 101
      assert stats.crashes == 1

      assert stats.outcomes == %{
               ok: 100,
               fuel_exhausted: 1,
               trap: 0,
               timeout: 0,
               memory_limit: 0,
               host_error: 0,
               other: 0
             }

      ok_fuel = Enum.map(oks, & &1.fuel_consumed)
      all_fuel = Enum.sort([exhausted.fuel_consumed | ok_fuel])
      assert exhausted.fuel_consumed == 500

      assert %{count: 100, sum: sum, min: 4, max: 796} = stats.ok_fuel
      assert sum == Enum.sum(ok_fuel)
      assert stats.ok_fuel.mean == Enum.sum(ok_fuel) / 100

      assert %{count: 101, min: 4, max: 796} = stats.fuel
      assert stats.fuel.sum == Enum.sum(all_fuel)

      for {q, key} <- [{0.5, :p50}, {0.95, :p95}, {0.99, :p99}] do
        {exact, expected} = expected_percentile(Enum.sort(ok_fuel), q)
        assert stats.ok_fuel[key] == expected
        # At most one bucket (12.5%) above the exact percentile.
        assert stats.ok_fuel[key] >= exact and stats.ok_fuel[key] <= exact * 1.125

        {_exact, expected} = expected_percentile(all_fuel, q)
        assert stats.fuel[key] == expected
      end

      times = Enum.sort([exhausted.execution_time_us | Enum.map(oks, & &1.execution_time_us)])
      assert stats.time_us.count == 101
      assert stats.time_us.sum == Enum.sum(times)
      assert stats.time_us.min == hd(times)
      assert stats.time_us.max == List.last(times)

      assert Meter.stats(module, "boom").outcomes.trap == 1
    end

    test "a crash without a dump (forensics: false) is recorded with its real fuel" do
      module = compile!(~s{(module (func (export "f") (param i32) (drop (local.get 0)) unreachable))})
      assert {:crash, :trap, %{fuel_consumed: fuel}} = Munition.fire(module, "f", [1])
      Meter.reset()

      assert {:crash, :trap, nil} = Munition.fire(module, "f", [1], forensics: false)
      stats = Meter.stats(module, "f")
      assert stats.outcomes.trap == 1
      assert stats.fuel.max == fuel
      assert fuel < Munition.Fuel.Policy.default_fuel()
    end

    test "percentiles are exact when every call uses the same fuel" do
      module = compile!(counter_wat("same"))
      for _ <- 1..40, do: {:ok, nil, %{fuel_consumed: 804}} = Munition.fire(module, "f", [100])

      assert %{count: 40, sum: 32_160, min: 804, max: 804, mean: 804.0, p50: 804, p95: 804, p99: 804} =
               Meter.stats(module, "f").ok_fuel
    end
  end

  describe "record/5" do
    test "is exact with 50 concurrent callers on one new key" do
      start = :erlang.monotonic_time()

      1..50
      |> Enum.map(fn caller ->
        Task.async(fn ->
          # All callers start together, so the key is created concurrently.
          :ok = wait_until(start)

          for i <- 1..1_000 do
            outcome = if rem(i, 10) == 0, do: :trap, else: :ok
            :ok = Meter.record("shared", "f", outcome, caller, i)
          end
        end)
      end)
      |> Task.await_many(30_000)

      stats = Meter.stats("shared", "f")
      assert stats.calls == 50_000
      assert stats.outcomes.ok == 45_000
      assert stats.outcomes.trap == 5_000
      assert stats.fuel.sum == 1_000 * Enum.sum(1..50)
      assert stats.fuel.min == 1
      assert stats.fuel.max == 50
      assert stats.ok_fuel.count == 45_000
      assert stats.time_us.sum == 50 * Enum.sum(1..1_000)
      # The window may miss the calls that race the recycling of a minute's slot.
      assert stats.window.calls <= 50_000 and stats.window.calls >= 49_950
      assert Meter.size() == 1
    end

    test "is exact with 50 concurrent callers of fire/4" do
      module = compile!(counter_wat("concurrent"))

      1..50
      |> Enum.map(fn _ ->
        Task.async(fn -> for _ <- 1..20, do: {:ok, nil, _} = Munition.fire(module, "f", [10]) end)
      end)
      |> Task.await_many(60_000)

      stats = Meter.stats(module, "f")
      assert stats.calls == 1_000
      assert stats.ok_fuel.sum == 1_000 * 84
      assert stats.ok_fuel.p99 == 84
    end

    test "keeps memory flat over a million recordings into a fixed set of keys" do
      keys = for i <- 1..10, do: {"hash#{i}", "f"}
      key_tuple = List.to_tuple(keys)

      record = fn count ->
        Enum.each(1..count, fn i ->
          {hash, f} = elem(key_tuple, rem(i, 10))
          Meter.record(hash, f, :ok, i, rem(i, 1_000))
        end)
      end

      record.(10_000)
      before = Meter.memory()
      ets_before = :ets.info(Meter, :memory)

      record.(1_000_000)

      assert Meter.memory() == before
      assert :ets.info(Meter, :memory) == ets_before
      assert Enum.sum(Enum.map(keys, fn {h, f} -> Meter.stats(h, f).calls end)) == 1_010_000
    end

    test "evicts the least recently recorded keys past the cap" do
      put_env(:meter, max_keys: 20)

      for i <- 1..500, do: Meter.record("hash#{i}", "f", :ok, i, 1)

      assert Meter.size() <= 20
      assert Meter.stats("hash500", "f").calls == 1
      assert Meter.stats("hash1", "f") == nil

      capped = Meter.memory()
      for i <- 501..1_000, do: Meter.record("hash#{i}", "f", :ok, i, 1)
      assert Meter.size() <= 20
      assert Meter.memory() <= capped
    end

    test "keeps the minimum and maximum of fuel, successful calls' fuel and time" do
      Meter.record("h", "f", :trap, 5, 40)
      Meter.record("h", "f", :ok, 300, 0)
      Meter.record("h", "f", :ok, 20, 7)
      Meter.record("h", "f", :timeout, 9_000, 3)
      # Beyond 64 bits counts as the largest 64-bit value.
      Meter.record("h", "f", :fuel_exhausted, Bitwise.bsl(1, 70), 1)

      stats = Meter.stats("h", "f")
      assert {stats.fuel.min, stats.fuel.max} == {5, 0xFFFF_FFFF_FFFF_FFFF}
      assert {stats.ok_fuel.min, stats.ok_fuel.max} == {20, 300}
      assert {stats.time_us.min, stats.time_us.max} == {0, 40}
      assert stats.outcomes.fuel_exhausted == 1
    end

    test "counts unknown reasons as :other and ignores bad values" do
      assert Meter.record("h", "f", :something_new, 10, 1) == :ok
      assert Meter.stats("h", "f").outcomes.other == 1

      for bad <- [{-1, 1}, {1, -1}, {1.5, 1}, {1, nil}] do
        {fuel, time} = bad
        assert Meter.record("h", "f", :ok, fuel, time) == :ok
      end

      assert Meter.record(nil, "f", :ok, 1, 1) == :ok
      assert Meter.record("h", :f, :ok, 1, 1) == :ok
      assert Meter.record("h", "f", "ok", 1, 1) == :ok
      assert Meter.record_at("h", "f", :ok, 1, 1, -1) == :ok
      assert Meter.stats("h", "f").calls == 1
    end

    test "is a no-op when the meter is not running, and fire/4 still works" do
      :ok = Supervisor.terminate_child(Munition.Supervisor, Meter)
      on_exit(fn -> Supervisor.restart_child(Munition.Supervisor, Meter) end)

      assert :ets.whereis(Meter) == :undefined
      assert Meter.record("h", "f", :ok, 1, 1) == :ok
      assert {:ok, nil, _} = Munition.fire(counter_wat("stopped"), "f", [3])
      assert Meter.stats("h", "f") == nil
      assert Meter.top(5) == []
      assert Meter.reset() == :ok
      assert Meter.memory() == 0

      {:ok, _} = Supervisor.restart_child(Munition.Supervisor, Meter)
      assert Meter.record("h", "f", :ok, 1, 1) == :ok
      assert Meter.stats("h", "f").calls == 1
    end
  end

  describe "window" do
    test "keeps the last hour in one-minute buckets next to the totals" do
      t0 = 29_000_000 * 60_000

      Meter.record_at("h", "f", :ok, 100, 10, t0)
      Meter.record_at("h", "f", :ok, 300, 30, t0 + 5_000)
      Meter.record_at("h", "f", :trap, 50, 5, t0 + 60_000)

      window = Meter.stats_at("h", "f", t0 + 60_000).window
      assert window.calls == 3
      assert window.crashes == 1
      assert window.fuel == %{sum: 450, max: 300, mean: 150.0}

      assert [
               %{minute: m0, calls: 2, crashes: 0, fuel_sum: 400, fuel_max: 300, time_us_sum: 40},
               %{minute: m1, calls: 1, crashes: 1, fuel_sum: 50, outcomes: %{trap: 1}}
             ] = window.per_minute

      assert DateTime.to_unix(m0) == div(t0, 1_000)
      assert DateTime.diff(m1, m0) == 60

      # An hour later the first minute has left the window (and its slot is
      # reused); the totals keep everything.
      Meter.record_at("h", "f", :ok, 7, 1, t0 + 60 * 60_000)
      stats = Meter.stats_at("h", "f", t0 + 60 * 60_000)
      assert stats.calls == 4
      assert stats.fuel.sum == 457
      assert [%{calls: 1, fuel_sum: 50}, %{calls: 1, fuel_sum: 7}] = stats.window.per_minute
      assert stats.window.calls == 2

      assert Meter.stats_at("h", "f", t0 + 200 * 60_000).window.calls == 0
    end

    test "recycles each minute's slot hour after hour, and leaves out a call older than its slot" do
      t0 = 29_000_000 * 60_000

      # Two calls in each of the same three minutes of five hours.
      for hour <- 0..4, minute <- 0..2, n <- 1..2 do
        Meter.record_at("h", "f", :ok, 1_000 * hour + 10 * minute + n, 1, t0 + (hour * 60 + minute) * 60_000)
      end

      now = t0 + (4 * 60 + 2) * 60_000
      stats = Meter.stats_at("h", "f", now)
      assert stats.calls == 30
      assert stats.window.calls == 6
      assert Enum.map(stats.window.per_minute, & &1.fuel_sum) == [8_003, 8_023, 8_043]

      # The clock went back an hour: that minute's slot holds a later one,
      # so the call counts in the totals only.
      Meter.record_at("h", "f", :trap, 5, 1, t0)
      stats = Meter.stats_at("h", "f", now)
      assert {stats.calls, stats.crashes, stats.outcomes.trap} == {31, 1, 1}
      assert {stats.window.calls, stats.window.crashes} == {6, 0}
    end
  end

  describe "the native counters" do
    alias Munition.Fuel.Meter.{Histogram, Window}
    alias Munition.Native

    # A small layout of two outcomes, laid out as Meter lays out its own.
    defp layout do
      buckets = Histogram.buckets()
      window = Window.new(12 + 3 * buckets, [:ok, :trap])

      %{
        size: 12 + 3 * buckets + Window.size(window),
        last_seen: 0,
        outcomes: 1,
        outcome_count: 2,
        fuel: %{sum: 3, min: 4, max: 5},
        ok_fuel: %{sum: 6, min: 7, max: 8},
        time: %{sum: 9, min: 10, max: 11},
        histogram: Histogram.shape(),
        hist_ok: 12,
        hist_crash: 12 + buckets,
        hist_time: 12 + 2 * buckets,
        window: Window.layout(window)
      }
    end

    test "record minima and maxima, and count each outcome" do
      {:ok, counters} = Native.meter_new(layout(), 7)
      assert Native.meter_get(counters, 0) == 7
      assert Native.meter_get(counters, 4) == 0xFFFF_FFFF_FFFF_FFFF

      for {outcome, fuel, time} <- [{0, 50, 9}, {1, 3, 2}, {0, 20, 30}, {1, 900, 1}] do
        assert Native.meter_record_at(counters, outcome, fuel, time, 29_000_000 * 60_000) == :ok
      end

      values = counters |> Native.meter_read() |> List.to_tuple()
      assert tuple_size(values) == layout().size

      assert Enum.map(0..11, &elem(values, &1)) == [
               29_000_000 * 60_000,
               2,
               2,
               973,
               3,
               900,
               70,
               20,
               50,
               42,
               1,
               30
             ]

      assert elem(values, 12 + Histogram.bucket(50)) == 1
      assert elem(values, 12 + Histogram.buckets() + Histogram.bucket(900)) == 1
      assert Native.meter_bytes(counters) >= 8 * layout().size
    end

    test "refuse a layout whose counters lie out of range or overlap" do
      assert {:ok, _} = Native.meter_new(layout(), 0)

      assert {:error, {:bad_args, message}} = Native.meter_new(%{layout() | size: 100}, 0)
      assert message =~ "beyond"
      assert {:error, {:bad_args, message}} = Native.meter_new(%{layout() | hist_crash: 13}, 0)
      assert message =~ "overlap"

      assert {:error, {:bad_args, message}} =
               Native.meter_new(%{layout() | histogram: %{sub_bits: 3, max_exp: 3}}, 0)

      assert message =~ "histogram"

      for bad <- [Map.delete(layout(), :time), %{layout() | last_seen: -1}, {:not, :a, :map}] do
        assert {:error, {:bad_args, message}} = Native.meter_new(bad, 0)
        assert message =~ "meter layout must be a map"
      end

      assert_raise ArgumentError, fn -> Native.meter_new(layout(), -1) end
    end

    test "raise ArgumentError for an index or outcome out of range, and record nothing" do
      {:ok, counters} = Native.meter_new(layout(), 0)
      size = layout().size

      assert_raise ArgumentError, fn -> Native.meter_get(counters, size) end
      assert_raise ArgumentError, fn -> Native.meter_get(counters, -1) end
      assert_raise ArgumentError, fn -> Native.meter_record(counters, 2, 1, 1) end
      assert_raise ArgumentError, fn -> Native.meter_record(counters, 0, -1, 1) end
      assert_raise ArgumentError, fn -> Native.meter_record(make_ref(), 0, 1, 1) end
      assert Native.meter_get(counters, size - 1) == 0
      assert Enum.sum(Native.meter_read(counters)) == 3 * 0xFFFF_FFFF_FFFF_FFFF
    end
  end

  describe "top/2" do
    test "ranks keys by fuel, crashes and calls" do
      Meter.record("a", "f", :ok, 1_000, 1)
      Meter.record("b", "f", :trap, 10, 1)
      Meter.record("b", "f", :timeout, 10, 1)
      for _ <- 1..3, do: Meter.record("c", "g", :ok, 1, 1)

      assert Enum.map(Meter.top(3), &{&1.module_hash, &1.function}) == [{"a", "f"}, {"b", "f"}, {"c", "g"}]
      assert Enum.map(Meter.top(1, by: :crashes), & &1.module_hash) == ["b"]
      assert Enum.map(Meter.top(1, by: :calls), & &1.module_hash) == ["c"]
      assert Meter.top(0) == []
      assert_raise ArgumentError, ~r/got: :speed/, fn -> Meter.top(1, by: :speed) end
      assert_raise ArgumentError, ~r/got: -1/, fn -> Meter.top(-1) end
    end
  end

  describe "reset/0" do
    test "forgets everything" do
      Meter.record("a", "f", :ok, 1, 1)
      assert Meter.reset() == :ok
      assert Meter.stats("a", "f") == nil
      assert Meter.size() == 0
    end
  end

  describe "stats/2" do
    # A reading takes the counters one by one while callers record, so it can
    # hold a call's outcome count without its histogram count (what
    # Histogram's "ranks the counts do not reach yet" test pins down).
    test "answers while callers record" do
      parent = self()
      fuel = fn caller, i -> caller * 100 + rem(i, 50) end

      for caller <- 1..4 do
        Task.async(fn ->
          for i <- 1..20_000 do
            outcome = if rem(i, 5) == 0, do: :trap, else: :ok
            Meter.record("busy", "f", outcome, fuel.(caller, i), rem(i, 30))
          end

          send(parent, :recorded)
        end)
      end

      readings = read_until_recorded(4, [])
      assert readings != []

      for stats <- readings, summary <- [stats.fuel, stats.ok_fuel, stats.time_us], summary.count > 0 do
        assert stats.calls == Enum.sum(Map.values(stats.outcomes))
        assert summary.min <= summary.p50 and summary.p50 <= summary.p95
        assert summary.p95 <= summary.p99 and summary.p99 <= summary.max
      end

      final = Meter.stats("busy", "f")
      assert %{calls: 80_000, crashes: 16_000, fuel: %{min: 100, max: 449}} = final
      ok_fuel = Enum.sort(for caller <- 1..4, i <- 1..20_000, rem(i, 5) != 0, do: fuel.(caller, i))
      {_exact, expected} = expected_percentile(ok_fuel, 0.99)
      assert final.ok_fuel.p99 == expected
    end

    test "rejects what is not a hash or a module" do
      assert_raise ArgumentError, ~r/got: 42/, fn -> Meter.stats(42, "f") end
      assert_raise ArgumentError, ~r/got: :f/, fn -> Meter.stats("h", :f) end
    end
  end

  # Reads the "busy" key's stats until `left` recorders have said they are done.
  defp read_until_recorded(0, readings), do: Enum.reject(readings, &is_nil/1)

  defp read_until_recorded(left, readings) do
    readings = [Meter.stats("busy", "f") | readings]

    receive do
      :recorded -> read_until_recorded(left - 1, readings)
    after
      0 -> read_until_recorded(left, readings)
    end
  end

  defp wait_until(start) do
    if :erlang.monotonic_time() - start < :erlang.convert_time_unit(50, :millisecond, :native) do
      wait_until(start)
    else
      :ok
    end
  end
end

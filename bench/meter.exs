# The meter's cost per recorded fire, next to the cost of a fire.
#
#     MIX_ENV=test mix run bench/meter.exs
#
# Each figure times single calls with :erlang.monotonic_time/1 (nanoseconds);
# "clock" is the cost of the timing itself, included in every figure.
# record/5 is one ETS lookup (the key's counters) and one NIF call (every
# update of the call); both are also timed alone.

alias Munition.Fuel.{Meter, Policy}

Code.require_file("support/timing.exs", __DIR__)

defmodule Bench do
  alias Munition.Bench.Timing

  def sample(count, fun), do: Timing.sample(count, fun)

  def report(label, sorted) do
    n = length(sorted)
    at = &Timing.percentile(sorted, &1)
    mean = Enum.sum(sorted) / n

    IO.puts(
      String.pad_trailing(label, 50) <>
        "median #{fmt(at.(0.5))}  p99 #{fmt(at.(0.99))}  mean #{fmt(round(mean))}  (n=#{n})"
    )

    at.(0.5)
  end

  def fmt(ns) when ns >= 10_000, do: String.pad_leading("#{Float.round(ns / 1000, 1)} us", 9)
  def fmt(ns), do: String.pad_leading("#{ns} ns", 9)
end

Meter.reset()
hash = String.duplicate("ab", 32)

IO.puts(
  "Munition.Fuel.Meter benchmark (#{System.schedulers_online()} schedulers, OTP #{System.otp_release()})\n"
)

clock = Bench.report("clock (timing overhead)", Bench.sample(200_000, fn -> :ok end))

# Warm: the key exists, as it does for every fire after a module's first.
for i <- 1..100_000, do: Meter.record(hash, "run", :ok, i, 10)

record_ok =
  Bench.report(
    "record/5, :ok, existing key",
    Bench.sample(200_000, fn -> Meter.record(hash, "run", :ok, 12_345, 17) end)
  )

Bench.report(
  "record/5, :trap, existing key",
  Bench.sample(200_000, fn -> Meter.record(hash, "run", :trap, 999, 3) end)
)

# Its two parts: the lookup of the key's counters, and the NIF call that
# records into them (outcome 0 is :ok).
key = {hash, "run"}
table = :ets.whereis(Meter)
Bench.report("  its ETS lookup alone", Bench.sample(200_000, fn -> :ets.lookup_element(table, key, 2) end))
counters = :ets.lookup_element(table, key, 2)

Bench.report(
  "  its NIF call alone (Native.meter_record/4)",
  Bench.sample(200_000, fn -> Munition.Native.meter_record(counters, 0, 12_345, 17) end)
)

keys = for i <- 1..500, do: {"hash#{i}", "run"}
Enum.each(keys, fn {h, f} -> Meter.record(h, f, :ok, 1, 1) end)
tuple = List.to_tuple(keys)

Bench.report(
  "record/5, 500 keys round-robin",
  Bench.sample(200_000, fn ->
    {h, f} = elem(tuple, :rand.uniform(500) - 1)
    Meter.record(h, f, :ok, 4_321, 9)
  end)
)

# Throughput with every scheduler recording into one key (worst contention)
# and into a key each.
for {label, key_of} <- [{"one shared key", fn _ -> hash end}, {"a key per process", &"proc#{&1}"}] do
  procs = System.schedulers_online()
  per_proc = 200_000
  t0 = :erlang.monotonic_time(:nanosecond)

  1..procs
  |> Enum.map(fn p ->
    Task.async(fn ->
      h = key_of.(p)
      for i <- 1..per_proc, do: Meter.record(h, "run", :ok, i, 1)
    end)
  end)
  |> Task.await_many(:infinity)

  elapsed = :erlang.monotonic_time(:nanosecond) - t0
  total = procs * per_proc

  IO.puts(
    String.pad_trailing("concurrent record/5, #{procs} procs, #{label}", 50) <>
      "#{round(total / (elapsed / 1.0e9))} records/s (#{Float.round(elapsed / total, 1)} ns wall per record)"
  )
end

{:ok, module} = Munition.compile(~s{(module (func (export "add") (param i32 i32) (result i32)
  local.get 0 local.get 1 i32.add))})

for _ <- 1..2_000, do: Munition.fire(module, "add", [1, 2])

fire =
  Bench.report(
    "fire/4 of a tiny module (meter included)",
    Bench.sample(20_000, fn -> Munition.fire(module, "add", [1, 2]) end)
  )

Bench.report(
  "Policy.resolve!(:adaptive, ...)",
  Bench.sample(100_000, fn -> Policy.resolve!(:adaptive, module, "add") end)
)

Bench.report(
  "Policy.resolve!(:auto, ...)",
  Bench.sample(100_000, fn -> Policy.resolve!(:auto, module, "add") end)
)

Bench.report("Meter.stats/2 (full read)", Bench.sample(2_000, fn -> Meter.stats(hash, "run") end))

IO.puts(
  "\nrecord/5 median (minus clock) is #{Float.round(100 * (record_ok - clock) / fire, 2)}% of a tiny fire/4's median"
)

IO.puts("meter memory: #{Meter.size()} keys, #{div(Meter.memory(), 1024)} KiB")
Meter.reset()

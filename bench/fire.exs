# Benchmark of one isolated call (not a test): Munition's ways of running the
# same tiny module next to raw Wasmtime doing the same work, in one table.
#
#     MIX_ENV=test mix run bench/fire.exs     (or `make bench`, which runs it first)
#
# The module is `add(i32, i32) -> i32`. Rows:
#
#   * fire/4 compiling each time: fresh bytes every call (a compile per call,
#     Munition's original design);
#   * fire/4 cached bytes: the same WAT bytes every call (hashed, then found in
#     the compiled-module cache);
#   * fire/4 %Munition.Module{}: a compiled module (no hashing);
#   * fire_pooled/4: a Munition.Pool (compiled, linked, options checked once);
#   * fire/4 of the binary ABI: `upcase` of test/fixtures/upcase.wat, a
#     5-byte binary in and a binary result out;
#   * raw Wasmtime: native/munition_bench, built and run from here: a fresh
#     store + instance + one call + drop, with Munition's engine configuration,
#     async on a fiber as Munition runs guests (InstancePre: linked once;
#     Instance::new: imports checked each time), then the same sync, without
#     fibers (the floor; Munition cannot run guests that way);
#   * throughput: isolated calls per second with 1, 2, 8 and 64 callers at
#     once (and raw Wasmtime with 1 and 2 threads), with the latency of those
#     calls;
#   * fire/4 ending in a trap with a full dump (the crash path: capture,
#     dump, meter).
#
# Columns: median and p99 latency of one call, and the median over the median
# of raw Wasmtime (InstancePre), async: the baseline Munition is comparable to.

Code.require_file("support/timing.exs", __DIR__)
Code.require_file("support/raw_wasmtime.exs", __DIR__)

defmodule Bench.Table do
  alias Munition.Bench.Timing

  @label 44

  def header(baseline) do
    IO.puts(
      String.pad_trailing("", @label) <>
        Enum.map_join(["n", "median", "p99", "x raw", "calls/s"], &String.pad_leading(&1, 11))
    )

    Process.put(:baseline_ns, baseline)
  end

  # A row from a sorted sample of nanoseconds, or from figures given directly.
  def row(label, sorted, rate \\ nil)

  def row(label, sorted, rate) when is_list(sorted),
    do: row(label, {length(sorted), Timing.percentile(sorted, 0.5), Timing.percentile(sorted, 0.99)}, rate)

  def row(label, {n, median, p99}, rate) do
    IO.puts(
      String.pad_trailing(label, @label) <>
        Enum.map_join(
          [Integer.to_string(n), time(median), time(p99), ratio(median), rate(rate)],
          &String.pad_leading(&1, 11)
        )
    )
  end

  def section(title), do: IO.puts(title)

  defp time(ns) when ns >= 1_000_000, do: "#{:erlang.float_to_binary(ns / 1_000_000, decimals: 2)} ms"
  defp time(ns), do: "#{:erlang.float_to_binary(ns / 1000, decimals: 1)} µs"

  defp ratio(ns) do
    r = ns / Process.get(:baseline_ns)
    if r >= 100, do: "#{round(r)}x", else: "#{:erlang.float_to_binary(r, decimals: 1)}x"
  end

  defp rate(nil), do: ""
  defp rate(per_s), do: Integer.to_string(round(per_s))
end

alias Munition.Bench.{RawWasmtime, Timing}
alias Bench.Table

raw = RawWasmtime.run()
raw_row = fn name -> {raw[name]["n"], raw[name]["median_ns"], raw[name]["p99_ns"]} end

add = ~s{(module (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))}
{:ok, module} = Munition.compile(add)
{:ok, 5, _} = Munition.fire(add, "add", [2, 3])
{:ok, _} = Munition.Pool.start_link(name: :bench_adder, wasm: add)

n = 20_000
sample = fn fun -> Timing.sample(n, fun, min(n, 2_000)) end

fresh = fn ->
  src =
    ~s{(module (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add } <>
      ~s{i32.const #{System.unique_integer([:positive])} drop))}

  {:ok, 5, _} = Munition.fire(src, "add", [2, 3])
end

cached = fn -> {:ok, 5, _} = Munition.fire(add, "add", [2, 3]) end
of_module = fn -> {:ok, 5, _} = Munition.fire(module, "add", [2, 3]) end
pooled = fn -> {:ok, 5, _} = Munition.fire_pooled(:bench_adder, "add", [2, 3]) end

# The binary ABI: a 5-byte binary in, a binary result out (one trip to the
# engine on Wasmtime, as `add`'s call is).
{:ok, upcase} = Munition.compile(File.read!(Path.expand("../test/fixtures/upcase.wat", __DIR__)))
binary = fn -> {:ok, "HELLO", _} = Munition.fire(upcase, "upcase", ["hello"], result: :binary) end

trap = fn ->
  {:crash, :trap, %{}} =
    Munition.fire(~s{(module (memory (export "memory") 1) (func (export "f") unreachable))}, "f", [])
end

IO.puts(
  "\nMunition #{Mix.Project.config()[:version]}, Wasmtime #{Munition.Runtime.Wasmtime.info().version}, " <>
    "#{System.schedulers_online()} schedulers, OTP #{System.otp_release()}, Elixir #{System.version()}\n"
)

Table.header(raw["raw_instancepre_async"]["median_ns"])
Table.section("one call at a time")
Table.row("fire/4 compiling each time", Timing.sample(300, fresh, 30))
Table.row("fire/4 cached bytes", sample.(cached))
Table.row("fire/4 %Munition.Module{}", sample.(of_module))
Table.row("fire_pooled/4", sample.(pooled))
Table.row("fire/4 %Munition.Module{}, binary in and out", sample.(binary))
Table.row("raw Wasmtime (InstancePre)", raw_row.("raw_instancepre_async"))
Table.row("raw Wasmtime (Instance::new)", raw_row.("raw_instance_new_async"))
Table.row("raw Wasmtime sync, no fiber (InstancePre)", raw_row.("raw_instancepre_sync"))
Table.row("raw Wasmtime sync, no fiber (Instance::new)", raw_row.("raw_instance_new_sync"))

Table.section("throughput: concurrent callers, 1 s each")

for {label, fun} <- [{"fire/4 %Munition.Module{}", of_module}, {"fire_pooled/4", pooled}],
    callers <- [1, 2, 8, 64] do
  {times, rate} = Timing.concurrent(callers, 1_000, fun)
  Table.row("#{label}, #{callers} caller#{if callers > 1, do: "s"}", times, rate)
end

for threads <- [1, 2] do
  figures = raw[{"raw_instancepre_async_throughput", threads}]

  Table.row(
    "raw Wasmtime (InstancePre), #{threads} thread#{if threads > 1, do: "s"}",
    {figures["n"], figures["median_ns"], figures["p99_ns"]},
    figures["calls_per_s"]
  )
end

Table.section("crash path")
Table.row("fire/4 ending in a trap with a full dump", Timing.sample(5_000, trap, 200))

IO.puts("""

x raw: median over the median of raw Wasmtime (InstancePre), async on a fiber
as Munition runs guests. The sync rows are the floor without fibers, which
Munition does not use (it slices guests and never runs them on a scheduler's
own stack). Throughput rows: every call of every caller for 1 s (raw: 0.5 s);
calls/s counts calls that completed over the wall time.
""")

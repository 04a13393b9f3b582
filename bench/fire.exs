# Benchmark of Munition.fire/4 (not a test): median and p99 latency.
#
#     MIX_ENV=test mix run bench/fire.exs
#
# Cases: the same small module fired repeatedly (compiled-module cache hit),
# the same module passed as a %Munition.Module{} (no hashing), and fresh bytes
# every time (a compile per call).

Code.require_file("support/timing.exs", __DIR__)
alias Munition.Bench.Timing

defmodule Bench do
  def run(label, n, fun) do
    times = Timing.sample(n, fun, min(n, 200))
    median = Timing.percentile(times, 0.5) / 1000
    p99 = Timing.percentile(times, 0.99) / 1000
    IO.puts(String.pad_trailing(label, 46) <> "n=#{n}  median #{fmt(median)} µs  p99 #{fmt(p99)} µs")
  end

  defp fmt(us), do: :erlang.float_to_binary(us, decimals: 1)
end

add = ~s{(module (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))}
wasm = add
{:ok, module} = Munition.compile(wasm)
{:ok, 5, _} = Munition.fire(wasm, "add", [2, 3])

IO.puts(
  "Munition #{Mix.Project.config()[:version]}, #{System.schedulers_online()} schedulers, " <>
    "OTP #{System.otp_release()}, Elixir #{System.version()}"
)

Bench.run("fire/4, same WAT bytes (cache hit)", 20_000, fn ->
  {:ok, 5, _} = Munition.fire(wasm, "add", [2, 3])
end)

Bench.run("fire/4, %Munition.Module{}", 20_000, fn -> {:ok, 5, _} = Munition.fire(module, "add", [2, 3]) end)

{:ok, _} = Munition.Pool.start_link(name: :bench_adder, wasm: add)
Bench.run("fire_pooled/4", 20_000, fn -> {:ok, 5, _} = Munition.fire_pooled(:bench_adder, "add", [2, 3]) end)

Bench.run("fire/4, fresh bytes each call (compile)", 300, fn ->
  n = System.unique_integer([:positive])

  src =
    ~s{(module (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add i32.const #{n} drop))}

  {:ok, 5, _} = Munition.fire(src, "add", [2, 3])
end)

Bench.run("fire/4 with forensics, unreachable trap", 5_000, fn ->
  {:crash, :trap, _} =
    Munition.fire(~s{(module (memory (export "memory") 1) (func (export "f") unreachable))}, "f", [])
end)

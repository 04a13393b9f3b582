# Benchmark (not a test): the cost of one Elixir host-function round trip,
# guest -> Elixir -> guest, median and p99.
#
#     MIX_ENV=test mix run bench/host.exs
#
# The guest calls `env.tick` in a tight loop; the host function stamps the
# time of each call, and the gap between consecutive stamps is one full round
# trip (the guest's own loop between calls costs a few nanoseconds).

wat = """
(module
  (import "env" "tick" (func $tick (param i32) (result i32)))
  (func (export "run") (param $n i32) (local $i i32)
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (drop (call $tick (local.get $i)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))))
"""

bench = self()

tick =
  {"env", "tick", {[:i32], [:i32]}, :bench,
   fn _ctx, i -> send(bench, {:tick, System.monotonic_time(:nanosecond)}) && i end}

calls = 20_000
{:ok, module} = Munition.compile(wat)

# Warm up.
{:ok, nil, _} =
  Munition.fire(module, "run", [1_000], host_functions: [tick], capabilities: [:bench], timeout: 60_000)

for _ <- 1..1_000, do: receive(do: ({:tick, _} -> :ok))

{:ok, nil, _} =
  Munition.fire(module, "run", [calls], host_functions: [tick], capabilities: [:bench], timeout: 60_000)

stamps = for _ <- 1..calls, do: receive(do: ({:tick, t} -> t))

gaps =
  stamps
  |> Enum.chunk_every(2, 1, :discard)
  |> Enum.map(fn [a, b] -> b - a end)
  |> Enum.sort()

at = fn q -> Enum.at(gaps, min(length(gaps) - 1, round(q * length(gaps)))) / 1000 end

IO.puts(
  "Munition #{Mix.Project.config()[:version]}, #{System.schedulers_online()} schedulers, OTP #{System.otp_release()}"
)

IO.puts(
  "Elixir host function round trip over #{calls} calls: median #{Float.round(at.(0.5), 1)} µs, p99 #{Float.round(at.(0.99), 1)} µs"
)

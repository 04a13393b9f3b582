# Benchmark (not a test): what recording costs a call, and what a replay
# costs against the call it replays (`Munition.replay/3`).
#
#     MIX_ENV=test mix run bench/replay.exs     (or `make bench`)
#
# Rows, medians of turns interleaved so both sides share the machine's state:
#
#   * a call with no host call (`add`, fire/4 on a compiled module), and a
#     call making 10,000 host calls of a built-in (`munition.get_random`)
#     and of a WASI function (`clock_time_get`, which writes 8 bytes into
#     guest memory), recorded (the default) and not recorded
#     (`:replay_log_limit` 0: the first host call passes the bound, and no
#     later one is recorded); the difference, per host call, is what
#     recording costs;
#   * the log's size per host call;
#   * fire/4 of a call that crashes after its host calls, and its replay
#     from the dump.
#
# Recording cannot be switched off for a call with no host calls: there is
# nothing to record. Its cost there is the `journal` element of the tuple
# the NIF decodes; measure it before/after with bench/fire.exs.

Code.require_file("support/timing.exs", __DIR__)

alias Munition.Bench.Timing

defmodule Bench.Replay do
  def median(sorted), do: Timing.percentile(sorted, 0.5)
  def us(ns), do: :erlang.float_to_binary(ns / 1000, decimals: 1) <> " µs"

  # `fun` timed in `turns` turns of `n`, each turn recorded and not
  # recorded one after the other; the medians of both sides.
  def interleaved(turns, n, fun) do
    {on, off} =
      Enum.reduce(1..turns, {[], []}, fn _, {on, off} ->
        Application.delete_env(:munition, :replay_log_limit)
        on = on ++ Timing.sample(n, fun, 5)
        Application.put_env(:munition, :replay_log_limit, 0)
        off = off ++ Timing.sample(n, fun, 5)
        {on, off}
      end)

    Application.delete_env(:munition, :replay_log_limit)
    {median(Enum.sort(on)), median(Enum.sort(off))}
  end

  def row(label, {on, off}, calls) do
    per_call =
      if calls > 0, do: "#{:erlang.float_to_binary((on - off) / calls, decimals: 1)} ns a host call", else: ""

    IO.puts(
      String.pad_trailing(label, 36) <>
        String.pad_leading(us(on), 12) <> String.pad_leading(us(off), 12) <> "   " <> per_call
    )
  end
end

host_calls = 10_000

add = ~s{(module (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))}

builtin = """
(module
  (import "munition" "get_random" (func $r (result i64)))
  (func (export "run") (param $n i32) (local $i i32)
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (drop (call $r))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next))))
  (func (export "crash") (param $n i32) (call 1 (local.get $n)) unreachable))
"""

wasi = """
(module
  (import "wasi_snapshot_preview1" "clock_time_get" (func $c (param i32 i64 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "run") (param $n i32) (local $i i32)
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (drop (call $c (i32.const 0) (i64.const 0) (i32.const 16)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next))))
  (func (export "crash") (param $n i32) (call 1 (local.get $n)) unreachable))
"""

{:ok, add} = Munition.compile(add)
{:ok, builtin} = Munition.compile(builtin)
{:ok, wasi} = Munition.compile(wasi)
builtin_opts = [capabilities: [:random]]
wasi_opts = [capabilities: [:wasi_clock], wasi: []]

IO.puts("load average: #{File.read!("/proc/loadavg") |> String.trim()}\n")

IO.puts(
  String.pad_trailing("median of a call", 36) <>
    String.pad_leading("recorded", 12) <> String.pad_leading("not", 12)
)

Bench.Replay.row(
  "fire/4 add, no host call",
  Bench.Replay.interleaved(10, 2_000, fn -> {:ok, 5, _} = Munition.fire(add, "add", [2, 3]) end),
  0
)

Bench.Replay.row(
  "fire/4, #{host_calls} get_random",
  Bench.Replay.interleaved(10, 20, fn ->
    {:ok, nil, _} = Munition.fire(builtin, "run", [host_calls], builtin_opts)
  end),
  host_calls
)

Bench.Replay.row(
  "fire/4, #{host_calls} clock_time_get",
  Bench.Replay.interleaved(10, 20, fn ->
    {:ok, nil, _} = Munition.fire(wasi, "run", [host_calls], wasi_opts)
  end),
  host_calls
)

IO.puts("")

for {label, module, opts} <- [{"get_random", builtin, builtin_opts}, {"clock_time_get", wasi, wasi_opts}] do
  {:crash, :trap, dump} = Munition.fire(module, "crash", [host_calls], opts)

  fire =
    Timing.sample(20, fn -> {:crash, :trap, _} = Munition.fire(module, "crash", [host_calls], opts) end, 3)

  replay = Timing.sample(20, fn -> {:crash, :trap, _} = Munition.replay(dump, module) end, 3)

  IO.puts(
    "#{label}: a log of #{byte_size(dump.replay.log)} bytes for #{host_calls} host calls " <>
      "(#{div(byte_size(dump.replay.log), host_calls)} a call); " <>
      "the crash #{Bench.Replay.us(Bench.Replay.median(fire))}, its replay #{Bench.Replay.us(Bench.Replay.median(replay))}"
  )
end

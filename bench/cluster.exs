# Benchmark (not a test): calls on other BEAM nodes of this machine
# (Munition.Cluster), against the same call made locally.
#
#     MIX_ENV=test mix run bench/cluster.exs
#
# Starts this VM as a distributed node and two peer nodes on loopback (OTP's
# :peer, through the test suite's Munition.Peers), then reports:
#   * latency of one call (median, p99): local, on 1 peer, pooled on a peer,
#     with one host function on the caller's node;
#   * calls per second with 1 and 16 callers: local, on 1 peer, and over 2
#     peers (fire/4 with node: naming one of the two by turns, not node: :any
#     placement, which needs pools);
#   * bytes on the wire for a first call (the module ships) and a repeat
#     (its hash only): the distribution socket's send_oct/recv_oct
#     (:inet.getstat/2 on the connection's port), so Erlang's own framing is
#     included; and the request term's external size (:erlang.term_to_binary).
# Every node runs on the same two cores: the peers' figures include the
# caller's share of the machine. Quote them with the load average it prints.

Code.require_file("support/timing.exs", __DIR__)
alias Munition.Bench.Timing
alias Munition.Peers

load = fn ->
  "load average " <> (File.read!("/proc/loadavg") |> String.split() |> Enum.take(3) |> Enum.join(" "))
end

IO.puts(
  "Munition.Cluster benchmark (#{System.schedulers_online()} schedulers, OTP #{System.otp_release()}), #{load.()}\n"
)

{peer_a, a} = Peers.start!("bench_a")
{peer_b, b} = Peers.start!("bench_b")

add = ~s{(module (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))}

host_wat =
  ~s{(module (import "env" "h" (func $h (param i32) (result i32))) (func (export "run") (result i32) (call $h (i32.const 41))))}

host = {"env", "h", {[:i32], [:i32]}, :h, fn _ctx, x -> x + 1 end}

for node <- [a, b] do
  {:ok, _} =
    :erpc.call(node, Supervisor, :start_child, [
      Munition.Supervisor,
      {Munition.Pool, name: :bench_pool, wasm: add, size: 64}
    ])
end

{:ok, _} = Munition.Pool.start_link(name: :bench_pool, wasm: add, size: 64)

fmt = fn ns -> if ns >= 10_000, do: "#{Float.round(ns / 1000, 1)} µs", else: "#{ns} ns" end

report = fn label, sorted ->
  IO.puts(
    String.pad_trailing(label, 52) <>
      "median #{String.pad_leading(fmt.(Timing.percentile(sorted, 0.5)), 9)}   p99 #{String.pad_leading(fmt.(Timing.percentile(sorted, 0.99)), 9)}"
  )
end

n = 3_000
IO.puts("One call at a time (#{n} calls each):")

report.(
  "fire/4 here (bytes, cache hit)",
  Timing.sample(n, fn -> {:ok, 3, _} = Munition.fire(add, "add", [1, 2]) end, 500)
)

# The floor: the same machine's distribution round trip, nothing of Munition's.
report.(
  "a bare :erpc.call/4 round trip to the peer",
  Timing.sample(n, fn -> ^a = :erpc.call(a, :erlang, :node, []) end, 500)
)

report.(
  "fire/4 node: peer (hash hit)",
  Timing.sample(n, fn -> {:ok, 3, _} = Munition.fire(add, "add", [1, 2], node: a) end, 500)
)

report.(
  "fire_pooled/4 node: peer",
  Timing.sample(n, fn -> {:ok, 3, _} = Munition.fire_pooled(:bench_pool, "add", [1, 2], node: a) end, 500)
)

report.(
  "fire/4 here, one host function",
  Timing.sample(
    n,
    fn -> {:ok, 42, _} = Munition.fire(host_wat, "run", [], host_functions: [host], capabilities: [:h]) end,
    500
  )
)

report.(
  "fire/4 node: peer, one host function on the caller",
  Timing.sample(
    n,
    fn ->
      {:ok, 42, _} = Munition.fire(host_wat, "run", [], node: a, host_functions: [host], capabilities: [:h])
    end,
    500
  )
)

IO.puts("\nCalls per second (1 s per row):")

for callers <- [1, 16] do
  rate = fn fun -> Timing.concurrent(callers, 1_000, fun) |> elem(1) |> round() end
  local = rate.(fn -> {:ok, 3, _} = Munition.fire(add, "add", [1, 2]) end)
  one = rate.(fn -> {:ok, 3, _} = Munition.fire(add, "add", [1, 2], node: a) end)

  two =
    rate.(fn ->
      node = if rem(:erlang.unique_integer([:positive]), 2) == 0, do: a, else: b
      {:ok, 3, _} = Munition.fire(add, "add", [1, 2], node: node)
    end)

  IO.puts(
    "  #{String.pad_leading("#{callers}", 2)} caller(s): here #{local}/s, on 1 peer #{one}/s, over 2 peers #{two}/s"
  )

  # With 16 callers every core is busy, and the nodes share them: the cores
  # over the rate is what a call costs all nodes together (an upper bound on
  # a machine shared with other work).
  if callers == 16 do
    cpu = fn rate -> Float.round(:erlang.system_info(:logical_processors_available) * 1.0e6 / rate, 1) end
    IO.puts("     CPU per call, all nodes together: here #{cpu.(local)} µs, over 2 peers #{cpu.(two)} µs")
  end
end

# Bytes on the wire: the connection to peer b, which has not seen these modules.
[{^b, port}] = Enum.filter(:erlang.system_info(:dist_ctrl), &(elem(&1, 0) == b))

wire = fn fun ->
  {:ok, [send_oct: s0, recv_oct: r0]} = :inet.getstat(port, [:send_oct, :recv_oct])
  fun.()
  {:ok, [send_oct: s1, recv_oct: r1]} = :inet.getstat(port, [:send_oct, :recv_oct])
  {s1 - s0, r1 - r0}
end

# A module of some size: 300 small functions, as WAT text (about 30 KB).
big =
  "(module " <>
    Enum.map_join(1..300, " ", fn i ->
      ~s{(func (export "f#{i}") (param i32) (result i32) local.get 0 i32.const #{i} i32.add)}
    end) <>
    ")"

IO.puts("\nBytes on the wire per call (distribution socket to the peer, sent / received):")

# Fresh modules (a comment that changes the hash), so the first call ships them.
fresh = fn wat -> wat <> " ;; #{System.unique_integer([:positive])}" end

for {label, wasm, fun, args} <- [
      {"add (#{byte_size(fresh.(add))} B of WAT)", fresh.(add), "add", [1, 2]},
      {"300 functions (#{byte_size(fresh.(big))} B of WAT)", fresh.(big), "f7", [1]}
    ] do
  call = fn -> {:ok, _, _} = Munition.fire(wasm, fun, args, node: b) end
  {s_first, r_first} = wire.(call)
  {s_repeat, r_repeat} = wire.(call)

  request = %{
    kind: :fire,
    module: {:hash, :crypto.hash(:sha256, wasm) |> Base.encode16(case: :lower)},
    function: fun,
    args: args,
    opts: [timeout: 5_000],
    host: []
  }

  IO.puts(
    "  #{String.pad_trailing(label, 40)} first call #{s_first} / #{r_first} B, repeat #{s_repeat} / #{r_repeat} B " <>
      "(request term #{byte_size(:erlang.term_to_binary(request))} B)"
  )
end

IO.puts("\n#{load.()}")
Peers.stop(peer_a)
Peers.stop(peer_b)

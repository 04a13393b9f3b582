counter = :counters.new(1, [])
wat = ~s{(module (import "env" "next" (func $n (param i32) (result i32)))
  (memory (export "memory") 1)
  (global $g (export "g") (mut i32) (i32.const 0))
  (func (export "f") (global.set $g (call $n (i32.const 5))) (global.set $g (i32.add (global.get $g) (call $n (i32.const 7)))) (drop (i32.load (i32.const 0))) unreachable))}
hf = {"env", "next", {[:i32], [:i32]}, :counting, fn ctx, x ->
  :counters.add(counter, 1, 1)
  Munition.Host.Context.write(ctx, 0, :crypto.strong_rand_bytes(8))
  x + :rand.uniform(1000) end}
for rt <- [Munition.Runtime.Wasmtime, Munition.Runtime.Wasmi] do
  {:crash, :trap, dump} = Munition.fire(wat, "f", [], capabilities: [:counting], host_functions: [hf], runtime: rt)
  before = :counters.get(counter, 1)
  r = Munition.replay(dump, wat)
  case r do
    {:crash, :trap, d} -> IO.inspect({rt, d.globals == dump.globals, Munition.Forensics.Dump.memories_bytes(d) == Munition.Forensics.Dump.memories_bytes(dump), d.fuel_consumed, dump.fuel_consumed, :counters.get(counter, 1) == before})
    other -> IO.inspect({rt, other})
  end
end
# timeout
loop = ~s{(module (func (export "f") (loop $l (br $l))))}
{:crash, :timeout, dump} = Munition.fire(loop, "f", [], fuel: 100_000_000_000, timeout: 50)
IO.inspect({dump.fuel_consumed, dump.replay.log})
case Munition.replay(dump, loop) do
  {:crash, r, d} -> IO.inspect({:timeout_replay, r, d.fuel_consumed})
  o -> IO.inspect(o)
end
case Munition.replay(dump, loop, until: 1000) do
  {:stopped, d} -> IO.inspect({:until, d.fuel_consumed, d.reason})
  o -> IO.inspect(o)
end
# WASI
c = ~s{(module (import "wasi_snapshot_preview1" "clock_time_get" (func $c (param i32 i64 i32) (result i32)))
 (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
 (memory (export "memory") 1)
 (data (i32.const 100) "hello\\n")
 (func (export "f") (drop (call $c (i32.const 0) (i64.const 0) (i32.const 16)))
   (i32.store (i32.const 0) (i32.const 100)) (i32.store (i32.const 4) (i32.const 6))
   (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
   unreachable))}
for rt <- [Munition.Runtime.Wasmtime, Munition.Runtime.Wasmi] do
{:crash, :trap, dump} = Munition.fire(c, "f", [], capabilities: [:wasi_clock, :wasi_stdio], wasi: [], runtime: rt)
case Munition.replay(dump, c) do
  {:crash, :trap, d} -> IO.inspect({rt, d.stdout, Munition.Forensics.Dump.memories_bytes(d) == Munition.Forensics.Dump.memories_bytes(dump)})
  o -> IO.inspect(o)
end
end

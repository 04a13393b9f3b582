wat = ~s{(module (import "munition" "get_random" (func $r (result i64)))
  (global $g (export "g") (mut i64) (i64.const 0))
  (func (export "f") (global.set $g (call $r)) unreachable))}
{:crash, :trap, dump} = Munition.fire(wat, "f", [], capabilities: [:random])
IO.inspect(dump.replay, label: "replay")
IO.inspect(dump.globals, label: "globals")
r = Munition.replay(dump, wat)
case r do
  {:crash, reason, d} -> IO.inspect({reason, d.globals, d.fuel_consumed == dump.fuel_consumed})
  other -> IO.inspect(other)
end
{:ok, d2} = Munition.Forensics.Dump.deserialize(Munition.Forensics.Dump.serialize(dump))
IO.inspect(Munition.replay(d2, wat) |> elem(0))
IO.inspect(Munition.replay(dump, ~s{(module (func (export "f") unreachable))}))
# elixir host fn counting
counter = :counters.new(1, [])
hf = Munition.Host.Function.new("env", "next", [:i32], [:i32], fn _ctx, [x] -> :counters.add(counter, 1, 1); x + :rand.uniform(100) end)

Code.require_file("bench/support/timing.exs")
alias Munition.Bench.Timing
w = """
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
{:ok, m} = Munition.compile(w)
for limit <- [0, nil, 0, nil] do
  if limit, do: Application.put_env(:munition, :replay_log_limit, limit), else: Application.delete_env(:munition, :replay_log_limit)
  run = Timing.sample(20, fn -> Munition.fire(m, "run", [10000], capabilities: [:random]) end, 3)
  crash = Timing.sample(20, fn -> Munition.fire(m, "crash", [10000], capabilities: [:random]) end, 3)
  IO.inspect({limit, Timing.percentile(run, 0.5) / 1000, Timing.percentile(crash, 0.5) / 1000})
end

# What a WASI command costs: MIX_ENV=test mix run native/munition_native/bench_wasi.exs
# (a script, not a test; bench/ belongs to the benchmarks' owner). Prints
# the median and p99 of 20,000 calls after 2,000 of warm-up.
hello = ~s{(module
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "hello, world\\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16)) (i32.store (i32.const 4) (i32.const 13))
    (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))}

cat = ~s{(module
  (import "wasi_snapshot_preview1" "path_open" (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 1024) "f.txt")
  (func (export "_start")
    (drop (call $open (i32.const 3) (i32.const 0) (i32.const 1024) (i32.const 5) (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 24)))
    (i32.store (i32.const 0) (i32.const 2048)) (i32.store (i32.const 4) (i32.const 64))
    (drop (call $read (i32.load (i32.const 24)) (i32.const 0) (i32.const 1) (i32.const 8)))))}

plain = ~s{(module (func (export "_start")))}
dir = Path.join(System.tmp_dir!(), "munition-bench-wasi")
File.mkdir_p!(dir)
File.write!(Path.join(dir, "f.txt"), "contents")
{:ok, hello} = Munition.compile(hello)
{:ok, cat} = Munition.compile(cat)
{:ok, plain} = Munition.compile(plain)

measure = fn label, f ->
  for _ <- 1..2_000, do: f.()

  times =
    Enum.sort(
      for _ <- 1..20_000 do
        t = System.monotonic_time(:nanosecond)
        f.()
        System.monotonic_time(:nanosecond) - t
      end
    )

  IO.puts("#{label}: median #{Enum.at(times, 10_000) / 1000} µs, p99 #{Enum.at(times, 19_800) / 1000} µs")
end

measure.("fire/4 of an empty _start, no WASI", fn -> {:ok, nil, _} = Munition.fire(plain, "_start", []) end)
measure.("run/2 of an empty _start, WASI configured", fn -> {:ok, 0, _} = Munition.run(plain, wasi: []) end)

measure.("run/2 of hello world (one fd_write)", fn ->
  {:ok, 0, %{stdout: "hello, world\n"}} = Munition.run(hello, capabilities: [:wasi])
end)

measure.("run/2 reading a file (path_open + fd_read)", fn ->
  {:ok, 0, _} = Munition.run(cat, capabilities: [:wasi, :wasi_fs], wasi: [preopens: [{"/", dir}]])
end)

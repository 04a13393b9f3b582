# `make demo`: fires example guests and prints what Munition returns for each.

defmodule Demo do
  def show(title, wat, function, args, opts \\ []) do
    IO.puts(IO.ANSI.format([:bright, "\n▶ ", title, :reset]))
    IO.puts("  Munition.fire(wasm, #{inspect(function)}, #{inspect(args)}, #{inspect(opts)})")
    {micros, result} = :timer.tc(fn -> Munition.fire(wat, function, args, opts) end)
    IO.puts("  " <> describe(result))
    IO.puts("  (returned in #{Float.round(micros / 1000, 2)} ms)")
  end

  defp describe({:ok, result, meta}) do
    "{:ok, #{inspect(result, limit: 5)}, ...}  fuel used #{meta.fuel_consumed}, #{meta.execution_time_us} µs in the guest"
  end

  defp describe({:crash, reason, dump}) do
    frames = Enum.map_join(Enum.take(dump.backtrace, 3), " <- ", &(&1.func_name || "func[#{&1.func_index}]"))

    """
    {:crash, #{inspect(reason)}, dump}
        trap:      #{inspect(dump.trap)}
        message:   #{dump.message}
        backtrace: #{if frames == "", do: "(none)", else: frames}
        fuel:      #{dump.fuel_consumed} used of #{dump.fuel_given}
        globals:   #{inspect(Enum.map(dump.globals, &{&1.export || "global #{&1.index}", &1.value}))}
        memory:    #{if dump.memories == [], do: "(none)", else: Enum.map_join(dump.memories, ", ", &"#{&1.pages} page(s), #{&1.size} bytes, #{&1.data && byte_size(&1.data)} bytes compressed")}\
    """
  end

  defp describe({:error, reason}), do: "{:error, #{inspect(reason)}}"
end

IO.puts("Munition demo: every call gets a fresh instance, a fuel budget and a deadline.")

Demo.show(
  "A success",
  ~s{(module (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))},
  "add",
  [40, 2]
)

Demo.show(
  "Fuel exhaustion: an endless loop on a budget of 100,000 units",
  ~s{(module (global $n (export "iterations") (mut i64) (i64.const 0))
       (func $spin (export "spin") (loop (global.set $n (i64.add (global.get $n) (i64.const 1))) (br 0))))},
  "spin",
  [],
  fuel: 100_000
)

Demo.show(
  "A trap: integer division by zero, two calls deep",
  ~s{(module (memory (export "memory") 1) (data (i32.const 16) "state before the crash")
       (func $divide (param i32 i32) (result i32) local.get 0 local.get 1 i32.div_s)
       (func $average (export "average") (param i32 i32) (result i32) local.get 0 local.get 1 call $divide))},
  "average",
  [10, 0]
)

Demo.show(
  "A timeout: an endless loop with fuel to spare, stopped by the engine at 200 ms",
  ~s{(module (func $spin (export "spin") (loop br 0)))},
  "spin",
  [],
  fuel: 1_000_000_000_000,
  timeout: 200
)

Demo.show(
  "A refused import: the guest wants the clock and a file system, granted nothing",
  ~s{(module (import "munition" "get_time_ms" (func (result i64)))
             (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
       (func (export "run")))},
  "run",
  []
)

Demo.show(
  "Infinite recursion: a stack overflow trap, and the VM lives on",
  ~s{(module (func $down (export "down") call $down))},
  "down",
  []
)

Demo.show(
  "Binary data in and out: a guest that upper-cases a string",
  File.read!(Path.join(__DIR__, "../test/fixtures/upcase.wat")),
  "upcase",
  ["hello from elixir"],
  result: :binary
)

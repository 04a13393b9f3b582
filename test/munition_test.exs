defmodule MunitionTest do
  use ExUnit.Case, async: true
  import Bitwise
  doctest Munition

  alias Munition.Forensics.Dump

  @add ~s{(module (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))}

  defp trap_of(body, opts \\ []) do
    wat = """
    (module
      (memory (export "memory") 1)
      (table 2 funcref)
      (type $v (func))
      (type $i (func (result i32)))
      (func $ret (result i32) i32.const 1)
      (elem (i32.const 0) $ret)
      (func $victim (export "f") #{body}))
    """

    assert {:crash, :trap, %Dump{trap: trap}} = Munition.fire(wat, "f", [], opts)
    trap
  end

  describe "fire/4 results" do
    test "a one-result function returns its value with metadata" do
      assert {:ok, 5, meta} = Munition.fire(@add, "add", [2, 3])
      assert meta.fuel_consumed > 0
      assert meta.fuel_remaining == Munition.Fuel.Policy.default_fuel() - meta.fuel_consumed
      assert is_integer(meta.execution_time_us)
      assert meta.module_hash =~ ~r/\A[0-9a-f]{64}\z/
      assert meta.capabilities == []
    end

    test "a function without results returns nil" do
      assert {:ok, nil, _} = Munition.fire(~s{(module (func (export "f")))}, "f", [])
    end

    test "a function with several results returns a list" do
      wat = ~s{(module (func (export "f") (result i32 i64 f64) i32.const 1 i64.const 2 f64.const 3.5))}
      assert {:ok, [1, 2, 3.5], _} = Munition.fire(wat, "f", [])
    end

    test "i64, f32 and f64 arguments and results round-trip" do
      wat = """
      (module
        (func (export "i64") (param i64) (result i64) local.get 0)
        (func (export "f32") (param f32) (result f32) local.get 0)
        (func (export "f64") (param f64) (result f64) local.get 0)
        (func (export "neg") (param i32) (result i32) local.get 0))
      """

      assert {:ok, 9_007_199_254_740_993, _} = Munition.fire(wat, "i64", [9_007_199_254_740_993])
      assert {:ok, -1, _} = Munition.fire(wat, "i64", [0xFFFF_FFFF_FFFF_FFFF])
      assert {:ok, 1.5, _} = Munition.fire(wat, "f32", [1.5])
      assert {:ok, -2.25, _} = Munition.fire(wat, "f64", [-2.25])
      assert {:ok, -1, _} = Munition.fire(wat, "neg", [-1])
      assert {:ok, -1, _} = Munition.fire(wat, "neg", [0xFFFF_FFFF])
    end

    test "NaN and infinities come back as atoms" do
      wat = """
      (module
        (func (export "nan") (result f64) f64.const nan)
        (func (export "inf") (result f32) f32.const -inf))
      """

      assert {:ok, :nan, _} = Munition.fire(wat, "nan", [])
      assert {:ok, :neg_infinity, _} = Munition.fire(wat, "inf", [])
    end

    test "a caller that traps exits finds nothing of the call in its mailbox" do
      Process.flag(:trap_exit, true)
      assert {:ok, 5, _} = Munition.fire(@add, "add", [2, 3])
      assert {:crash, :trap, _} = Munition.fire(~s{(module (func (export "f") unreachable))}, "f", [])
      refute_receive _, 50
    end

    test "a compiled module can be fired directly" do
      {:ok, module} = Munition.compile(@add)
      assert {:ok, 7, %{module_hash: hash}} = Munition.fire(module, "add", [3, 4])
      assert hash == module.hash
    end
  end

  describe "fire/4 argument errors" do
    test "the wrong number of arguments" do
      assert {:error, {:bad_args, message}} = Munition.fire(@add, "add", [1])
      assert message =~ "takes 2 argument(s)"
    end

    test "an i32 out of range" do
      assert {:error, {:bad_args, message}} = Munition.fire(@add, "add", [1, 0x1_0000_0000])
      assert message =~ "out of range for i32"
      assert {:error, {:bad_args, _}} = Munition.fire(@add, "add", [-0x8000_0001, 1])
    end

    test "a float where an integer is declared, and the reverse" do
      assert {:error, {:bad_args, message}} = Munition.fire(@add, "add", [1.0, 2])
      assert message =~ "argument 0"

      wat = ~s{(module (func (export "f") (param f64) (result f64) local.get 0))}
      assert {:error, {:bad_args, _}} = Munition.fire(wat, "f", [1])
    end

    test "an i64 beyond 64 bits" do
      wat = ~s{(module (func (export "f") (param i64) (result i64) local.get 0))}
      assert {:error, {:bad_args, message}} = Munition.fire(wat, "f", [1 <<< 64])
      assert message =~ "out of range for i64"
    end

    test "a function that is not exported" do
      assert {:error, {:function_not_found, "nope"}} = Munition.fire(@add, "nope", [])
    end

    test "bytes that are not a module" do
      assert {:error, {:invalid_module, message}} = Munition.fire(<<0, 97, 115, 109, 1>>, "f", [])
      assert is_binary(message)
      assert {:error, {:invalid_module, _}} = Munition.fire("(module (func (export", "f", [])
    end

    test "a caller's mistake raises ArgumentError naming the value" do
      assert_raise ArgumentError, ~r/function must be .* got: :add/, fn -> Munition.fire(@add, :add, []) end
      assert_raise ArgumentError, ~r/got: :x/, fn -> Munition.fire(@add, "add", [:x]) end

      assert_raise ArgumentError, ~r/fuel must be .*got: -1/, fn ->
        Munition.fire(@add, "add", [1, 2], fuel: -1)
      end

      assert_raise ArgumentError, ~r/timeout must be a positive integer.*got: 0/, fn ->
        Munition.fire(@add, "add", [1, 2], timeout: 0)
      end

      assert_raise ArgumentError, ~r/timeout .*got: 5000000000/, fn ->
        Munition.fire(@add, "add", [1, 2], timeout: 5_000_000_000)
      end

      assert_raise ArgumentError, ~r/fuel .*got: 1180591620717411303424/, fn ->
        Munition.fire(@add, "add", [1, 2], fuel: 1 <<< 70)
      end

      assert_raise ArgumentError, ~r/unknown keys \[:bogus\]/, fn ->
        Munition.fire(@add, "add", [1, 2], bogus: 1)
      end

      assert_raise ArgumentError, ~r/wasm must be/, fn -> Munition.fire(123, "add", []) end

      assert_raise ArgumentError, ~r/max_memory must be/, fn ->
        Munition.fire(@add, "add", [1, 2], max_memory: 5 <<< 30)
      end
    end
  end

  describe "fire/4 crashes" do
    test "trap kinds are atoms" do
      assert trap_of("unreachable") == :unreachable
      assert trap_of("i32.const 1 i32.const 0 i32.div_s drop") == :integer_divide_by_zero
      assert trap_of("i32.const -2147483648 i32.const -1 i32.div_s drop") == :integer_overflow
      assert trap_of("i32.const 70000 i32.load drop") == :memory_out_of_bounds
      assert trap_of("i32.const 1 call_indirect (type $v)") == :indirect_call_to_null
      assert trap_of("i32.const 0 call_indirect (type $v)") == :bad_signature
      assert trap_of("i32.const 5 call_indirect (type $i) drop") == :table_out_of_bounds
      assert trap_of("f64.const nan i32.trunc_f64_s drop") == :bad_conversion_to_integer
    end

    test "a trap's dump has the message, the backtrace with names, fuel, globals and memory" do
      wat = """
      (module
        (memory (export "memory") 1)
        (global $sp (mut i32) (i32.const 1024))
        (global $count (export "count") (mut i64) (i64.const 0))
        (data (i32.const 16) "secret")
        (func $inner (global.set $count (i64.const 7)) unreachable)
        (func $outer (export "run") (param i32) call $inner))
      """

      assert {:crash, :trap, %Dump{} = dump} = Munition.fire(wat, "run", [41])
      assert dump.reason == :trap
      assert dump.trap == :unreachable
      assert dump.message =~ "unreachable"
      assert [%{func_name: "inner", func_index: 0}, %{func_name: "outer", func_index: 1} | _] = dump.backtrace
      assert dump.fuel_consumed > 0
      assert dump.fuel_consumed + dump.fuel_remaining == dump.fuel_given

      assert [
               %{index: 0, type: :i32, mutable: true, value: 1024, export: nil},
               %{index: 1, type: :i64, mutable: true, value: 7, export: "count"}
             ] = dump.globals

      assert {:ok, memory} = Dump.memory(dump)
      assert byte_size(memory) == 65_536
      assert binary_part(memory, 16, 6) == "secret"
      assert [%{pages: 1, size: 65_536, data: compressed}] = dump.memories
      assert byte_size(compressed) < 1_000
      assert dump.function == "run"
      assert dump.args == [41]
      assert dump.module_hash =~ ~r/\A[0-9a-f]{64}\z/
      assert dump.wasmtime_version == "48.0.8"
      assert %DateTime{} = dump.captured_at
    end

    test "frames carry source file and line when the module has DWARF" do
      # test/fixtures/dwarf/guest.rs, built with line tables (see the file).
      wasm = File.read!("test/fixtures/dwarf/guest.wasm")

      assert {:crash, :trap, %Dump{trap: :unreachable, backtrace: [inner, outer | _]}} =
               Munition.fire(wasm, "divide", [1, 0])

      assert %{func_name: "check_divisor", line: line} = inner
      assert is_integer(line)
      assert %{func_name: "divide", file: "fixtures/guest.rs", line: 24} = outer
    end

    test "fuel exhaustion is a crash with the fuel accounted" do
      wat = ~s{(module (func (export "spin") (loop br 0)))}
      assert {:crash, :fuel_exhausted, dump} = Munition.fire(wat, "spin", [], fuel: 10_000)
      assert dump.trap == :out_of_fuel
      assert dump.fuel_given == 10_000
      assert dump.fuel_remaining == 0
      assert dump.fuel_consumed == 10_000
    end

    test "infinite recursion is a stack_overflow trap and the VM lives on" do
      wat = ~s{(module (func $down (export "down") call $down))}
      assert {:crash, :trap, %Dump{trap: :stack_overflow, backtrace: frames}} = Munition.fire(wat, "down", [])
      assert length(frames) > 20
      assert {:ok, 5, _} = Munition.fire(@add, "add", [2, 3])
    end

    test "mutual recursion is a stack_overflow trap too" do
      wat = """
      (module
        (func $ping (export "ping") (param i64) (local.get 0) (i64.const 1) (i64.add) (call $pong))
        (func $pong (param i64) (local.get 0) (call $ping)))
      """

      assert {:crash, :trap, %Dump{trap: :stack_overflow}} = Munition.fire(wat, "ping", [0])
    end

    test "growing memory past max_memory is a memory_limit crash" do
      wat = """
      (module (memory (export "memory") 1)
        (func (export "grow") (result i32) (memory.grow (i32.const 16))))
      """

      assert {:crash, :memory_limit, dump} = Munition.fire(wat, "grow", [], max_memory: 4 * 65_536)
      assert dump.trap == :memory_limit
      assert dump.message =~ "max_memory"
      assert [%{pages: 1}] = dump.memories
      assert {:ok, 1, _} = Munition.fire(wat, "grow", [], max_memory: 32 * 65_536)
    end

    test "a module with more memories than an instance slot holds is unsupported" do
      wat = ~s{(module (memory 1) (memory 1) (memory 1) (memory 1) (memory 1) (func (export "f")))}
      assert {:error, {:unsupported, message}} = Munition.fire(wat, "f", [])
      assert message =~ "5 memories"
    end

    test "a module whose initial memory is over max_memory does not run" do
      wat = ~s{(module (memory 100) (func (export "f")))}
      assert {:error, {:memory_limit, message}} = Munition.fire(wat, "f", [], max_memory: 65_536)
      assert message =~ "100 pages"
    end

    test "forensics: :minimal keeps everything but memory bytes, false captures nothing" do
      wat = ~s{(module (memory (export "memory") 1) (func (export "f") unreachable))}
      assert {:crash, :trap, dump} = Munition.fire(wat, "f", [], forensics: :minimal)
      assert [%{data: nil, pages: 1}] = dump.memories
      assert {:error, :not_captured} = Dump.memory(dump)
      assert dump.trap == :unreachable
      assert {:crash, :trap, nil} = Munition.fire(wat, "f", [], forensics: false)
    end
  end

  describe "fire/4 start functions" do
    test "a trapping start function is a crash with forensics" do
      wat =
        ~s{(module (global $g (mut i32) (i32.const 3)) (func $init (global.set $g (i32.const 9)) unreachable) (start $init) (func (export "f")))}

      assert {:crash, :trap, dump} = Munition.fire(wat, "f", [])
      assert dump.trap == :unreachable
      assert [%{func_name: "init"} | _] = dump.backtrace
      assert [%{value: 9}] = dump.globals
    end

    test "an endless start function is bounded by fuel" do
      wat = ~s{(module (func $init (loop br 0)) (start $init) (func (export "f")))}
      assert {:crash, :fuel_exhausted, %Dump{fuel_remaining: 0}} = Munition.fire(wat, "f", [], fuel: 50_000)
    end

    test "an endless start function is bounded by the timeout" do
      wat = ~s{(module (func $init (loop br 0)) (start $init) (func (export "f")))}

      assert {:crash, :timeout, %Dump{trap: :interrupt}} =
               Munition.fire(wat, "f", [], fuel: 1_000_000_000_000, timeout: 100)
    end

    test "start function fuel counts toward the call" do
      wat =
        ~s{(module (global $g (mut i32) (i32.const 0)) (func $init (global.set $g (i32.const 1))) (start $init) (func (export "f") (result i32) global.get $g))}

      assert {:ok, 1, %{fuel_consumed: with_start}} = Munition.fire(wat, "f", [])

      no_start =
        ~s{(module (global $g (mut i32) (i32.const 1)) (func (export "f") (result i32) global.get $g))}

      assert {:ok, 1, %{fuel_consumed: without}} = Munition.fire(no_start, "f", [])
      assert with_start > without
    end
  end

  describe "fire/4 isolation" do
    test "memory and globals written in one call read zero in the next" do
      wat = """
      (module
        (memory (export "memory") 1)
        (global $g (mut i32) (i32.const 0))
        (func (export "write") (i32.store (i32.const 100) (i32.const 0xBEEF)) (global.set $g (i32.const 77)))
        (func (export "read") (result i32 i32) (i32.load (i32.const 100)) (global.get $g)))
      """

      {:ok, module} = Munition.compile(wat)
      assert {:ok, nil, _} = Munition.fire(module, "write", [])
      assert {:ok, [0, 0], _} = Munition.fire(module, "read", [])

      # Also after a call that crashed with its memory and global written.
      crash =
        String.replace(
          wat,
          ~s{(global.set $g (i32.const 77)))},
          ~s{(global.set $g (i32.const 77)) unreachable)}
        )

      {:ok, crashing} = Munition.compile(crash)
      assert {:crash, :trap, %{globals: [%{value: 77}]}} = Munition.fire(crashing, "write", [])
      assert {:ok, [0, 0], _} = Munition.fire(crashing, "read", [])
    end
  end

  describe "compile/2" do
    test "returns a module with hash, imports and exports" do
      wat =
        ~s{(module (import "munition" "get_time_ms" (func (result i64))) (memory (export "memory") 2) (func (export "f") (param i32) (result i64) i64.const 1))}

      assert {:ok, %Munition.Module{} = module} = Munition.compile(wat)

      assert [%{module: "munition", name: "get_time_ms", kind: :func, params: [], results: [:i64]}] =
               module.imports

      assert %{name: "f", kind: :func, params: [:i32], results: [:i64]} = Munition.Module.export(module, "f")
      assert [%{min_pages: 2, imported: false}] = module.memories
      assert module.stats.function_count == 1
    end

    test "the same bytes give the same hash" do
      {:ok, a} = Munition.compile(@add)
      {:ok, b} = Munition.compile(@add)
      assert a.hash == b.hash
    end

    test "raises on a non-binary" do
      assert_raise ArgumentError, ~r/got: :nope/, fn -> Munition.compile(:nope) end
    end
  end

  describe "validate/2" do
    test "accepts a valid module and rejects garbage" do
      assert :ok = Munition.validate(@add)
      assert {:error, {:invalid_module, _}} = Munition.validate("garbage")
    end

    test "with capabilities, refuses a granted import whose signature is wrong, as fire/4 does" do
      wat = ~s{(module (import "munition" "get_time_ms" (func (result i32))) (func (export "f")))}
      assert {:error, {:instantiation_failed, message}} = Munition.validate(wat, capabilities: [:time])
      assert message =~ "get_time_ms"
      assert {:error, {:instantiation_failed, ^message}} = Munition.fire(wat, "f", [], capabilities: [:time])
    end

    test "with capabilities, lists every import that would be refused" do
      wat =
        ~s{(module (import "munition" "log" (func (param i32 i32 i32))) (import "env" "secret" (func)) (import "env" "mem" (memory 1)))}

      assert {:error, {:capability_denied, denied}} = Munition.validate(wat, capabilities: [:time])

      assert denied == [
               %{module: "munition", name: "log", needs: :log},
               %{module: "env", name: "secret", needs: nil},
               %{module: "env", name: "mem", needs: nil}
             ]
    end
  end
end

defmodule Munition.Conformance do
  @moduledoc false
  # The contract of Munition.fire/4, written once and run against every
  # engine: `use Munition.Conformance, runtime: Munition.Runtime.Wasmi` in a
  # test module defines these tests for that runtime (test/conformance/).
  #
  # Where the engines differ, the difference is asserted here, next to the
  # contract it departs from (`wasmi?/0`), and documented in guides/engines.md
  # and Munition.Runtime.Wasmi's moduledoc: never a skipped test.

  defmacro __using__(runtime: runtime) do
    quote do
      use ExUnit.Case, async: true
      import Bitwise

      alias Munition.Forensics.Dump
      alias Munition.Host.Context

      @runtime unquote(runtime)

      # fire/4 and compile/2 on this suite's runtime.
      defp fire(wasm, function, args, opts \\ []),
        do: Munition.fire(wasm, function, args, Keyword.put_new(opts, :runtime, @runtime))

      defp compile(wasm), do: Munition.compile(wasm, runtime: @runtime)

      defp wasmi?, do: @runtime == Munition.Runtime.Wasmi

      unquote(results())
      unquote(argument_errors())
      unquote(crashes())
      unquote(start_functions())
      unquote(isolation_and_bounds())
      unquote(builtins())
      unquote(host_functions())
      unquote(binary_abi_and_wasi())
    end
  end

  defp results do
    quote do
      @add ~s{(module (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))}

      describe "fire/4 results" do
        test "a one-result function returns its value with metadata" do
          assert {:ok, 5, meta} = fire(@add, "add", [2, 3])
          assert meta.fuel_consumed > 0
          assert meta.fuel_remaining == Munition.Fuel.Policy.default_fuel() - meta.fuel_consumed
          assert is_integer(meta.execution_time_us)
          assert meta.module_hash =~ ~r/\A[0-9a-f]{64}\z/
          assert meta.capabilities == []
        end

        test "a function without results returns nil" do
          assert {:ok, nil, _} = fire(~s{(module (func (export "f")))}, "f", [])
        end

        test "a start function with parameters or results makes the module invalid" do
          for start <- ["(func $s (result i32) i32.const 1)", "(func $s (param i32))"] do
            wat = ~s{(module #{start} (start $s) (func (export "f")))}
            assert {:error, {:invalid_module, _}} = fire(wat, "f", [])
          end
        end

        test "a function with several results returns a list" do
          wat = ~s{(module (func (export "f") (result i32 i64 f64) i32.const 1 i64.const 2 f64.const 3.5))}
          assert {:ok, [1, 2, 3.5], _} = fire(wat, "f", [])
        end

        test "i64, f32 and f64 arguments and results round-trip" do
          wat = """
          (module
            (func (export "i64") (param i64) (result i64) local.get 0)
            (func (export "f32") (param f32) (result f32) local.get 0)
            (func (export "f64") (param f64) (result f64) local.get 0)
            (func (export "neg") (param i32) (result i32) local.get 0))
          """

          assert {:ok, 9_007_199_254_740_993, _} = fire(wat, "i64", [9_007_199_254_740_993])
          assert {:ok, -1, _} = fire(wat, "i64", [0xFFFF_FFFF_FFFF_FFFF])
          assert {:ok, 1.5, _} = fire(wat, "f32", [1.5])
          assert {:ok, -2.25, _} = fire(wat, "f64", [-2.25])
          assert {:ok, -1, _} = fire(wat, "neg", [-1])
          assert {:ok, -1, _} = fire(wat, "neg", [0xFFFF_FFFF])
        end

        test "NaN and infinities come back as atoms" do
          wat = """
          (module
            (func (export "nan") (result f64) f64.const nan)
            (func (export "inf") (result f32) f32.const -inf))
          """

          assert {:ok, :nan, _} = fire(wat, "nan", [])
          assert {:ok, :neg_infinity, _} = fire(wat, "inf", [])
        end

        test "a caller that traps exits finds nothing of the call in its mailbox" do
          Process.flag(:trap_exit, true)
          assert {:ok, 5, _} = fire(@add, "add", [2, 3])
          assert {:crash, :trap, _} = fire(~s{(module (func (export "f") unreachable))}, "f", [])
          refute_receive _, 50
        end

        test "a compiled module can be fired directly, on its own runtime only" do
          {:ok, module} = compile(@add)
          assert module.runtime == @runtime
          assert {:ok, 7, %{module_hash: hash}} = fire(module, "add", [3, 4])
          assert hash == module.hash

          other = if wasmi?(), do: Munition.Runtime.Wasmtime, else: Munition.Runtime.Wasmi

          assert_raise ArgumentError,
                       ~r/compiled by #{inspect(@runtime)} and cannot run on #{inspect(other)}/,
                       fn ->
                         Munition.fire(module, "add", [3, 4], runtime: other)
                       end

          # Validating it for the other engine says the same.
          assert :ok = Munition.validate(module, runtime: @runtime)

          assert_raise ArgumentError, ~r/cannot run on #{inspect(other)}/, fn ->
            Munition.validate(module, runtime: other)
          end
        end

        test "compile/2 returns a module with hash, imports and exports" do
          wat =
            ~s{(module (import "munition" "get_time_ms" (func (result i64))) (memory (export "memory") 2) (func (export "f") (param i32) (result i64) i64.const 1))}

          assert {:ok, %Munition.Module{} = module} = compile(wat)

          assert [%{module: "munition", name: "get_time_ms", kind: :func, params: [], results: [:i64]}] =
                   module.imports

          assert %{name: "f", kind: :func, params: [:i32], results: [:i64]} =
                   Munition.Module.export(module, "f")

          assert [%{min_pages: 2, imported: false}] = module.memories
          assert module.stats.function_count == 1
          assert {:ok, %{hash: hash}} = compile(@add)
          assert {:ok, %{hash: ^hash}} = compile(@add)
        end
      end
    end
  end

  defp argument_errors do
    quote do
      describe "fire/4 argument errors" do
        test "the wrong number of arguments" do
          assert {:error, {:bad_args, message}} = fire(@add, "add", [1])
          assert message =~ "takes 2 argument(s)"
        end

        test "an i32 out of range" do
          assert {:error, {:bad_args, message}} = fire(@add, "add", [1, 0x1_0000_0000])
          assert message =~ "out of range for i32"
          assert {:error, {:bad_args, _}} = fire(@add, "add", [-0x8000_0001, 1])
        end

        test "a float where an integer is declared, and the reverse" do
          assert {:error, {:bad_args, message}} = fire(@add, "add", [1.0, 2])
          assert message =~ "argument 0"

          wat = ~s{(module (func (export "f") (param f64) (result f64) local.get 0))}
          assert {:error, {:bad_args, _}} = fire(wat, "f", [1])
        end

        test "an i64 beyond 64 bits" do
          wat = ~s{(module (func (export "f") (param i64) (result i64) local.get 0))}
          assert {:error, {:bad_args, message}} = fire(wat, "f", [1 <<< 64])
          assert message =~ "out of range for i64"
        end

        test "a function that is not exported" do
          assert {:error, {:function_not_found, "nope"}} = fire(@add, "nope", [])
        end

        test "bytes that are not a module" do
          assert {:error, {:invalid_module, message}} = fire(<<0, 97, 115, 109, 1>>, "f", [])
          assert is_binary(message)
          assert {:error, {:invalid_module, _}} = fire("(module (func (export", "f", [])
          assert {:error, {:invalid_module, _}} = fire(~s{(module (func (export "f") i32.add))}, "f", [])
        end
      end
    end
  end

  defp crashes do
    quote do
      defp trap_of(body) do
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

        assert {:crash, :trap, %Dump{trap: trap}} = fire(wat, "f", [])
        trap
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

        test "a segment that does not fit is a trap when the instance is made" do
          elem = ~s{(module (table 1 funcref) (func $f) (elem (i32.const 5) $f) (func (export "f")))}
          assert {:crash, :trap, %Dump{trap: :table_out_of_bounds}} = fire(elem, "f", [])
          data = ~s{(module (memory 1) (data (i32.const 65535) "ab") (func (export "f")))}
          assert {:crash, :trap, %Dump{trap: :memory_out_of_bounds}} = fire(data, "f", [])
        end

        test "a trap's dump has the message, the backtrace, fuel, globals and memory" do
          wat = """
          (module
            (memory (export "memory") 1)
            (global $sp (mut i32) (i32.const 1024))
            (global $count (export "count") (mut i64) (i64.const 0))
            (data (i32.const 16) "secret")
            (func $inner (global.set $count (i64.const 7)) unreachable)
            (func $outer (export "run") (param i32) call $inner))
          """

          assert {:crash, :trap, %Dump{} = dump} = fire(wat, "run", [41])
          assert dump.reason == :trap
          assert dump.trap == :unreachable
          assert dump.message =~ "unreachable"
          assert dump.fuel_consumed > 0
          assert dump.fuel_consumed + dump.fuel_remaining == dump.fuel_given

          assert [
                   %{index: 0, type: :i32, mutable: true, value: 1024, export: nil},
                   %{index: 1, type: :i64, mutable: true, value: 7, export: "count"}
                 ] = dump.globals

          if wasmi?() do
            # Wasmi gives no backtrace.
            assert dump.backtrace == []
            assert dump.wasmtime_version == "wasmi 2.0.0"
          else
            assert [%{func_name: "inner", func_index: 0}, %{func_name: "outer", func_index: 1} | _] =
                     dump.backtrace

            assert dump.wasmtime_version == "48.0.8"
          end

          assert {:ok, memory} = Dump.memory(dump)
          assert byte_size(memory) == 65_536
          assert binary_part(memory, 16, 6) == "secret"
          assert [%{pages: 1, size: 65_536, data: compressed}] = dump.memories
          assert byte_size(compressed) < 1_000
          assert dump.function == "run"
          assert dump.args == [41]
          assert dump.module_hash =~ ~r/\A[0-9a-f]{64}\z/
          assert %DateTime{} = dump.captured_at
          # A dump round-trips through the file format whichever engine made it.
          assert {:ok, ^dump} = dump |> Dump.serialize() |> Dump.deserialize()
        end

        test "a dump holds every memory and every global, exported or not, in index order" do
          # Nothing exported but the function: the memories and globals are
          # the module's own, and the dump has them all, named as exported
          # (nil) or not.
          wat = """
          (module
            (memory 1)
            (memory 2)
            (global $sp (mut i32) (i32.const 1024))
            (global $k i64 (i64.const -5))
            (global $n (export "n") (mut f64) (f64.const 1.5))
            (data (memory 1) (i32.const 8) "hidden")
            (func (export "f") (global.set $sp (i32.const 99)) unreachable))
          """

          assert {:crash, :trap, %Dump{trap: :unreachable} = dump} = fire(wat, "f", [])

          assert [
                   %{index: 0, type: :i32, mutable: true, value: 99, export: nil},
                   %{index: 1, type: :i64, mutable: false, value: -5, export: nil},
                   %{index: 2, type: :f64, mutable: true, value: 1.5, export: "n"}
                 ] = dump.globals

          assert [%{index: 0, pages: 1}, %{index: 1, pages: 2}] = dump.memories
          assert {:ok, second} = Dump.memory(dump, 1)
          assert binary_part(second, 8, 6) == "hidden"
        end

        test "the names a dump is read through are no export a caller sees or calls" do
          wat =
            ~s{(module (memory 1) (global $g (mut i32) (i32.const 1)) (func $init) (start $init) (func (export "f")))}

          assert {:ok, module} = compile(wat)
          assert [%{name: "f"}] = module.exports

          for name <- ["\0munition:start", "\0munition:memory:0", "\0munition:global:0"] do
            assert {:error, {:function_not_found, _}} = fire(module, name, [])
          end
        end

        test "a module may export names that look reserved; they stay its own" do
          wat = """
          (module
            (global $g (mut i32) (i32.const 4))
            (func $f (result i32) i32.const 42)
            (func $init (global.set $g (i32.const 5)))
            (start $init)
            (export "\\00munition:start" (func $f))
            (export "\\00munition:global:0" (func $f))
            (func (export "boom") unreachable))
          """

          assert {:ok, module} = compile(wat)
          names = module.exports |> Enum.map(& &1.name) |> Enum.sort()
          assert names == ["\0munition:global:0", "\0munition:start", "boom"]
          assert {:ok, 42, _} = fire(module, "\0munition:start", [])
          assert {:crash, :trap, dump} = fire(module, "boom", [])
          assert [%{index: 0, value: 5, export: nil}] = dump.globals
        end

        test "frames carry source file and line when the module has DWARF" do
          # test/fixtures/dwarf/guest.rs, built with line tables (see the file).
          wasm = File.read!("test/fixtures/dwarf/guest.wasm")
          assert {:crash, :trap, %Dump{trap: :unreachable, backtrace: frames}} = fire(wasm, "divide", [1, 0])

          if wasmi?() do
            assert frames == []
          else
            assert [%{func_name: "check_divisor", line: line}, outer | _] = frames
            assert is_integer(line)
            assert %{func_name: "divide", file: "fixtures/guest.rs", line: 24} = outer
          end
        end

        test "a coredump is written from a Wasmtime dump; a Wasmi dump has no frames to give it" do
          wat = ~s{(module (memory (export "memory") 1) (func (export "f") unreachable))}
          assert {:crash, :trap, dump} = fire(wat, "f", [])
          assert {:ok, coredump} = Dump.to_coredump(dump)
          assert <<0, "asm", _::binary>> = coredump
          if wasmi?(), do: assert(dump.backtrace == []), else: assert([_ | _] = dump.backtrace)
        end

        test "a function larger than a fuel slice's worth of translation runs" do
          # 40 KiB of code in one function: Wasmi used to charge its lazy
          # translation (7 units a byte) to the call, from a store holding
          # one fuel slice, and could not resume it.
          body = String.duplicate("nop ", 40_000)
          wat = ~s{(module (func (export "f") (result i32) #{body} i32.const 7))}
          assert {:ok, 7, meta} = fire(wat, "f", [])
          assert meta.fuel_consumed < 100_000
        end

        test "fuel exhaustion is a crash with the fuel accounted" do
          wat = ~s{(module (func (export "spin") (loop br 0)))}
          assert {:crash, :fuel_exhausted, dump} = fire(wat, "spin", [], fuel: 10_000)
          assert dump.trap == :out_of_fuel
          assert dump.fuel_given == 10_000
          assert dump.fuel_consumed + dump.fuel_remaining == 10_000
          # Wasmi stops when what is left cannot pay for the next step, so a
          # few units may be left; Wasmtime uses up every one.
          if wasmi?(), do: assert(dump.fuel_remaining < 100), else: assert(dump.fuel_remaining == 0)
        end

        test "infinite recursion is a stack_overflow trap and the VM lives on" do
          wat = ~s{(module (func $down (export "down") call $down))}
          assert {:crash, :trap, %Dump{trap: :stack_overflow, backtrace: frames}} = fire(wat, "down", [])
          if wasmi?(), do: assert(frames == []), else: assert(length(frames) > 20)
          assert {:ok, 5, _} = fire(@add, "add", [2, 3])
        end

        test "mutual recursion is a stack_overflow trap too" do
          wat = """
          (module
            (func $ping (export "ping") (param i64) (local.get 0) (i64.const 1) (i64.add) (call $pong))
            (func $pong (param i64) (local.get 0) (call $ping)))
          """

          assert {:crash, :trap, %Dump{trap: :stack_overflow}} = fire(wat, "ping", [0])
        end

        test "deep recursion within the bounds returns, off the scheduler's stack" do
          # 5,000 nested calls with locals: far past what a scheduler thread's
          # own stack would hold if the engine recursed on it.
          wat = """
          (module (func $depth (export "depth") (param i32) (result i32) (local i64 i64 i64 i64)
            (if (result i32) (i32.eqz (local.get 0)) (then (i32.const 0))
              (else (i32.add (i32.const 1) (call $depth (i32.sub (local.get 0) (i32.const 1))))))))
          """

          assert {:ok, 5_000, _} = fire(wat, "depth", [5_000])
        end

        test "growing memory past max_memory is a memory_limit crash" do
          wat = """
          (module (memory (export "memory") 1)
            (func (export "grow") (result i32) (memory.grow (i32.const 16))))
          """

          assert {:crash, :memory_limit, dump} = fire(wat, "grow", [], max_memory: 4 * 65_536)
          assert dump.trap == :memory_limit
          assert dump.message =~ "max_memory"
          assert [%{pages: 1}] = dump.memories
          assert {:ok, 1, _} = fire(wat, "grow", [], max_memory: 32 * 65_536)
        end

        test "a module with more memories than an instance slot holds is unsupported" do
          wat = ~s{(module (memory 1) (memory 1) (memory 1) (memory 1) (memory 1) (func (export "f")))}
          assert {:error, {:unsupported, message}} = fire(wat, "f", [])
          assert message =~ "5 memories"
        end

        test "a module whose initial memory is over max_memory does not run" do
          wat = ~s{(module (memory 100) (func (export "f")))}
          assert {:error, {:memory_limit, message}} = fire(wat, "f", [], max_memory: 65_536)
          assert message =~ "100 pages"
        end

        test "forensics: :minimal keeps everything but memory bytes, false captures nothing" do
          wat = ~s{(module (memory (export "memory") 1) (func (export "f") unreachable))}
          assert {:crash, :trap, dump} = fire(wat, "f", [], forensics: :minimal)
          assert [%{data: nil, pages: 1}] = dump.memories
          assert {:error, :not_captured} = Dump.memory(dump)
          assert dump.trap == :unreachable
          assert {:crash, :trap, nil} = fire(wat, "f", [], forensics: false)
        end
      end
    end
  end

  defp start_functions do
    quote do
      describe "fire/4 start functions" do
        test "a trapping start function is a crash with forensics" do
          wat =
            ~s{(module (global $g (export "g") (mut i32) (i32.const 3)) (func $init (global.set $g (i32.const 9)) unreachable) (start $init) (func (export "f")))}

          assert {:crash, :trap, dump} = fire(wat, "f", [])
          assert dump.trap == :unreachable
          assert [%{value: 9}] = dump.globals

          if wasmi?(),
            do: assert(dump.backtrace == []),
            else: assert([%{func_name: "init"} | _] = dump.backtrace)
        end

        test "an endless start function is bounded by fuel" do
          wat = ~s{(module (func $init (loop br 0)) (start $init) (func (export "f")))}
          assert {:crash, :fuel_exhausted, %Dump{fuel_given: 50_000}} = fire(wat, "f", [], fuel: 50_000)
        end

        test "an endless start function is bounded by the timeout" do
          wat = ~s{(module (func $init (loop br 0)) (start $init) (func (export "f")))}

          assert {:crash, :timeout, %Dump{trap: :interrupt}} =
                   fire(wat, "f", [], fuel: 1_000_000_000_000, timeout: 100)
        end

        test "start function fuel counts toward the call" do
          wat =
            ~s{(module (global $g (mut i32) (i32.const 0)) (func $init (global.set $g (i32.const 1))) (start $init) (func (export "f") (result i32) global.get $g))}

          assert {:ok, 1, %{fuel_consumed: with_start}} = fire(wat, "f", [])

          no_start =
            ~s{(module (global $g (mut i32) (i32.const 1)) (func (export "f") (result i32) global.get $g))}

          assert {:ok, 1, %{fuel_consumed: without}} = fire(no_start, "f", [])
          assert with_start > without
        end

        test "the start function is no export a caller can name" do
          wat = ~s{(module (func $init) (start $init) (func (export "f")))}
          assert {:ok, module} = compile(wat)
          assert Enum.map(module.exports, & &1.name) == ["f"]
          assert {:error, {:function_not_found, _}} = fire(module, "\0munition:start", [])
        end
      end
    end
  end

  defp isolation_and_bounds do
    quote do
      @spin ~s{(module (func (export "spin") (loop br 0)))}

      describe "fire/4 isolation and bounds" do
        test "memory and globals written in one call read zero in the next" do
          wat = """
          (module
            (memory (export "memory") 1)
            (global $g (export "g") (mut i32) (i32.const 0))
            (func (export "write") (i32.store (i32.const 100) (i32.const 0xBEEF)) (global.set $g (i32.const 77)))
            (func (export "read") (result i32 i32) (i32.load (i32.const 100)) (global.get $g)))
          """

          {:ok, module} = compile(wat)
          assert {:ok, nil, _} = fire(module, "write", [])
          assert {:ok, [0, 0], _} = fire(module, "read", [])

          # Also after a call that crashed with its memory and global written.
          crash =
            String.replace(
              wat,
              ~s{(global.set $g (i32.const 77)))},
              ~s{(global.set $g (i32.const 77)) unreachable)}
            )

          {:ok, crashing} = compile(crash)
          assert {:crash, :trap, %{globals: [%{value: 77}]}} = fire(crashing, "write", [])
          assert {:ok, [0, 0], _} = fire(crashing, "read", [])
        end

        test "an endless loop with fuel to spare is stopped at its deadline" do
          assert {:crash, :timeout, %Dump{trap: :interrupt} = dump} =
                   fire(@spin, "spin", [], fuel: 1_000_000_000_000_000, timeout: 100)

          assert dump.message =~ "interrupt"
          assert dump.fuel_consumed > 0
          assert dump.fuel_consumed + dump.fuel_remaining == 1_000_000_000_000_000
        end

        test "a short call completes while runaway guests hold every dirty scheduler" do
          test = self()

          runaways =
            for _ <- 1..:erlang.system_info(:dirty_cpu_schedulers) do
              spawn(fn ->
                send(test, :running)
                fire(@spin, "spin", [], fuel: 1_000_000_000_000_000, timeout: 86_400_000)
              end)
            end

          for _ <- runaways, do: assert_receive(:running)
          # Would hang (a failure by ExUnit's timeout), not fail, if the
          # runaways starved the VM: nothing is timed.
          assert {:ok, 5, _} = fire(@add, "add", [2, 3])

          for pid <- runaways do
            Process.exit(pid, :kill)
            Munition.Sync.await_down(pid)
          end
        end

        test "runs under the pool, with the pool's runtime" do
          name = :"conformance_pool_#{inspect(@runtime)}"
          start_supervised!({Munition.Pool, name: name, wasm: @add, size: 2, runtime: @runtime})
          assert {:ok, 9, _} = Munition.fire_pooled(name, "add", [4, 5])
        end
      end
    end
  end

  defp builtins do
    quote do
      @log Munition.Fixtures.log_wat()

      @random Munition.Fixtures.random_wat()

      describe "built-in host functions" do
        test "are refused unless granted, before anything runs" do
          assert {:error, {:capability_denied, [%{module: "munition", name: "log", needs: :log}]}} =
                   fire(@log, "twice", [])
        end

        test "log lines come back in metadata, and in the dump of a crash" do
          assert {:ok, nil, %{log: [{1, "hello"}, {3, "the guest"}]}} =
                   fire(@log, "twice", [], capabilities: [:log])

          assert {:crash, :trap, %Dump{log: [{2, "hello"}], capabilities: [:log]}} =
                   fire(@log, "then_trap", [], capabilities: [:log])
        end

        test "a range outside guest memory is a crash, never a host read" do
          assert {:crash, :trap, %Dump{trap: :memory_out_of_bounds, message: message}} =
                   fire(@log, "wild", [], capabilities: [:log])

          assert message =~ "log"
        end

        test "clocks and randomness" do
          time =
            ~s{(module (import "munition" "get_time_ms" (func $now (result i64))) (func (export "now") (result i64) call $now))}

          before = System.os_time(:millisecond)
          assert {:ok, now, _} = fire(time, "now", [], capabilities: [:time])
          assert now >= before and now <= System.os_time(:millisecond)

          assert {:ok, [a, b], _} = fire(@random, "two", [], capabilities: [:random])
          assert a != b
          assert {:ok, bytes, _} = fire(@random, "fill", [100, 64], capabilities: [:random], result: :binary)
          assert byte_size(bytes) == 64 and bytes != <<0::512>>
        end

        test "bytes a built-in handles are paid for in fuel" do
          # 64 KiB at 8 bytes per unit of fuel is 8192 units: more than the budget.
          assert {:crash, :fuel_exhausted, _} =
                   fire(@random, "fill", [0, 65_536], capabilities: [:random], fuel: 5_000)

          assert {:ok, _, %{fuel_consumed: fuel}} =
                   fire(@random, "fill", [0, 65_536], capabilities: [:random])

          assert fuel > 8_192
        end

        test "AssemblyScript's abort is a crash whose dump carries the message" do
          abort = Munition.Fixtures.abort_wat()

          assert {:crash, :trap, %Dump{trap: :abort, message: "abort: boom! at a.ts:12:3"} = dump} =
                   fire(abort, "run", [], capabilities: [:abort])

          if wasmi?(),
            do: assert(dump.backtrace == []),
            else: assert([%{func_name: "assert_positive"} | _] = dump.backtrace)
        end
      end
    end
  end

  defp host_functions do
    quote do
      @sum_lookups Munition.Fixtures.sum_lookups_wat()

      @pointer_guest """
      (module
        (import "env" "peek" (func $peek (param i32 i32) (result i32)))
        (memory (export "memory") 1)
        (data (i32.const 64) "hello guest")
        (global $seen (export "seen") (mut i32) (i32.const 0))
        (func (export "run") (param $ptr i32) (param $len i32) (result i32)
          (global.set $seen (i32.const 1))
          (call $peek (local.get $ptr) (local.get $len))))
      """

      defp lookup(fun), do: {"env", "lookup", {[:i32], [:i32]}, :kv, fun}
      defp peek(fun), do: {"env", "peek", {[:i32, :i32], [:i32]}, :peek, fun}

      describe "Elixir host functions" do
        test "are called many times within one call" do
          host = lookup(fn %Context{}, key -> key * 2 end)

          # A thousand round trips: not a test of the deadline, so it is far away.
          assert {:ok, 999_000, meta} =
                   fire(@sum_lookups, "run", [1000],
                     host_functions: [host],
                     capabilities: [:kv],
                     timeout: 60_000
                   )

          assert meta.capabilities == [:kv]
        end

        test "NaN and infinities pass through a float host function both ways" do
          wat = """
          (module (import "env" "same" (func $same (param f64) (result f64)))
            (func (export "f") (param f64) (result f64) (call $same (local.get 0))))
          """

          host = {"env", "same", {[:f64], [:f64]}, :same, fn _ctx, x -> x end}

          for value <- [:nan, :infinity, :neg_infinity, 1.5] do
            assert {:ok, ^value, _} = fire(wat, "f", [value], host_functions: [host], capabilities: [:same])
          end
        end

        test "are refused unless their capability is granted" do
          host = lookup(fn _ctx, key -> key end)

          assert {:error, {:capability_denied, [%{module: "env", name: "lookup", needs: :kv}]}} =
                   fire(@sum_lookups, "run", [1], host_functions: [host])
        end

        test "one that raises ends the call as a host_error crash with the message" do
          host = lookup(fn _ctx, _key -> raise "lookup table is on fire" end)

          assert {:crash, :host_error, %Dump{} = dump} =
                   fire(@sum_lookups, "run", [5], host_functions: [host], capabilities: [:kv])

          assert dump.trap == :host_error
          assert dump.message =~ "lookup table is on fire"

          if wasmi?() do
            assert dump.backtrace == []
          else
            # The innermost wasm frame is the guest function that called the import.
            assert [%{func_name: nil, func_index: 1} | _] = dump.backtrace
          end
        end

        test "one that returns the wrong type is a host_error" do
          host = lookup(fn _ctx, _key -> "not an integer" end)

          assert {:crash, :host_error, %Dump{message: message}} =
                   fire(@sum_lookups, "run", [1], host_functions: [host], capabilities: [:kv])

          assert message =~ "lookup"
        end

        test "one that outlives the timeout ends the call, and its process with it" do
          test = self()

          host =
            lookup(fn _ctx, _key ->
              send(test, {:blocking, self()})
              # Never returns: the behaviour under test.
              receive do: (:never -> 0)
            end)

          assert {:crash, :timeout, %Dump{trap: :interrupt, message: message}} =
                   fire(@sum_lookups, "run", [1], host_functions: [host], capabilities: [:kv], timeout: 1_000)

          assert message == "lookup: host function did not return before the deadline"
          assert_receive {:blocking, blocked}
          assert Munition.Sync.await_down(blocked) in [:killed, :noproc]
        end

        test "return a list for several results, and anything for none" do
          wat = """
          (module
            (import "env" "pair" (func $pair (param i32) (result i32 i64)))
            (import "env" "note" (func $note (param i32)))
            (func (export "f") (param i32) (result i32 i64)
              (call $note (local.get 0))
              (call $pair (local.get 0))))
          """

          test = self()

          hosts = [
            {"env", "pair", {[:i32], [:i32, :i64]}, :pair, fn _ctx, x -> [x + 1, x * 1_000_000_000_000] end},
            {"env", "note", {[:i32], []}, :pair, fn _ctx, x -> send(test, {:noted, x}) end}
          ]

          assert {:ok, [8, 7_000_000_000_000], _} =
                   fire(wat, "f", [7], host_functions: hosts, capabilities: [:pair])

          assert_receive {:noted, 7}
        end

        test "read and write guest memory and know the remaining fuel" do
          test = self()

          host =
            peek(fn ctx, ptr, len ->
              {:ok, bytes} = Context.read(ctx, ptr, len)
              :ok = Context.write(ctx, ptr, String.upcase(bytes))
              {:ok, upper} = Context.read(ctx, ptr, len)
              send(test, {:peeked, bytes, upper, Context.fuel_remaining(ctx)})
              byte_size(bytes)
            end)

          assert {:ok, 11, _} =
                   fire(@pointer_guest, "run", [64, 11], host_functions: [host], capabilities: [:peek])

          assert_receive {:peeked, "hello guest", "HELLO GUEST", fuel}
          assert fuel > 0 and fuel < Munition.Fuel.Policy.default_fuel()
        end

        test "a wild pointer from the guest is a crash with forensics, never a host crash" do
          test = self()

          host =
            peek(fn ctx, ptr, len ->
              send(test, {:read, Context.read(ctx, ptr, len)})
              0
            end)

          assert {:crash, :trap, %Dump{} = dump} =
                   fire(@pointer_guest, "run", [0xFFFF_FFF0, 64],
                     host_functions: [host],
                     capabilities: [:peek]
                   )

          assert_receive {:read, {:error, :out_of_bounds}}
          assert dump.trap == :memory_out_of_bounds
          assert dump.message =~ "outside guest memory"
          assert [%{value: 1, export: "seen"}] = dump.globals
        end
      end
    end
  end

  defp binary_abi_and_wasi do
    quote do
      describe "the binary ABI" do
        test "binaries go in through alloc and come back from (ptr, len)" do
          upcase = File.read!("test/fixtures/upcase.wat")
          assert {:ok, "HELLO", _} = fire(upcase, "upcase", ["hello"], result: :binary)
        end

        test "a result range outside memory is a memory_out_of_bounds crash" do
          wat = """
          (module (memory (export "memory") 1)
            (func (export "f") (result i32 i32) (i32.const 65530) (i32.const 100)))
          """

          assert {:crash, :trap, %Dump{trap: :memory_out_of_bounds, message: message}} =
                   fire(wat, "f", [], result: :binary)

          assert message =~ "outside guest memory"
        end
      end

      describe "WASI" do
        @exit ~s{(module (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32))) (memory (export "memory") 1) (func (export "_start") (call $exit (i32.const 3))))}

        test "a command runs, and its proc_exit code is the result" do
          assert {:ok, 3, %{exit_code: 3, stdout: ""}} =
                   Munition.run(@exit, capabilities: [:wasi], runtime: @runtime)

          assert {:ok, 3, _} = fire(@add, "add", [1, 2], wasi: [args: ["x"]])
        end
      end
    end
  end
end

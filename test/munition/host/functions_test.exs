defmodule Munition.Host.FunctionsTest do
  use ExUnit.Case, async: true

  alias Munition.Forensics.Dump
  alias Munition.Host.{Context, Functions}

  @sum_lookups """
  (module
    (import "env" "lookup" (func $lookup (param i32) (result i32)))
    (func (export "run") (param $n i32) (result i32) (local $i i32) (local $sum i32)
      (block $done
        (loop $next
          (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
          (local.set $sum (i32.add (local.get $sum) (call $lookup (local.get $i))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $next)))
      (local.get $sum)))
  """

  @pointer_guest """
  (module
    (import "env" "peek" (func $peek (param i32 i32) (result i32)))
    (memory (export "memory") 1)
    (data (i32.const 64) "hello guest")
    (global $seen (mut i32) (i32.const 0))
    (func (export "run") (param $ptr i32) (param $len i32) (result i32)
      (global.set $seen (i32.const 1))
      (call $peek (local.get $ptr) (local.get $len))))
  """

  defp lookup(fun), do: {"env", "lookup", {[:i32], [:i32]}, :kv, fun}

  describe "Elixir host functions" do
    test "are called many times within one call" do
      host = lookup(fn %Context{}, key -> key * 2 end)

      assert {:ok, 999_000, meta} =
               Munition.fire(@sum_lookups, "run", [1000], host_functions: [host], capabilities: [:kv])

      assert meta.capabilities == [:kv]
    end

    test "NaN and infinities pass through a float host function both ways" do
      wat = """
      (module (import "env" "same" (func $same (param f64) (result f64)))
        (func (export "f") (param f64) (result f64) (call $same (local.get 0))))
      """

      host = {"env", "same", {[:f64], [:f64]}, :same, fn _ctx, x -> x end}

      for value <- [:nan, :infinity, :neg_infinity, 1.5] do
        assert {:ok, ^value, _} =
                 Munition.fire(wat, "f", [value], host_functions: [host], capabilities: [:same])
      end
    end

    test "are refused unless their capability is granted" do
      host = lookup(fn _ctx, key -> key end)

      assert {:error, {:capability_denied, [%{module: "env", name: "lookup", needs: :kv}]}} =
               Munition.fire(@sum_lookups, "run", [1], host_functions: [host])
    end

    test "one that raises ends the call as a host_error crash with the message" do
      host = lookup(fn _ctx, _key -> raise "lookup table is on fire" end)

      assert {:crash, :host_error, %Dump{} = dump} =
               Munition.fire(@sum_lookups, "run", [5], host_functions: [host], capabilities: [:kv])

      assert dump.trap == :host_error
      assert dump.message =~ "lookup table is on fire"
      # The innermost wasm frame is the guest function that called the import.
      assert [%{func_name: nil, func_index: 1} | _] = dump.backtrace
    end

    test "one that returns the wrong type is a host_error" do
      host = lookup(fn _ctx, _key -> "not an integer" end)

      assert {:crash, :host_error, %Dump{message: message}} =
               Munition.fire(@sum_lookups, "run", [1], host_functions: [host], capabilities: [:kv])

      assert message =~ "lookup"
    end

    test "one that outlives the timeout ends the call and releases the native thread" do
      test = self()

      host =
        lookup(fn _ctx, _key ->
          send(test, {:sleeping, self()})
          Process.sleep(10_000)
        end)

      started = System.monotonic_time(:millisecond)

      assert {:crash, :timeout, %Dump{trap: :interrupt, message: message}} =
               Munition.fire(@sum_lookups, "run", [1],
                 host_functions: [host],
                 capabilities: [:kv],
                 timeout: 200
               )

      assert System.monotonic_time(:millisecond) - started < 1_000
      assert message =~ "did not return before the deadline"
      assert_received {:sleeping, sleeper}
      # The process running the host function does not outlive the call.
      refute Process.alive?(sleeper)
    end

    test "the context reads and writes guest memory and knows the remaining fuel" do
      peek = fn ctx, ptr, len ->
        {:ok, bytes} = Context.read(ctx, ptr, len)
        :ok = Context.write(ctx, ptr, String.upcase(bytes))
        {:ok, upper} = Context.read(ctx, ptr, len)
        send(self_pid(), {:peeked, bytes, upper, Context.fuel_remaining(ctx)})
        byte_size(bytes)
      end

      Process.put(:test_pid, self())
      host = {"env", "peek", {[:i32, :i32], [:i32]}, :peek, peek |> with_test_pid(self())}

      assert {:ok, 11, _} =
               Munition.fire(@pointer_guest, "run", [64, 11], host_functions: [host], capabilities: [:peek])

      assert_received {:peeked, "hello guest", "HELLO GUEST", fuel}
      assert fuel > 0 and fuel < Munition.Fuel.Policy.default_fuel()
    end

    test "a wild pointer from the guest is a crash with forensics, never a host crash" do
      test = self()

      peek = fn ctx, ptr, len ->
        send(test, {:read, Context.read(ctx, ptr, len)})
        0
      end

      host = {"env", "peek", {[:i32, :i32], [:i32]}, :peek, peek}

      assert {:crash, :trap, %Dump{} = dump} =
               Munition.fire(@pointer_guest, "run", [0xFFFF_FFF0, 64],
                 host_functions: [host],
                 capabilities: [:peek]
               )

      assert_received {:read, {:error, :out_of_bounds}}
      assert dump.trap == :memory_out_of_bounds
      assert dump.message =~ "outside guest memory"
      assert [%{value: 1} | _] = dump.globals
    end

    test "a registered host function is used by name" do
      :ok = Functions.register(:double_lookup, lookup(fn _ctx, key -> key * 2 end))
      on_exit(fn -> Functions.unregister(:double_lookup) end)

      assert {:ok, 20, _} =
               Munition.fire(@sum_lookups, "run", [5], host_functions: [:double_lookup], capabilities: [:kv])
    end

    test "malformed host functions raise ArgumentError naming the value" do
      assert_raise ArgumentError, ~r/arity 2/, fn -> Functions.new!(lookup(fn -> 1 end)) end

      assert_raise ArgumentError, ~r/:i128/, fn ->
        Functions.new!({"env", "x", {[:i128], []}, :kv, fn _ -> 1 end})
      end

      assert_raise ArgumentError, ~r/capability of its own/, fn ->
        Functions.new!({"env", "x", {[], []}, :time, fn _ -> 1 end})
      end

      assert_raise ArgumentError, ~r/registered as :nope/, fn -> Functions.fetch!(:nope) end

      assert_raise ArgumentError, ~r/given 2 times/, fn ->
        Functions.normalize!([lookup(&{&1, &2}), lookup(&{&1, &2})])
      end
    end
  end

  describe "binary data" do
    @upcase File.read!("test/fixtures/upcase.wat")

    test "round-trips 0 bytes, 1 byte and 1 MiB" do
      for input <- [
            "",
            "a",
            :binary.copy("hello, world ", div(1_048_576, 13) + 1) |> binary_part(0, 1_048_576)
          ] do
        assert {:ok, output, _} =
                 Munition.fire(@upcase, "upcase", [input], result: :binary, fuel: 100_000_000)

        assert output == String.upcase(input)
      end
    end

    test "a result packed into one i64 is read back too" do
      assert {:ok, "PACKED", _} = Munition.fire(@upcase, "upcase_packed", ["packed"], result: :binary)
    end

    test "a result range outside guest memory is a crash with forensics" do
      assert {:crash, :trap, %Dump{trap: :memory_out_of_bounds, message: message} = dump} =
               Munition.fire(@upcase, "wild", ["x"], result: :binary)

      assert message =~ "outside guest memory"
      assert [%{pages: 1}] = dump.memories
    end

    test "a result that is not (i32, i32) or one i64 is refused before anything runs" do
      wat = ~s{(module (memory (export "memory") 1) (func (export "one") (result i32) i32.const 0))}
      assert {:error, {:bad_result, message}} = Munition.fire(wat, "one", [], result: :binary)
      assert message =~ "(ptr: i32, len: i32) or one i64"
    end

    test "an allocator returning a pointer outside memory is a crash whose dump names the globals" do
      wat = """
      (module (memory (export "memory") 1)
        (global $hidden (mut i32) (i32.const 11))
        (global $a (export "a") (mut i32) (i32.const 22))
        (global $b (export "b") i32 (i32.const 33))
        (func (export "alloc") (param i32) (result i32) (global.set $a (i32.const 23)) i32.const -16)
        (func (export "take") (param i32 i32)))
      """

      assert {:crash, :trap, %Dump{trap: :memory_out_of_bounds, message: message} = dump} =
               Munition.fire(wat, "take", ["bytes"])

      assert message =~ "alloc returned"
      # No trap happened inside wasm, so the exported globals are what can be
      # read, each under its own index and name.
      assert [%{index: 1, export: "a", value: 23}, %{index: 2, export: "b", value: 33}] = dump.globals
      assert [%{index: 0, pages: 1}] = dump.memories
    end

    test "an allocator with the wrong signature is refused" do
      wat =
        ~s{(module (memory (export "memory") 1) (func (export "alloc") (param i64) (result i64) i64.const 0) (func (export "take") (param i32 i32)))}

      assert {:error, {:bad_args, message}} = Munition.fire(wat, "take", ["x"])
      assert message =~ "alloc(len: i32) -> ptr: i32"
    end

    test "binary arguments need the guest's allocator" do
      assert {:error, {:bad_args, message}} =
               Munition.fire(@upcase, "upcase", ["x"], result: :binary, alloc: "malloc")

      assert message =~ "malloc"
    end
  end

  defp self_pid, do: Process.get(:test_pid)

  # Host functions run in a process of their own: hand them the test's pid.
  defp with_test_pid(fun, pid) do
    fn ctx, a, b ->
      Process.put(:test_pid, pid)
      fun.(ctx, a, b)
    end
  end
end

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

  defp lookup(fun), do: {"env", "lookup", {[:i32], [:i32]}, :kv, fun}

  describe "Elixir host functions" do
    test "are called many times within one call" do
      host = lookup(fn %Context{}, key -> key * 2 end)

      # A thousand round trips: not a test of the deadline, so it is far away.
      assert {:ok, 999_000, meta} =
               Munition.fire(@sum_lookups, "run", [1000],
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

    test "one that outlives the timeout ends the call, and its process with it" do
      test = self()

      host =
        lookup(fn _ctx, _key ->
          send(test, {:blocking, self()})
          # Never returns: the behaviour under test.
          receive do: (:never -> 0)
        end)

      # The guest calls the host function at once; the deadline only has to
      # come after that.
      assert {:crash, :timeout, %Dump{trap: :interrupt, message: message}} =
               Munition.fire(@sum_lookups, "run", [1],
                 host_functions: [host],
                 capabilities: [:kv],
                 timeout: 1_000
               )

      assert message == "lookup: host function did not return before the deadline"
      assert_receive {:blocking, blocked}
      # The process running the host function does not outlive the call.
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
               Munition.fire(wat, "f", [7], host_functions: hosts, capabilities: [:pair])

      assert_receive {:noted, 7}
    end

    test "a registered host function is used by name" do
      :ok = Functions.register(:double_lookup, lookup(fn _ctx, key -> key * 2 end))
      on_exit(fn -> Functions.unregister(:double_lookup) end)

      assert {:ok, 20, _} =
               Munition.fire(@sum_lookups, "run", [5], host_functions: [:double_lookup], capabilities: [:kv])
    end

    test "new!/1 builds a Munition.Host.Function, and takes one as it is" do
      fun = fn _ctx, key -> key end

      assert %Munition.Host.Function{
               module: "env",
               name: "lookup",
               params: [:i32],
               results: [:i32],
               capability: :kv,
               fun: ^fun
             } = function = Functions.new!(lookup(fun))

      assert Functions.new!(function) == function
      assert Functions.normalize!([lookup(fun)]) == [function]
    end

    test "register/2, fetch!/1 and unregister/1 keep host functions by name" do
      key = :"lookup_#{System.unique_integer([:positive])}"
      assert Functions.register(key, lookup(fn _ctx, k -> k end)) == :ok
      assert %Munition.Host.Function{name: "lookup", capability: :kv} = Functions.fetch!(key)
      assert [%Munition.Host.Function{name: "lookup"}] = Functions.normalize!([key])
      assert Functions.unregister(key) == :ok
      assert_raise ArgumentError, ~r/no host function is registered as/, fn -> Functions.fetch!(key) end
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

      assert_raise ArgumentError, ~r/got: :nope/, fn -> Functions.new!(:nope) end

      assert_raise ArgumentError, ~r/host_functions must be a list, got: %{}/, fn ->
        Functions.normalize!(%{})
      end
    end
  end
end

defmodule Munition.Host.FunctionsTest do
  use ExUnit.Case, async: true

  alias Munition.Host.Functions

  @sum_lookups Munition.Fixtures.sum_lookups_wat()

  defp lookup(fun), do: {"env", "lookup", {[:i32], [:i32]}, :kv, fun}

  describe "Elixir host functions" do
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

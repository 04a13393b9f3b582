defmodule MunitionTest do
  # What does not depend on the engine. fire/4's contract on each engine is
  # test/conformance/ (the cases: test/support/conformance.ex).
  use ExUnit.Case, async: true
  import Bitwise
  doctest Munition

  @add ~s{(module (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))}

  describe "fire/4 caller mistakes" do
    test "a caller's mistake raises ArgumentError naming the value" do
      assert_raise ArgumentError, ~r/function must be .* got: :add/, fn -> Munition.fire(@add, :add, []) end
      # Not UTF-8: no wasm name is; the native side took it for a runtime failure.
      assert_raise ArgumentError, ~r/function must be .*UTF-8.* got: <<128>>/, fn ->
        Munition.fire(@add, <<128>>, [])
      end

      assert_raise ArgumentError, ~r/got: :x/, fn -> Munition.fire(@add, "add", [:x]) end

      assert_raise ArgumentError, ~r/fuel must be .*got: -1/, fn ->
        Munition.fire(@add, "add", [1, 2], fuel: -1)
      end

      # Before anything is compiled: the answer does not depend on the
      # module (or on whether compiling it fits in the timeout).
      assert_raise ArgumentError, ~r/fuel must be .*got: -1/, fn ->
        Munition.fire("not wasm", "add", [1, 2], fuel: -1)
      end

      assert_raise ArgumentError, ~r/fuel must be .*got: :lavish/, fn ->
        Munition.fire("not wasm", "add", [1, 2], fuel: :lavish)
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

  describe "compile/2" do
    test "takes a %Munition.Module{}, as fire/4 does, and returns it" do
      {:ok, module} = Munition.compile(@add)
      assert Munition.compile(module) == {:ok, module}

      assert Munition.compile(module, runtime: Munition.Runtime.Wasmtime, limits: [functions: 0]) ==
               {:ok, module}

      {:ok, on_wasmi} = Munition.compile(@add, runtime: Munition.Runtime.Wasmi)
      assert Munition.compile(on_wasmi, runtime: Munition.Runtime.Wasmi) == {:ok, on_wasmi}
    end

    test "a module of another engine raises, as in fire/4; anything else is the caller's mistake" do
      {:ok, module} = Munition.compile(@add)

      for call <- [
            fn -> Munition.compile(module, runtime: Munition.Runtime.Wasmi) end,
            fn -> Munition.fire(module, "add", [1, 2], runtime: Munition.Runtime.Wasmi) end
          ] do
        assert_raise ArgumentError,
                     ~r/compiled by Munition.Runtime.Wasmtime and cannot run on Munition.Runtime.Wasmi/,
                     call
      end

      assert_raise ArgumentError,
                   ~r/wasm must be wasm bytes, WAT text or a %Munition.Module{}, got: 123/,
                   fn ->
                     Munition.compile(123)
                   end
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

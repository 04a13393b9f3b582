defmodule Munition.Instance.BinaryABITest do
  use ExUnit.Case, async: true
  doctest Munition.Instance.BinaryABI

  alias Munition.Forensics.Dump
  alias Munition.Instance.{BinaryABI, State}

  @upcase File.read!("test/fixtures/upcase.wat")

  # A module as far as check/1 looks at it: its exports.
  defp module(exports) do
    exports =
      Enum.map(exports, fn {name, params, results} ->
        %{name: name, kind: :func, params: params, results: results}
      end)

    %Munition.Module{resource: nil, hash: "test", exports: exports}
  end

  defp state(module, fields) do
    struct!(
      State,
      [module: module, function: "f", args: [], runtime: nil, fuel: 1, timeout: 1, max_memory: 1] ++ fields
    )
  end

  describe "check/1" do
    @alloc {"alloc", [:i32], [:i32]}

    test "numbers alone need nothing of the guest" do
      assert BinaryABI.check(state(module([]), args: [1, 2.0, :nan])) == :ok
    end

    test "binary arguments need alloc(i32) -> i32, under the name given" do
      assert BinaryABI.check(state(module([@alloc]), args: ["x", 1])) == :ok

      assert BinaryABI.check(state(module([{"malloc", [:i32], [:i32]}]), args: ["x"], alloc: "malloc")) ==
               :ok

      for exports <- [[], [{"alloc", [:i64], [:i64]}], [{"alloc", [:i32], []}]] do
        assert BinaryABI.check(state(module(exports), args: ["x"])) ==
                 {:error,
                  {:bad_args,
                   "binary arguments need the guest to export alloc(len: i32) -> ptr: i32 (see the :alloc option)"}}
      end

      assert {:error, {:bad_args, "binary arguments need the guest to export malloc" <> _}} =
               BinaryABI.check(state(module([@alloc]), args: ["x"], alloc: "malloc"))
    end

    test "result: :binary needs (i32, i32) or one i64" do
      for results <- [[:i32, :i32], [:i64]] do
        assert BinaryABI.check(state(module([{"f", [], results}]), result: :binary)) == :ok
      end

      for results <- [[], [:i32], [:i64, :i64], [:f64, :f64]] do
        assert BinaryABI.check(state(module([{"f", [], results}]), result: :binary)) ==
                 {:error,
                  {:bad_result,
                   "result: :binary needs f to return (ptr: i32, len: i32) or one i64 (ptr << 32 | len)"}}
      end

      # Values are not checked against the ABI.
      assert BinaryABI.check(state(module([{"f", [], [:f64]}]), result: :values)) == :ok
    end

    test "a missing function is left for the call to report" do
      assert BinaryABI.check(state(module([]), result: :binary)) == :ok
    end
  end

  describe "lower/2" do
    test "numbers pass as they are, each binary becomes ptr and len from copy_in" do
      copy_in = fn bytes -> {:ok, 1000 + byte_size(bytes)} end
      assert BinaryABI.lower([], copy_in) == {:ok, []}
      assert BinaryABI.lower([1, 2.5, :nan], copy_in) == {:ok, [1, 2.5, :nan]}
      assert BinaryABI.lower([7, "abc", "", 8], copy_in) == {:ok, [7, 1003, 3, 1000, 0, 8]}
    end

    test "copies binaries in order, and stops at the first copy that fails, returning what it returned" do
      test = self()

      copy_in = fn
        "bad" = bytes ->
          send(test, {:copied, bytes})
          {:crash, :trap, :a_dump}

        bytes ->
          send(test, {:copied, bytes})
          {:ok, 1}
      end

      assert BinaryABI.lower(["a", "bad", "c"], copy_in) == {:crash, :trap, :a_dump}
      assert_received {:copied, "a"}
      assert_received {:copied, "bad"}
      refute_received {:copied, "c"}
    end
  end

  describe "result_range/1" do
    test "reads (ptr, len) as unsigned i32s" do
      assert BinaryABI.result_range([16, 5]) == {16, 5}
      assert BinaryABI.result_range([-16, -1]) == {0xFFFF_FFF0, 0xFFFF_FFFF}
    end

    test "reads one i64 as ptr in the high 32 bits and len in the low 32" do
      assert BinaryABI.result_range([0x10_0000_0005]) == {16, 5}
      assert BinaryABI.result_range([0]) == {0, 0}
      # i64 results come back signed: the bits are what count.
      assert BinaryABI.result_range([-1]) == {0xFFFF_FFFF, 0xFFFF_FFFF}
    end
  end

  describe "unsigned/1" do
    test "reads a signed i32 as the same bits unsigned" do
      assert BinaryABI.unsigned(0) == 0
      assert BinaryABI.unsigned(5) == 5
      assert BinaryABI.unsigned(0xFFFF_FFFF) == 0xFFFF_FFFF
      assert BinaryABI.unsigned(-1) == 0xFFFF_FFFF
      assert BinaryABI.unsigned(-0x8000_0000) == 0x8000_0000
    end
  end

  describe "through fire/4" do
    test "round-trips 0 bytes, 1 byte, 64 KiB and a byte more (copied on a dirty scheduler), and 1 MiB, on both engines" do
      text = fn size -> :binary.copy("hello, world ", div(size, 13) + 1) |> binary_part(0, size) end

      for runtime <- [Munition.Runtime.Wasmtime, Munition.Runtime.Wasmi],
          input <- ["", "a", text.(65_536), text.(65_537), text.(1_048_576)] do
        assert {:ok, output, _} =
                 Munition.fire(@upcase, "upcase", [input],
                   result: :binary,
                   fuel: 100_000_000,
                   timeout: 60_000,
                   runtime: runtime
                 )

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
end

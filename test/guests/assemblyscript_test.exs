Code.require_file("guests.exs", __DIR__)

defmodule Munition.Guests.AssemblyScriptTest do
  # Guests in AssemblyScript (the npm package pinned in
  # examples/guests/assemblyscript/package-lock.json), built with the stub
  # runtime. Their only import is `env.abort`, which AssemblyScript calls for
  # `throw`, failed assertions and out-of-bounds array accesses.
  use ExUnit.Case, async: true

  import Munition.Guests, only: [read!: 1, imports!: 1]

  @abort [{"env", "abort"}]

  describe "text (binary ABI)" do
    setup do
      %{wasm: read!("assemblyscript/text")}
    end

    test "imports env.abort only, and is refused without the :abort capability", %{wasm: wasm} do
      assert imports!("assemblyscript/text") == @abort

      assert {:error, {:capability_denied, [%{module: "env", name: "abort", needs: :abort}]}} =
               Munition.fire(wasm, "slugify", ["x"], result: :binary)
    end

    test "slugify: a binary in, a binary out", %{wasm: wasm} do
      for {input, slug} <- [
            {"Hello, World!", "hello-world"},
            {"  Munition 0.1: Fire & Forget  ", "munition-0-1-fire-forget"},
            {"Ça va? Très bien.", "a-va-tr-s-bien"},
            {"---", ""},
            {"", ""}
          ] do
        assert {:ok, ^slug, _} =
                 Munition.fire(wasm, "slugify", [input], result: :binary, capabilities: [:abort])
      end
    end

    test "levenshtein: two binaries in, a number out", %{wasm: wasm} do
      for {a, b, distance} <- [
            {"kitten", "sitting", 3},
            {"flaw", "lawn", 2},
            {"same", "same", 0},
            {"", "abc", 3},
            {"", "", 0}
          ] do
        assert {:ok, ^distance, _} = Munition.fire(wasm, "levenshtein", [a, b], capabilities: [:abort])
      end
    end
  end

  describe "port (throws through env.abort)" do
    setup do
      %{wasm: read!("assemblyscript/port")}
    end

    test "imports env.abort only" do
      assert imports!("assemblyscript/port") == @abort
    end

    test "parses a port number", %{wasm: wasm} do
      assert {:ok, 8080, _} = Munition.fire(wasm, "parse_port", ["8080"], capabilities: [:abort])
      assert {:ok, 443, _} = Munition.fire(wasm, "parse_port", [" 443\n"], capabilities: [:abort])
    end

    test "a throw is an :abort trap with the message, the file and the line", %{wasm: wasm} do
      assert {:crash, :trap, dump} = Munition.fire(wasm, "parse_port", ["80x"], capabilities: [:abort])

      assert dump.trap == :abort
      assert dump.message =~ ~r/not a port number: 80x at port\.ts:\d+:\d+/
      assert [%{func_name: "port/parse_port"} | _] = dump.backtrace
      assert dump.capabilities == [:abort]
    end

    test "every kind of bad input has its own message", %{wasm: wasm} do
      for {input, message} <- [
            {"", "empty port"},
            {"70000", "port out of range: 70000"},
            {"0", "port 0 is reserved"}
          ] do
        assert {:crash, :trap, %{trap: :abort, message: got}} =
                 Munition.fire(wasm, "parse_port", [input], capabilities: [:abort])

        assert got =~ "abort: #{message} at port.ts:"
      end
    end
  end
end

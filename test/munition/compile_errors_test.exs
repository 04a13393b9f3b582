defmodule Munition.CompileErrorsTest do
  use ExUnit.Case, async: true

  test "bytes with a NUL that are not a wasm binary are refused at once, naming the offset" do
    assert {:error, {:invalid_module, message}} = Munition.compile(:binary.copy(<<0>>, 4 * 1024 * 1024))
    assert message == "neither a wasm binary (no \\0asm header) nor WAT text (a NUL byte at offset 0)"

    assert {:error, {:invalid_module, "neither a wasm binary" <> _}} =
             Munition.fire("(module)" <> <<0>>, "f", [])
  end

  test "an error message never echoes a huge input whole" do
    # One line of WAT, 1 MiB long: the parser quotes the line.
    line = "(module (func " <> String.duplicate("x", 1024 * 1024) <> "))"
    assert {:error, {:invalid_module, message}} = Munition.compile(line)
    assert byte_size(message) <= 4096 + 64
    assert message =~ ~r/more bytes cut\)$/
  end
end

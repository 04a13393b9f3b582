Code.require_file("guests.exs", __DIR__)

defmodule Munition.Guests.EnginesTest do
  # The guests of real toolchains that need no WASI, on both engines: the
  # same bytes in give the same bytes out (or the same crash). The WASI
  # commands are Wasmtime's alone (Munition.Runtime.Wasmi refuses WASI).
  use ExUnit.Case, async: true

  import Munition.Guests, only: [read!: 1]

  alias Munition.Runtime.{Wasmi, Wasmtime}

  # Each guest, its function, its inputs and its capabilities.
  @cases [
    {"c/rot13", "rot13", [["Hello, World! 42"], [<<0, 255, "aBc", 10>>], [""]], []},
    {"rust/reverse_words", "reverse_words", [["one two three"], ["  a\tb\n\nc\xFF  "]], []},
    {"zig/base64", "base64_encode", [["any carnal pleasure."], [<<0, 1, 2, 255>>]], []},
    {"assemblyscript/text", "slugify", [["Hello, World!"], ["  Ünïcödé  x  "]], [:abort]}
  ]

  for {guest, function, inputs, capabilities} <- @cases do
    test "#{guest} gives the same results on both engines" do
      wasm = read!(unquote(guest))

      for args <- unquote(Macro.escape(inputs)) do
        on = fn runtime ->
          Munition.fire(wasm, unquote(function), args,
            result: :binary,
            capabilities: unquote(capabilities),
            runtime: runtime
          )
        end

        assert {:ok, out, _} = on.(Wasmtime)
        assert {:ok, ^out, _} = on.(Wasmi)
      end
    end
  end

  test "a guest's throw is the same :abort crash with the same message on both engines" do
    wasm = read!("assemblyscript/port")

    on = fn runtime ->
      Munition.fire(wasm, "parse_port", ["80x"], capabilities: [:abort], runtime: runtime)
    end

    assert {:crash, :trap, %{trap: :abort, message: message}} = on.(Wasmtime)
    assert {:crash, :trap, %{trap: :abort, message: ^message}} = on.(Wasmi)
  end
end

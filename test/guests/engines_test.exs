Code.require_file("guests.exs", __DIR__)

defmodule Munition.Guests.EnginesTest do
  # The guests of real toolchains on both engines: the same bytes in give the
  # same bytes out (or the same crash), WASI commands included (Wasmi runs
  # WASI without files; none of these opens one).
  #
  # Not async: it compiles the same large guests as the other guest tests
  # (QuickJS's reactor among them) on both engines, and on 2 cores those
  # compilations, sharing Munition's compile threads with the async tests',
  # could outwait a call's deadline. Run after them, each finds its module
  # compiled or a compile thread free.
  use ExUnit.Case, async: false

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

  # Each WASI command and its :wasi options.
  @commands [
    {"c/upper", [stdin: "hello, world!\nété 42\n"]},
    {"c/upper", [stdin: :binary.copy("abcdefgh", 2_000)]},
    {"c/checked_sum", [stdin: "40\n\n-8\n10\n"]},
    {"c/checked_sum", [stdin: "1\n2\nthree\n4\n"]},
    {"rust/wc", [args: ["wc", "-l"], stdin: "a\nb\nc\n"]},
    {"rust/wc", [args: ["wc", "-x"]]},
    {"rust/parse_config", [stdin: "# settings\nb = two words\n\na=1\n"]},
    {"rust/parse_config", [stdin: "a = 1\noops\n"]}
  ]

  test "WASI commands give the same exit code, stdout and stderr (or crash) on both engines" do
    for {guest, wasi} <- @commands do
      wasm = read!(guest)

      on = fn runtime ->
        case Munition.run(wasm, capabilities: [:wasi], wasi: wasi, runtime: runtime, timeout: 60_000) do
          {:ok, code, meta} -> {:ok, code, meta.stdout, meta.stderr}
          {:crash, reason, dump} -> {:crash, reason, dump.trap, dump.stdout, dump.stderr}
        end
      end

      assert on.(Wasmi) == on.(Wasmtime), "#{guest} #{inspect(wasi)}"
    end
  end

  test "the QuickJS reactor evaluates the same on both engines" do
    wasm = read!("interpreters/quickjs_reactor")

    for script <- ["[1, 2, 3].reduce((a, b) => a + b) * 7", ~s|JSON.stringify({rule: "DE"})|] do
      on = fn runtime ->
        Munition.fire(wasm, "eval", [script],
          result: :binary,
          capabilities: [:wasi],
          runtime: runtime,
          timeout: 60_000
        )
      end

      assert {:ok, out, _} = on.(Wasmtime)
      assert {:ok, ^out, _} = on.(Wasmi)
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

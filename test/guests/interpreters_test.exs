Code.require_file("guests.exs", __DIR__)

defmodule Munition.Guests.InterpretersTest do
  # QuickJS-ng built with Debian's clang and wasi-libc from the sources in
  # the rquickjs-sys crate (examples/guests/interpreters, tools/build_interpreters.sh):
  # a WASI command and a reactor following the binary ABI. Real code of real
  # size: an interpreter's start-up costs millions of units of fuel.
  #
  # Not async, and compiled once up front with a bound of its own: compiling
  # QuickJS takes seconds of both cores, which would hold up the compile
  # queue under the default deadlines of the async tests running beside it.
  use ExUnit.Case, async: false

  import Munition.Guests, only: [read!: 1, imports!: 1]

  @runtimes [Munition.Runtime.Wasmtime, Munition.Runtime.Wasmi]

  setup_all do
    compile = fn name, runtime ->
      {:ok, module} = Munition.compile(read!("interpreters/" <> name), runtime: runtime, timeout: 300_000)
      module
    end

    %{
      commands: Map.new(@runtimes, &{&1, compile.("quickjs", &1)}),
      reactor: compile.("quickjs_reactor", Munition.Runtime.Wasmtime)
    }
  end

  # The command on every engine (the reactor below is compared across the
  # engines in engines_test.exs).
  for runtime <- @runtimes do
    describe "quickjs (a WASI command) on #{inspect(runtime)}" do
      @runtime runtime

      setup %{commands: commands} do
        %{wasm: Map.fetch!(commands, @runtime)}
      end

      test "imports stdio, clocks, arguments and exit only: no file functions" do
        assert Enum.sort(imports!("interpreters/quickjs")) ==
                 Enum.sort(
                   for name <-
                         ~w(args_get args_sizes_get clock_time_get fd_close fd_fdstat_get fd_read fd_seek fd_write proc_exit),
                       do: {"wasi_snapshot_preview1", name}
                 )
      end

      test "prints with the ordinary :wasi grant", %{wasm: wasm} do
        assert {:ok, 0, %{stdout: "2\n", stderr: ""} = meta} =
                 Munition.run(wasm,
                   runtime: @runtime,
                   capabilities: [:wasi],
                   wasi: [args: ["quickjs", "-e", "print(1 + 1)"]]
                 )

        # Start-up is most of it: the figure the snapshots issue starts from.
        assert meta.fuel_consumed > 100_000
      end

      test "reads its script from stdin", %{wasm: wasm} do
        script = "const rows = [3, 1, 2].sort(); print(JSON.stringify(rows), typeof BigInt(1))"

        assert {:ok, 0, %{stdout: "[1,2,3] bigint\n"}} =
                 Munition.run(wasm,
                   runtime: @runtime,
                   capabilities: [:wasi],
                   wasi: [args: ["quickjs"], stdin: script]
                 )
      end

      test "an uncaught exception is exit code 1 with the message on stderr", %{wasm: wasm} do
        assert {:ok, 1, %{stdout: "", stderr: stderr}} =
                 Munition.run(wasm,
                   runtime: @runtime,
                   capabilities: [:wasi],
                   wasi: [args: ["quickjs", "-e", "throw new TypeError('no such rule')"]]
                 )

        assert stderr =~ "TypeError: no such rule"
      end

      test "an endless loop ends on its fuel, with a dump", %{wasm: wasm} do
        assert {:crash, :fuel_exhausted, dump} =
                 Munition.run(wasm,
                   runtime: @runtime,
                   capabilities: [:wasi],
                   fuel: 20_000_000,
                   wasi: [args: ["quickjs", "-e", "print('started'); for (;;) {}"]]
                 )

        assert dump.stdout == "started\n"
        assert dump.fuel_consumed + dump.fuel_remaining == 20_000_000

        # Wasmi stops when what is left cannot pay for the guest's next step
        # (guides/engines.md, "What differs on Wasmi").
        if @runtime == Munition.Runtime.Wasmi,
          do: assert(dump.fuel_remaining < 100_000),
          else: assert(dump.fuel_remaining == 0)
      end
    end
  end

  describe "quickjs_reactor (binary ABI)" do
    setup %{reactor: reactor} do
      %{wasm: reactor}
    end

    test "eval returns a script's value as a string", %{wasm: wasm} do
      assert {:ok, "42", _} =
               Munition.fire(wasm, "eval", ["[1, 2, 3].reduce((a, b) => a + b) * 7"],
                 result: :binary,
                 capabilities: [:wasi]
               )

      assert {:ok, ~s({"rule":"DE","limit":1200}), _} =
               Munition.fire(wasm, "eval", [~s|JSON.stringify({rule: "DE", limit: 1200})|],
                 result: :binary,
                 capabilities: [:wasi]
               )
    end

    test "every call starts from nothing: no state survives a call", %{wasm: wasm} do
      assert {:ok, "0", _} =
               Munition.fire(wasm, "eval", ["globalThis.n = (globalThis.n || 0); String(n++)"],
                 result: :binary,
                 capabilities: [:wasi]
               )

      assert {:ok, "0", _} =
               Munition.fire(wasm, "eval", ["globalThis.n = (globalThis.n || 0); String(n++)"],
                 result: :binary,
                 capabilities: [:wasi]
               )
    end

    test "an exception traps, its message in the dump's stderr", %{wasm: wasm} do
      assert {:crash, :trap, dump} =
               Munition.fire(wasm, "eval", ["null.rule"], result: :binary, capabilities: [:wasi])

      assert dump.trap == :unreachable
      assert dump.stderr =~ "TypeError"
    end
  end
end

Code.require_file("guests.exs", __DIR__)

defmodule Munition.Guests.InterpretersTest do
  # QuickJS-ng built with Debian's clang and wasi-libc from the sources in
  # the rquickjs-sys crate (examples/guests/interpreters, tools/build_interpreters.sh):
  # a WASI command and a reactor following the binary ABI, and QuickJS-ng's
  # own qjs with quickjs-libc, whose std and os modules import files. Real
  # code of real size: an interpreter's start-up costs millions of units of fuel.
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
      qjs: Map.new(@runtimes, &{&1, compile.("qjs", &1)}),
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

  # qjs imports what wasi-libc's fopen, rename, remove, mkdir, utimes and
  # opendir need: under :wasi they are linked inert (see Munition.Host.WASI,
  # "Files the guest cannot reach"), and files take a preopen and :wasi_fs.
  @file_functions ~w(fd_fdstat_set_flags fd_readdir path_create_directory path_filestat_get) ++
                    ~w(path_filestat_set_times path_open path_remove_directory path_rename path_unlink_file)

  # `qjs --std -e script` (std and os as globals) on `runtime`; its start-up
  # is about 3.4 M units of fuel on Wasmtime, 14 M on Wasmi.
  defp qjs(wasm, runtime, script, capabilities, preopens \\ []) do
    Munition.run(wasm,
      runtime: runtime,
      fuel: 200_000_000,
      capabilities: capabilities,
      wasi: [args: ["qjs", "--std", "-e", script], preopens: preopens]
    )
  end

  for runtime <- @runtimes do
    describe "qjs (QuickJS-ng's own command, with quickjs-libc) on #{inspect(runtime)}" do
      @runtime runtime

      setup %{qjs: qjs} do
        dir = Munition.Tmp.path("qjs")

        File.rm_rf!(dir)
        File.mkdir_p!(dir)
        File.write!(Path.join(dir, "hello.txt"), "file contents")
        on_exit(fn -> File.rm_rf!(dir) end)
        %{wasm: Map.fetch!(qjs, @runtime), dir: dir}
      end

      test "imports the file functions of quickjs-libc besides stdio" do
        assert Enum.sort(imports!("interpreters/qjs")) ==
                 Enum.sort(
                   for name <-
                         ~w(args_get args_sizes_get environ_get environ_sizes_get clock_time_get fd_close) ++
                           ~w(fd_fdstat_get fd_prestat_get fd_prestat_dir_name fd_read fd_seek fd_write) ++
                           ~w(poll_oneoff proc_exit) ++ @file_functions,
                       do: {"wasi_snapshot_preview1", name}
                 )
      end

      test "prints 2 with the ordinary :wasi grant, its file functions linked inert", %{wasm: wasm} do
        assert Munition.validate(wasm, runtime: @runtime, capabilities: [:wasi]) == :ok

        assert {:ok, 0, %{stdout: "2\n", stderr: "", inert_links: inert_links}} =
                 qjs(wasm, @runtime, "print(1 + 1)", [:wasi])

        assert Enum.sort(Enum.map(inert_links, & &1.name)) == @file_functions
        assert Enum.all?(inert_links, &(&1.module == "wasi_snapshot_preview1"))

        assert inert_links |> Enum.filter(&(&1.reason == :no_preopen)) |> Enum.map(& &1.name) |> Enum.sort() ==
                 ~w(fd_fdstat_set_flags fd_readdir path_filestat_get path_open)

        # Nothing is linked inert once both file capabilities are granted.
        assert {:ok, 0, %{stdout: "2\n", inert_links: []}} =
                 qjs(wasm, @runtime, "print(1 + 1)", [:wasi, :wasi_fs, :wasi_fs_write])
      end

      test "reads a file only under a preopen granted with :wasi_fs", %{wasm: wasm, dir: dir} do
        script = ~s{print(std.loadFile("/data/hello.txt"))}
        preopens = [{"/data", dir}]

        assert {:ok, 0, %{stdout: "file contents\n"}} =
                 qjs(wasm, @runtime, script, [:wasi, :wasi_fs], preopens)

        # The preopen given without :wasi_fs is not given: no file is found.
        assert {:ok, 0, %{stdout: "null\n", inert_links: [_ | _]}} =
                 qjs(wasm, @runtime, script, [:wasi], preopens)
      end

      test "writes, makes directories and removes only with :wasi_fs_write and a :read_write preopen",
           %{wasm: wasm, dir: dir} do
        script = ~S"""
        const f = std.open("/data/out.txt", "w");
        if (f) { f.puts("written"); f.close(); }
        print(f ? "opened" : "refused", os.remove("/data/hello.txt"), os.mkdir("/data/d"))
        """

        preopens = [{"/data", dir, :read_write}]

        # No directory at all: wasi-libc finds no preopen for the path
        # (ENOTCAPABLE) and never asks the host.
        assert {:ok, 0, %{stdout: "refused -76 -76\n"}} = qjs(wasm, @runtime, script, [:wasi], preopens)

        # A read-only directory: EPERM from the host's side.
        assert {:ok, 0, %{stdout: "refused -63 -63\n", inert_links: inert_links}} =
                 qjs(wasm, @runtime, script, [:wasi, :wasi_fs], preopens)

        assert Enum.all?(inert_links, &(&1.needs == :wasi_fs_write and &1.reason == :no_writable_preopen))
        assert File.ls!(dir) == ["hello.txt"]

        assert {:ok, 0, %{stdout: "opened 0 0\n"}} =
                 qjs(wasm, @runtime, script, [:wasi, :wasi_fs, :wasi_fs_write], preopens)

        assert File.read!(Path.join(dir, "out.txt")) == "written"
        assert File.dir?(Path.join(dir, "d"))
        refute File.exists?(Path.join(dir, "hello.txt"))
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

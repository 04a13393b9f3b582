defmodule Munition.RunTest do
  # Munition.run/2: a WASI command's _start, with every option of fire/4.
  use ExUnit.Case, async: true

  alias Munition.Forensics.Dump

  @spin """
  (module
    (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
    (memory (export "memory") 1)
    (data (i32.const 16) "started")
    (func (export "_start")
      (i32.store (i32.const 0) (i32.const 16)) (i32.store (i32.const 4) (i32.const 7))
      (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
      (loop $forever (br $forever))))
  """

  @grow """
  (module (memory (export "memory") 1)
    (func (export "_start") (drop (memory.grow (i32.const 100)))))
  """

  # The same contract on every engine.
  for runtime <- [Munition.Runtime.Wasmtime, Munition.Runtime.Wasmi] do
    describe "run/2 on #{inspect(runtime)}" do
      @runtime runtime

      test "fuel bounds a command, and the dump has its output so far" do
        assert {:crash, :fuel_exhausted,
                %Dump{stdout: "started", stdout_truncated: false, function: "_start"}} =
                 Munition.run(@spin, runtime: @runtime, capabilities: [:wasi], fuel: 100_000)
      end

      test "the deadline bounds a command" do
        assert {:crash, :timeout, %Dump{trap: :interrupt, stdout: "started"}} =
                 Munition.run(@spin,
                   runtime: @runtime,
                   capabilities: [:wasi],
                   fuel: 10_000_000_000,
                   timeout: 50
                 )
      end

      test "max_memory bounds a command" do
        assert {:crash, :memory_limit, _} = Munition.run(@grow, runtime: @runtime, max_memory: 65_536 * 10)
        assert {:ok, 0, %{exit_code: 0}} = Munition.run(@grow, runtime: @runtime)
      end

      test "forensics: false returns no dump; dump_dir writes one with the output" do
        assert {:crash, :fuel_exhausted, nil} =
                 Munition.run(@spin, runtime: @runtime, capabilities: [:wasi], fuel: 100_000, forensics: false)

        dir = Munition.Tmp.path("run")

        on_exit(fn -> File.rm_rf!(dir) end)

        assert {:crash, :fuel_exhausted, _} =
                 Munition.run(@spin, runtime: @runtime, capabilities: [:wasi], fuel: 100_000, dump_dir: dir)

        assert [file] = File.ls!(dir)
        assert {:ok, %Dump{stdout: "started", stderr: ""}} = Dump.read(Path.join(dir, file))
      end

      test "a command without a WASI configuration returns its exit code and no output keys" do
        assert {:ok, 0, meta} = Munition.run(~s{(module (func (export "_start")))}, runtime: @runtime)

        assert meta.exit_code == 0
        refute Map.has_key?(meta, :stdout)
      end

      test "a caller's mistake raises, nothing runs" do
        assert_raise ArgumentError, ~r/unknown keys \[:nope\]/, fn ->
          Munition.run(@grow, runtime: @runtime, nope: 1)
        end

        assert_raise ArgumentError, ~r/unknown capability: :wasi_net/, fn ->
          Munition.run(@grow, runtime: @runtime, capabilities: [:wasi_net])
        end
      end
    end
  end
end

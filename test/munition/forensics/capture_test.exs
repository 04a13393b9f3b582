defmodule Munition.Forensics.CaptureTest do
  use ExUnit.Case, async: true
  import Bitwise

  alias Munition.Forensics.{Capture, Dump}
  alias Munition.Instance.State
  alias Munition.Runtime.Wasmtime

  @version Mix.Project.config()[:version]

  @guest """
  (module
    (memory (export "memory") 1)
    (data (i32.const 16) "secret")
    (global $g (mut i32) (i32.const 1))
    (func $inner (global.set $g (i32.const 2)) unreachable)
    (func (export "run") (param i32) call $inner))
  """

  # A runtime that cannot read the store it is asked about, nor say its version.
  defmodule Blind do
    def capture(_instance, _mode), do: {:error, {:invalid_state, "no such store"}}
    def info, do: raise("no native library")
  end

  defp state(module, fields \\ []) do
    struct!(
      State,
      [
        module: module,
        function: "run",
        args: [41],
        runtime: Wasmtime,
        fuel: 100_000,
        timeout: 60_000,
        max_memory: 1 <<< 20,
        capabilities: [:time]
      ] ++ fields
    )
  end

  # A store whose guest has just trapped, released when the test is over.
  defp crashed(state) do
    assert {:ok, instance, :ready} = Wasmtime.instantiate(state.module, state)
    on_exit(fn -> Wasmtime.cleanup(instance) end)
    assert Wasmtime.call(instance, "run", [41]) == {:ok, {:crashed, :trap}}
    instance
  end

  describe "capture/3" do
    test "reads the failed store, with the call's context" do
      {:ok, module} = Munition.compile(@guest)
      state = state(module)
      instance = crashed(state)

      assert %Dump{} = dump = Capture.capture(state, instance, :full)

      assert %Dump{
               reason: :trap,
               trap: :unreachable,
               message: "wasm trap: wasm `unreachable` instruction executed",
               backtrace: [%{func_index: 0}, %{func_index: 1} | _],
               fuel_given: 100_000,
               memories: [%{index: 0, pages: 1, size: 65_536, data: data}],
               globals: [%{index: 0, type: :i32, mutable: true, value: 2, export: nil}],
               log: [],
               module_hash: hash,
               imports: [],
               exports: exports,
               function: "run",
               args: [41],
               capabilities: [:time],
               wasmtime_version: "48.0.8",
               munition_version: @version,
               captured_at: %DateTime{}
             } = dump

      assert hash == module.hash
      assert exports == module.exports
      assert is_binary(data)
      assert dump.fuel_consumed > 0 and dump.fuel_consumed + dump.fuel_remaining == 100_000
      assert {:ok, memory} = Dump.memory(dump)
      assert binary_part(memory, 16, 6) == "secret"
    end

    test ":minimal leaves the memory bytes out" do
      {:ok, module} = Munition.compile(@guest)
      state = state(module)
      dump = Capture.capture(state, crashed(state), :minimal)
      assert %Dump{trap: :unreachable, memories: [%{index: 0, pages: 1, data: nil}]} = dump
      assert Dump.memory(dump) == {:error, :not_captured}
    end

    test "a store that cannot be read still gives a dump, saying why" do
      {:ok, module} = Munition.compile(@guest)
      instance = crashed(state(module))
      :ok = Wasmtime.cleanup(instance)

      assert %Dump{
               reason: nil,
               message: "capture failed: instance was cleaned up",
               memories: [],
               function: "run",
               fuel_given: 100_000
             } = Capture.capture(state(module), instance, :full)
    end

    test "never raises, even when the runtime cannot say its version" do
      {:ok, module} = Munition.compile(@guest)

      assert %Dump{message: "capture failed: no such store", wasmtime_version: nil, function: "run"} =
               Capture.capture(state(module, runtime: Blind), :no_instance, :full)
    end
  end

  describe "without_store/4" do
    test "records the context and the reason of a failure that left no store" do
      {:ok, module} = Munition.compile(@guest)

      assert %Dump{
               reason: :timeout,
               trap: :interrupt,
               message: "abandoned",
               fuel_given: 100_000,
               fuel_consumed: 0,
               backtrace: [],
               memories: [],
               globals: [],
               module_hash: hash,
               function: "run",
               args: [41],
               capabilities: [:time],
               wasmtime_version: "48.0.8",
               munition_version: @version,
               captured_at: %DateTime{}
             } = Capture.without_store(state(module), :timeout, :interrupt, "abandoned")

      assert hash == module.hash
    end

    test "without a version from the runtime" do
      {:ok, module} = Munition.compile(@guest)

      assert %Dump{wasmtime_version: nil, reason: :timeout} =
               Capture.without_store(state(module, runtime: Blind), :timeout, :interrupt, "abandoned")
    end
  end
end

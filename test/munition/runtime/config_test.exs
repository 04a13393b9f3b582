defmodule Munition.Runtime.ConfigTest do
  # Changes the application environment: not async.
  use ExUnit.Case, async: false
  import Munition.AppEnv
  import ExUnit.CaptureLog

  alias Munition.Runtime.Config

  test "reports the engine's version and features" do
    assert %{engine: :wasmtime, version: "48.0.8", features: features} = Config.features()
    assert Enum.sort(features) == [:coredump, :epochs, :fibers, :fuel, :pooling]
    for feature <- features, do: assert(Config.feature?(feature))
    refute Config.feature?(:threads)
  end

  test "defaults come from the application environment" do
    put_env(:default_timeout, 50)

    spin = ~s{(module (func (export "f") (loop br 0)))}
    assert {:crash, :timeout, _} = Munition.fire(spin, "f", [], fuel: 1_000_000_000_000)
  end

  test "the compiled-module cache is bounded by :module_cache_size" do
    put_env(:module_cache_size, 2)

    for n <- 1..5,
        do: {:ok, _} = Munition.compile(~s{(module (func (export "f") (result i32) i32.const #{n}))})

    assert {entries, 2, _compilations} = Munition.Runtime.Wasmtime.cache_stats()
    assert entries <= 2
  end

  test "a second fire of the same bytes does not compile again" do
    wat = ~s{(module (func (export "f") (result i32) i32.const #{System.unique_integer([:positive])}))}
    {_, _, before} = Munition.Runtime.Wasmtime.cache_stats()
    assert {:ok, _, %{module_hash: hash}} = Munition.fire(wat, "f", [])
    assert {:ok, _, %{module_hash: ^hash}} = Munition.fire(wat, "f", [])
    assert {:ok, _} = Munition.compile(wat)
    assert {_, _, after_} = Munition.Runtime.Wasmtime.cache_stats()
    assert after_ - before == 1
  end

  test "guest logs are forwarded to Logger when asked" do
    put_env(:forward_guest_logs, true)

    wat = """
    (module (import "munition" "log" (func $log (param i32 i32 i32))) (memory (export "memory") 1)
      (data (i32.const 0) "careful now") (func (export "f") (call $log (i32.const 2) (i32.const 0) (i32.const 11))))
    """

    log = capture_log(fn -> assert {:ok, nil, _} = Munition.fire(wat, "f", [], capabilities: [:log]) end)
    assert log =~ "careful now"
    assert log =~ "[warning]" or log =~ "[warn]"
  end
end

defmodule Munition.PoolPreparedTest do
  # A pooled call's overrides are checked once and reused (Munition.Pool's
  # prepared/2), except those whose check reads more than the options: the
  # application environment, or the file system. The environment changes here, so nothing else may run.
  use ExUnit.Case, async: false

  @grow ~s{(module (memory 1) (func (export "f") (result i32) (memory.grow (i32.const 1))))}

  test "an override of nil takes the configured value as it is at each call" do
    name = :pool_prepared_test
    start_supervised!({Munition.Pool, name: name, wasm: @grow, max_memory: 65_536})

    # nil is the configured default (64 MiB), over the pool's.
    assert {:crash, :memory_limit, _} = Munition.fire_pooled(name, "f", [])
    assert {:ok, 1, _} = Munition.fire_pooled(name, "f", [], max_memory: nil)

    Munition.AppEnv.with_env(:default_max_memory, 65_536, fn ->
      assert {:crash, :memory_limit, _} = Munition.fire_pooled(name, "f", [], max_memory: nil)
    end)

    assert {:ok, 1, _} = Munition.fire_pooled(name, "f", [], max_memory: nil)
  end

  test "a preopened directory given to a pooled call is checked on every call" do
    name = :pool_prepared_preopens_test
    start_supervised!({Munition.Pool, name: name, wasm: @grow, capabilities: [:wasi]})

    dir = Munition.Tmp.path("pool-prepared")

    File.mkdir_p!(dir)
    opts = [wasi: [preopens: [{"/data", dir}]]]
    assert {:ok, 1, _} = Munition.fire_pooled(name, "f", [], opts)
    File.rm_rf!(dir)
    assert_raise ArgumentError, ~r/existing directories/, fn -> Munition.fire_pooled(name, "f", [], opts) end
  end
end

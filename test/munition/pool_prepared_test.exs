defmodule Munition.PoolPreparedTest do
  # A pooled call's overrides are checked once and reused (Munition.Pool's
  # prepared/2), except those whose check reads the application
  # environment. The environment changes here, so nothing else may run.
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
end

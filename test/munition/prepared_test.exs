defmodule Munition.PreparedTest do
  # fire/4 reuses a caller's last preparation (options checked, imports
  # linked, the State built): only when nothing it depends on changed. The
  # application environment changes here, so nothing else may run.
  use ExUnit.Case, async: false

  @clock ~s{(module (import "munition" "get_time_ms" (func $t (result i64)))
    (func (export "f") (result i32) (drop (call $t)) (i32.const 1)))}
  @grow ~s{(module (memory 1) (func (export "f") (result i32) (memory.grow (i32.const 1))))}
  @double ~s{(module (import "env" "g" (func $g (param i32) (result i32)))
    (func (export "f") (result i32) (call $g (i32.const 21))))}

  test "another grant, another module or other options are prepared afresh" do
    {:ok, clock} = Munition.compile(@clock)
    {:ok, grow} = Munition.compile(@grow)

    for _ <- 1..2 do
      assert {:ok, 1, _} = Munition.fire(clock, "f", [], capabilities: [:time])
      assert {:error, {:capability_denied, [%{needs: :time}]}} = Munition.fire(clock, "f", [])
      assert {:ok, 1, _} = Munition.fire(grow, "f", [])
      assert {:crash, :memory_limit, _} = Munition.fire(grow, "f", [], max_memory: 65_536)
    end
  end

  test "a change of the application environment is seen by the next call" do
    {:ok, grow} = Munition.compile(@grow)
    assert {:ok, 1, _} = Munition.fire(grow, "f", [])

    Munition.AppEnv.with_env(:default_max_memory, 65_536, fn ->
      assert {:crash, :memory_limit, _} = Munition.fire(grow, "f", [])
    end)

    assert {:ok, 1, _} = Munition.fire(grow, "f", [])
  end

  test "a preopened directory is checked on every call" do
    {:ok, grow} = Munition.compile(@grow)
    dir = Path.join(System.tmp_dir!(), "munition-prepared-#{System.unique_integer([:positive])}")
    File.mkdir_p!(dir)
    opts = [capabilities: [:wasi], wasi: [preopens: [{"/data", dir}]]]
    assert {:ok, 1, _} = Munition.fire(grow, "f", [], opts)
    File.rm_rf!(dir)
    assert_raise ArgumentError, ~r/existing directories/, fn -> Munition.fire(grow, "f", [], opts) end
  end

  test "a host function registered again by its name is the one called" do
    {:ok, double} = Munition.compile(@double)
    opts = [host_functions: [:prepared_test_g], capabilities: [:math]]

    try do
      :ok =
        Munition.Host.Functions.register(
          :prepared_test_g,
          {"env", "g", {[:i32], [:i32]}, :math, fn _, x -> 2 * x end}
        )

      assert {:ok, 42, _} = Munition.fire(double, "f", [], opts)

      :ok =
        Munition.Host.Functions.register(
          :prepared_test_g,
          {"env", "g", {[:i32], [:i32]}, :math, fn _, x -> 3 * x end}
        )

      assert {:ok, 63, _} = Munition.fire(double, "f", [], opts)
    after
      Munition.Host.Functions.unregister(:prepared_test_g)
    end
  end
end

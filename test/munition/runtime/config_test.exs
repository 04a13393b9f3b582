defmodule Munition.Runtime.ConfigTest do
  # Changes the application environment: not async.
  use ExUnit.Case, async: false
  import Munition.AppEnv
  import ExUnit.CaptureLog

  alias Munition.Runtime.Config

  # A runtime as far as Config asks one.
  defmodule Engine do
    def info, do: %{engine: :fake, version: "0", features: [:wings]}
  end

  test "reports the engine's version and features" do
    assert %{engine: :wasmtime, version: "48.0.8", features: features} = Config.features()
    assert Enum.sort(features) == [:coredump, :fibers, :fuel, :pooling]
    for feature <- features, do: assert(Config.feature?(feature))
    refute Config.feature?(:threads)
  end

  test "defaults come from the application environment" do
    put_env(:default_timeout, 50)

    spin = ~s{(module (func (export "f") (loop br 0)))}
    assert {:crash, :timeout, _} = Munition.fire(spin, "f", [], fuel: 1_000_000_000_000)
  end

  test "runtime/0 is Munition.Runtime.Wasmtime unless configured" do
    assert Config.runtime() == Munition.Runtime.Wasmtime
    put_env(:runtime, SomeOther.Runtime)
    assert Config.runtime() == SomeOther.Runtime
  end

  test "each setting has its default, and the application environment overrides it" do
    for {key, fun, default, configured} <- [
          {:module_cache_size, &Config.module_cache_size/0, 128, 3},
          {:default_timeout, &Config.default_timeout/0, 5_000, 70},
          {:default_max_memory, &Config.default_max_memory/0, 64 * 1024 * 1024, 65_536},
          {:log_limit, &Config.log_limit/0, 65_536, 10},
          {:forward_guest_logs, &Config.forward_guest_logs?/0, false, true},
          {:dump_dir, &Config.dump_dir/0, nil, "/tmp/dumps"}
        ] do
      assert Application.fetch_env(:munition, key) == :error, "#{key} is set in the test environment"
      assert fun.() == default
      put_env(key, configured)
      assert fun.() == configured
    end
  end

  test "features/1 and feature?/2 ask the runtime given" do
    assert Config.features(Engine) == %{engine: :fake, version: "0", features: [:wings]}
    assert Config.feature?(:wings, Engine)
    refute Config.feature?(:fuel, Engine)
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

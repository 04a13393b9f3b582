defmodule Munition.ApplicationTest do
  # Changes the application environment: not async.
  use ExUnit.Case, async: false
  import Munition.AppEnv
  import ExUnit.CaptureLog

  alias Munition.Runtime.Config

  # A runtime with settings of its own: it tells the test what it was given.
  defmodule Configurable do
    use Munition.DelegatingRuntime

    @impl true
    def configure(settings) do
      send(self(), {:configured, __MODULE__, settings})
      :ok
    end
  end

  defmodule Unfit do
    use Munition.DelegatingRuntime

    @impl true
    def configure(_settings), do: {:error, {:bad_config, "max_instances: 10 does not fit"}}
  end

  defmodule Built do
    use Munition.DelegatingRuntime

    @impl true
    def configure(_settings), do: {:error, {:too_late, "too late: built already"}}

    @impl true
    def info, do: %{engine: :built, max_instances: 3}
  end

  # No configure/1: the callback is optional.
  defmodule Plain do
    use Munition.DelegatingRuntime, optional: false
  end

  describe "configure_engines/2" do
    test "configures the configured runtime with the application environment's capacity" do
      put_env(:runtime, Configurable)
      put_env(:max_concurrent_compiles, 2)

      assert Config.runtimes() == [Configurable, Munition.Runtime.Wasmtime, Munition.Runtime.Wasmi]
      # Wasmtime's engine is built already, with another count: it warns.
      capture_log(fn -> assert Munition.Application.configure_engines() == :ok end)

      assert_received {:configured, Configurable,
                       %{max_instances: _, max_memories_per_module: _, max_concurrent_compiles: 2}}
    end

    test "calls configure/1 of every runtime that has it, once each, and skips those without" do
      settings = %{max_instances: nil, max_memories_per_module: nil, max_concurrent_compiles: nil}
      assert Munition.Application.configure_engines([Plain, Configurable], settings) == :ok
      assert_received {:configured, Configurable, ^settings}
      refute_received {:configured, _, _}
    end

    test "a capacity the machine cannot hold stops the start: the first :bad_config" do
      assert Munition.Application.configure_engines([Plain, Unfit, Configurable], %{max_instances: 10}) ==
               {:error, {:bad_config, "max_instances: 10 does not fit"}}

      refute_received {:configured, _, _}
    end

    test "an engine built already keeps its capacity, with a warning only when it differs" do
      assert capture_log(fn ->
               assert Munition.Application.configure_engines([Built], %{max_instances: 3, other: 9}) == :ok
             end) == ""

      assert capture_log(fn ->
               assert Munition.Application.configure_engines([Built], %{max_instances: 4}) == :ok
             end) =~ "Munition's engine capacity is unchanged (Munition.ApplicationTest.Built): too late"
    end

    test "Munition's own runtime is configured through the callback: built already in a running node" do
      assert function_exported?(Munition.Runtime.Wasmtime, :configure, 1)
      assert Munition.Application.configure_engines(Config.runtimes(), Config.engine!()) == :ok
    end
  end
end

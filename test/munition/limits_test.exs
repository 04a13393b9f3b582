defmodule Munition.LimitsTest do
  # The engine's capacity: configured once before the engine is built, sized
  # for the machine by default, reported by info/0. The engine of this VM was
  # built when the suite started, so other configurations are tried in VMs of
  # their own.
  use ExUnit.Case, async: false
  import Munition.AppEnv

  alias Munition.Runtime.{Config, Wasmtime}

  @gib 1024 * 1024 * 1024

  # The engine is built on first use: make sure it is, so that nothing here
  # configures this VM's engine (configure/1 succeeds until it exists).
  setup_all do
    Wasmtime.info()
    :ok
  end

  # Address space of one instance slot with `memories` memories (see the
  # moduledoc of Munition.Runtime.Config): memories of 4 GiB + a 32 MiB
  # guard, 4 tables of 784 KiB, a 2 MiB fiber stack and its guard page.
  defp per_instance(memories),
    do: memories * (4 * @gib + 32 * 1024 * 1024) + 4 * 802_816 + 2 * 1024 * 1024 + 4096

  defp rlimit_as do
    case System.cmd("sh", ["-c", "ulimit -v"]) do
      {"unlimited\n", 0} -> nil
      {kib, 0} -> String.to_integer(String.trim(kib)) * 1024
    end
  end

  describe "info/0" do
    test "reports the capacity the engine was built with: sized for the machine by default" do
      info = Wasmtime.info()

      assert %{
               max_instances: instances,
               max_memories_per_module: 4,
               max_tables_per_module: 4,
               max_table_elements: 100_000,
               max_memory_bytes: 4_294_967_296,
               max_concurrent_compiles: compiles,
               reserved_address_space: reserved
             } = info

      # The suite configures none of it: these are the defaults.
      assert Config.engine!() == %{
               max_instances: nil,
               max_memories_per_module: nil,
               max_concurrent_compiles: nil
             }

      case rlimit_as() do
        nil -> assert instances == 1_000
        limit -> assert instances == min(1_000, div(div(limit, 2) - 32 * 1024 * 1024, per_instance(4)))
      end

      assert reserved == 32 * 1024 * 1024 + instances * per_instance(4)
      assert compiles == max(div(System.schedulers_online(), 2), 1)
    end
  end

  describe "configure/1" do
    test "checks the values first, then says it is too late once the engine exists" do
      assert {:error, {:bad_config, message}} = Wasmtime.configure(%{max_instances: 0})
      assert message =~ "max_instances"

      assert {:error, {:bad_config, message}} = Wasmtime.configure(%{max_instances: 1_000_000})
      assert message =~ "max_instances of 1000000 does not fit"
      assert message =~ "room for"

      assert {:error, {:bad_config, message}} = Wasmtime.configure(%{max_memories_per_module: 17})
      assert message =~ "max_memories_per_module must be 1..16"

      assert {:error, {:bad_config, message}} = Wasmtime.configure(%{max_concurrent_compiles: 0})
      assert message =~ "max_concurrent_compiles"

      assert {:error, {:too_late, message}} = Wasmtime.configure(%{max_instances: 5})
      assert message =~ "too late"
      assert message =~ "max_instances: #{Wasmtime.info().max_instances}"
    end

    test "the application environment must hold positive integers" do
      put_env(:max_instances, -3)

      assert_raise ArgumentError, ~r/max_instances: must be a positive integer, got: -3/, fn ->
        Config.engine!()
      end

      put_env(:max_instances, 12)
      put_env(:max_concurrent_compiles, :many)
      assert_raise ArgumentError, ~r/max_concurrent_compiles/, fn -> Config.engine!() end
    end
  end

  describe "in a VM of its own" do
    # Starts a VM with the project's code, runs `script` after `setup` (Elixir
    # run before the application starts), optionally under `ulimit -v` (KiB).
    defp run_vm(script, ulimit_kib \\ nil) do
      paths =
        Path.join(Mix.Project.build_path(), "lib/*/ebin")
        |> Path.wildcard()
        |> Enum.flat_map(&["-pa", &1])

      elixir = System.find_executable("elixir")

      {command, args} =
        case ulimit_kib do
          nil -> {elixir, paths ++ ["-e", script]}
          kib -> {"sh", ["-c", ~s{ulimit -v #{kib} && exec "$0" "$@"}, elixir] ++ paths ++ ["-e", script]}
        end

      System.cmd(command, args, stderr_to_stdout: true)
    end

    @report """
    case Application.ensure_all_started(:munition) do
      {:ok, _} ->
        info = Munition.Runtime.Wasmtime.info()
        {:ok, 3, _} = Munition.fire(~s{(module (func (export "f") (result i32) i32.const 3))}, "f", [])
        IO.puts("capacity \#{info.max_instances} \#{info.max_memories_per_module} \#{info.max_concurrent_compiles}")

      {:error, reason} ->
        IO.puts("refused \#{inspect(reason)}")
    end
    """

    test "the configured capacity is what info reports" do
      setup = """
      Application.put_env(:munition, :max_instances, 7)
      Application.put_env(:munition, :max_memories_per_module, 2)
      Application.put_env(:munition, :max_concurrent_compiles, 3)
      """

      {out, status} = run_vm(setup <> @report)
      assert status == 0, out
      assert out =~ "capacity 7 2 3"
    end

    test "under ulimit -v the default fits in half of it, and the engine works" do
      # 200 GiB: half of it holds 6 instance slots of 4 memories.
      {out, status} = run_vm(@report, 200 * 1024 * 1024)
      assert status == 0, out
      assert out =~ "capacity 6 4"
    end

    test "a capacity the machine cannot hold stops the application from starting" do
      # 16 GiB: half of it holds no instance of 4 memories, but 1 of one memory.
      {out, status} = run_vm(@report, 16 * 1024 * 1024)
      assert status == 0, out
      assert out =~ ~s/refused {:munition, {{:bad_config, "no instance fits/

      {out, status} =
        run_vm("Application.put_env(:munition, :max_memories_per_module, 1)\n" <> @report, 16 * 1024 * 1024)

      assert status == 0, out
      assert out =~ "capacity 1 1"

      {out, status} = run_vm("Application.put_env(:munition, :max_instances, 100_000)\n" <> @report)
      assert status == 0, out
      assert out =~ ~s/refused {:munition, {{:bad_config, "max_instances of 100000 does not fit/
    end
  end
end

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

  test "a key set to nil is not taken for a key left unset" do
    {:ok, grow} = Munition.compile(@grow)
    assert {:ok, 1, _} = Munition.fire(grow, "f", [])

    Munition.AppEnv.with_env(:default_timeout, nil, fn ->
      assert_raise ArgumentError, ~r/timeout/, fn -> Munition.fire(grow, "f", []) end
    end)
  end

  test "a preopened directory is checked on every call" do
    {:ok, grow} = Munition.compile(@grow)

    dir = Munition.Tmp.path("prepared")

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

  test "a preparation reads no configuration but Config.preparation_keys/0, which a reuse compares" do
    # A key read more often by a caller's first call than by its second was
    # read by the preparation the second reused: it must be among the keys
    # whose values decide the reuse, or a change to it would go unseen. Each
    # call is made once before, in another process, for what only a
    # module's first call in the VM reads (the meter's first record of it).
    {:ok, clock} = Munition.compile(@clock)
    {:ok, double} = Munition.compile(@double)
    {:ok, on_wasmi} = Munition.compile(@clock, runtime: Munition.Runtime.Wasmi)
    g = {"env", "g", {[:i32], [:i32]}, :math, fn _, x -> 2 * x end}

    calls = [
      {clock, [capabilities: [:time]]},
      {clock,
       [
         capabilities: [:time, :wasi],
         fuel: :strict,
         timeout: 1_000,
         max_memory: 65_536,
         forensics: :full,
         wasi: [args: ["a"]]
       ]},
      {double,
       [capabilities: [:math], host_functions: [g], limits: [functions: 10], dump_dir: System.tmp_dir!()]},
      {on_wasmi, [capabilities: [:time], runtime: Munition.Runtime.Wasmi]},
      {clock, [capabilities: [:time], fuel: :auto]},
      {clock, [capabilities: [:time], fuel: :adaptive, result: :binary, alloc: "alloc"]}
    ]

    for {module, opts} <- calls do
      Task.await(Task.async(fn -> Munition.fire(module, "f", [], opts) end))

      [first, second] =
        Task.await(
          Task.async(fn -> for _ <- 1..2, do: config_reads(fn -> Munition.fire(module, "f", [], opts) end) end)
        )

      prepared_once = for {key, count} <- first, count > Map.get(second, key, 0), do: key

      assert :log_limit in prepared_once,
             "the second call of #{inspect(opts)} did not reuse the first's preparation"

      unnamed = prepared_once -- Munition.Runtime.Config.preparation_keys()

      assert unnamed == [],
             "a preparation reads #{inspect(unnamed)}: Config.preparation_keys/0 must name them"
    end
  end

  # How many times `fun` reads each key of the :munition configuration.
  defp config_reads(fun) do
    collector = Task.async(fn -> collect([]) end)
    readers = [{Application, :get_env, 3}, {Application, :fetch_env, 2}, {Application, :get_all_env, 1}]
    for mfa <- readers, do: :erlang.trace_pattern(mfa, true, [:local])
    :erlang.trace(self(), true, [:call, {:tracer, collector.pid}])

    try do
      fun.()
    after
      :erlang.trace(self(), false, [:call])
      for mfa <- readers, do: :erlang.trace_pattern(mfa, false, [:local])
    end

    ref = :erlang.trace_delivered(self())
    assert_receive {:trace_delivered, _, ^ref}
    send(collector.pid, :done)

    Task.await(collector)
    |> Enum.flat_map(fn
      {:trace, _, :call, {Application, :get_all_env, [:munition]}} -> [:all]
      {:trace, _, :call, {Application, _, [:munition, key | _]}} -> [key]
      _other -> []
    end)
    |> Enum.frequencies()
  end

  defp collect(messages) do
    receive do
      :done -> messages
      message -> collect([message | messages])
    end
  end
end

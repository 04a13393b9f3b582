defmodule Munition.Runtime.WasmiTest do
  # What is Wasmi's own: its report of itself, its cache and compile path,
  # and the application default. fire/4's contract on it is
  # test/conformance/wasmi_test.exs. Not async: one test sets the
  # application's default runtime.
  use ExUnit.Case, async: false
  import Bitwise

  alias Munition.Instance.State
  alias Munition.Runtime.Wasmi

  @add ~s{(module (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))}

  test "info/0 reports the engine, its version and features, in Munition.Reason's vocabulary" do
    assert %{engine: :wasmi, version: "2.0.0", features: features, crash_reasons: reasons, trap_kinds: kinds} =
             Wasmi.info()

    assert Enum.sort(features) == [:fuel, :interpreter, :lazy_translation]
    assert reasons -- Munition.Reason.crash_reasons() == []
    assert kinds -- Munition.Reason.trap_kinds() == []
  end

  test "the application's default runtime is the one a call without :runtime gets" do
    Munition.AppEnv.put_env(:runtime, Wasmi)
    assert {:ok, module} = Munition.compile(@add)
    assert module.runtime == Wasmi
    assert {:ok, 3, _} = Munition.fire(module, "add", [1, 2])
    assert {:ok, 3, _} = Munition.fire(@add, "add", [1, 2])
  end

  test "its modules are cached apart from Wasmtime's, by content" do
    wat = ~s{(module (; wasmi cache test ;) (func (export "f")))}
    %{compilations: before} = Wasmi.cache_stats()
    assert {:ok, a} = Wasmi.compile(wat)
    assert {:ok, b} = Wasmi.compile(wat)
    assert a.hash == b.hash
    assert %{compilations: after_two} = Wasmi.cache_stats()
    assert after_two == before + 1
  end

  test "cache_stats/0 is a map of entries, capacity and compilations, as Wasmtime's" do
    assert %{entries: entries, capacity: capacity, compilations: compilations} = Wasmi.cache_stats()
    assert is_integer(entries) and entries >= 0 and entries <= capacity
    assert is_integer(compilations) and compilations >= 0
  end

  test "a compile that outlives its timeout is an error, and its answer never reaches the caller" do
    # Large enough to compile on a thread of its own, and to take longer
    # than the caller needs to reach its receive even when it is descheduled
    # in between: 900 functions took about a millisecond, and once in a few
    # dozen runs the answer was there first; 9,000 take about 25 ms.
    funcs = for i <- 1..9_000, do: ~s{(func $f#{i} (result i32) i32.const #{i})}
    wat = "(module #{Enum.join(funcs, " ")})"

    assert {:error, {:timeout, message}} = Wasmi.compile(wat, timeout: 0)
    assert message =~ "did not finish within 0 ms"
    # The compilation goes on and lands in the cache: a retry finds it.
    assert {:ok, _} = Wasmi.compile(wat)
    refute_received {_, {:ok, _}}
  end

  test "cleanup/1 releases a store with a large memory off the normal schedulers" do
    # Releasing 64 MiB that the guest touched took 5-7.6 ms on a normal
    # scheduler. 8 MiB here: over the inline limit, so the normal-scheduler
    # NIF declines (this looks below the adapter on purpose) and the adapter
    # releases it on a dirty scheduler.
    {:ok, module} = Wasmi.compile(~s{(module (memory (export "memory") 128) (func (export "f")))})
    baseline = Wasmi.live_count()

    state = %State{
      module: module,
      function: "f",
      args: [],
      runtime: Wasmi,
      fuel: 1_000_000,
      timeout: 10_000,
      max_memory: 16 <<< 20,
      call: {"f", [], true, "alloc", false}
    }

    # A call that returned is not released at once either: the store stays
    # for the adapter's cleanup.
    assert {:ok, instance, {:returned, [], _}} = Wasmi.instantiate(module, state)
    assert instance != :released
    assert Munition.Native.wasmi_instance_cleanup(instance) == :large
    assert Wasmi.live_count() == baseline + 1
    assert Wasmi.cleanup(instance) == :ok
    assert Wasmi.live_count() == baseline
  end

  test "no store outlives its call, whatever the outcome" do
    spin = ~s{(module (func (export "spin") (loop br 0)))}
    host = {"env", "wait", {[], []}, :wait, fn _ctx -> receive do: (:never -> :ok) end}
    waiter = ~s{(module (import "env" "wait" (func $wait)) (func (export "f") call $wait))}
    baseline = Wasmi.live_count()

    for _ <- 1..20 do
      {:ok, 5, _} = Munition.fire(@add, "add", [2, 3], runtime: Wasmi)
      {:crash, :fuel_exhausted, _} = Munition.fire(spin, "spin", [], fuel: 1_000, runtime: Wasmi)
      {:error, {:function_not_found, _}} = Munition.fire(@add, "nope", [], runtime: Wasmi)
    end

    assert {:crash, :timeout, _} =
             Munition.fire(spin, "spin", [], fuel: 1 <<< 60, timeout: 50, runtime: Wasmi)

    assert {:crash, :timeout, _} =
             Munition.fire(waiter, "f", [],
               host_functions: [host],
               capabilities: [:wait],
               timeout: 50,
               runtime: Wasmi
             )

    assert Wasmi.live_count() == baseline
  end

  @tag :timing
  test "an endless loop is stopped within 50 ms of its deadline" do
    spin = ~s{(module (func (export "spin") (loop br 0)))}
    {:ok, module} = Wasmi.compile(spin)
    started = System.monotonic_time(:millisecond)
    result = Munition.fire(module, "spin", [], fuel: 1 <<< 60, timeout: 300, runtime: Wasmi)
    ms = System.monotonic_time(:millisecond) - started
    assert {:crash, :timeout, %{trap: :interrupt}} = result
    assert ms >= 300
    assert ms < 350, "stopped #{ms - 300} ms after the deadline"
  end

  # The runtime's callbacks directly, as the manager makes them.
  defp instantiate(wat, fields) do
    {:ok, module} = Wasmi.compile(wat)

    base = [module: module, function: "f", args: [], runtime: Wasmi, fuel: 1_000_000, timeout: 60_000]
    state = struct!(State, Keyword.merge([max_memory: 1 <<< 20, log_limit: 1024] ++ base, fields))
    Wasmi.instantiate(module, state)
  end

  @guest """
  (module
    (memory (export "memory") 1)
    (data (i32.const 64) "hello guest")
    (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add)
    (func (export "boom") unreachable))
  """

  test "instantiate/2 goes on to State's call at once, released after a return only when told to" do
    baseline = Wasmi.live_count()

    assert {:ok, :released, {:returned, [5], %{fuel_consumed: used}}} =
             instantiate(@guest, call: {"add", [2, 3], true, "alloc", false})

    assert used > 0
    assert Wasmi.live_count() == baseline
    assert Wasmi.cleanup(:released) == :ok

    # Kept when a binary result is still to be read, and after a crash.
    assert {:ok, instance, {:returned, [5], _}} =
             instantiate(@guest, call: {"add", [2, 3], false, "alloc", false})

    assert {:ok, "hello guest"} = Wasmi.read_memory(instance, 64, 11)
    assert Wasmi.cleanup(instance) == :ok

    assert {:ok, instance, {:crashed, :trap}} = instantiate(@guest, call: {"boom", [], true, "alloc", false})
    assert {:ok, %{trap: :unreachable}} = Wasmi.capture(instance, :minimal)
    assert Wasmi.cleanup(instance) == :ok

    # A call that cannot start is left to call/3, which says why.
    for {function, params, _, _, _} = call <- [
          {"nope", [], true, "alloc", false},
          {"add", [1], true, "alloc", false}
        ] do
      assert {:ok, instance, :ready} = instantiate(@guest, call: call)
      assert {:error, _} = Wasmi.call(instance, function, params)
      assert Wasmi.cleanup(instance) == :ok
    end

    assert Wasmi.live_count() == baseline
  end

  test "over a compile limit is refused before compiling, as on Wasmtime" do
    assert {:error, {:module_limit, message}} = Wasmi.compile(@add, limits: [module_size: 10])
    assert message =~ "module_size"
  end
end

defmodule Munition.Instance.ManagerTest do
  # Counts live stores, which are node-wide, and runs guests that hold every
  # dirty scheduler: runs alone.
  use ExUnit.Case, async: false
  import Bitwise

  alias Munition.Forensics.Dump
  alias Munition.Runtime.Wasmtime
  alias Munition.Sync

  @spin ~s{(module (func (export "spin") (loop br 0)))}
  @add ~s{(module (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))}
  @plenty 1_000_000_000_000_000
  # The longest timeout fire/4 takes: a guest with it runs until the test stops it.
  @day 86_400_000

  # A runaway that first says it runs: it calls the Elixir host function
  # `ready`, which tells the test, then loops forever.
  @ready_spin ~s{(module (import "env" "ready" (func $ready)) (func (export "spin") call $ready (loop br 0)))}

  # Fills 64 MiB with random bytes, forever: nearly all its time is spent in
  # the built-in, where the engine's own deadline check does not reach.
  @random_loop """
  (module (import "munition" "random_bytes" (func $fill (param i32 i32)))
    (memory (export "memory") 1024)
    (func (export "f") (loop (call $fill (i32.const 0) (i32.const 67108864)) (br 0))))
  """

  # A runtime that breaks its contract after handing out an instance.
  defmodule Broken do
    use Munition.DelegatingRuntime

    @impl true
    def instantiate(module, state) do
      {:ok, instance, :ready} = Wasmtime.instantiate(module, %{state | call: nil})
      # No host functions: the caller (the test) drives the guest itself.
      send(self(), {:instance, instance})
      {:ok, instance, :bogus}
    end
  end

  # A runtime that never makes the call in the instantiating step (as the
  # contract allows), and tells the test which call it was offered.
  defmodule IgnoresCall do
    use Munition.DelegatingRuntime

    @impl true
    def instantiate(module, state) do
      send(self(), {:offered, state.call})
      Wasmtime.instantiate(module, %{state | call: nil})
    end
  end

  defp ready(test), do: {"env", "ready", {[], []}, :ready, fn _ctx -> send(test, {:running, self()}) end}

  # Starts `n` runaway guests, each in a caller process of its own, and
  # returns the callers once every guest has said it runs.
  defp start_runaways(n) do
    test = self()

    callers =
      for _ <- 1..n do
        spawn(fn ->
          Munition.fire(@ready_spin, "spin", [],
            host_functions: [ready(test)],
            capabilities: [:ready],
            fuel: @plenty,
            timeout: @day
          )
        end)
      end

    # Not left running a day if the test fails before stop_runaways/2.
    on_exit(fn -> Enum.each(callers, &Process.exit(&1, :kill)) end)
    for _ <- callers, do: assert_receive({:running, _})
    callers
  end

  # Kills the callers, waits for their guests' drivers to go down (a process
  # of its own, linked, or the caller itself), then for their stores to be
  # released.
  defp stop_runaways(callers, baseline) do
    drivers =
      for caller <- callers do
        case Process.info(caller, :links) do
          {:links, [driver]} -> driver
          {:links, []} -> caller
        end
      end

    Enum.each(callers, &Process.exit(&1, :kill))
    for driver <- drivers, do: assert(Sync.await_down(driver) in [:killed, :noproc])
    Sync.await_live_count(baseline)
  end

  # A call that needs several slices on dirty schedulers: its first slice, on
  # the caller's normal scheduler, is 100 µs.
  defp short_call do
    counter = Munition.Fixtures.counter_wat("manager short call")
    Munition.fire(counter, "f", [200_000], fuel: 10_000_000, timeout: 60_000)
  end

  describe "timeout" do
    test "an endless loop with fuel to spare is stopped by the engine at its deadline" do
      baseline = Wasmtime.live_count()

      assert {:crash, :timeout, %Dump{trap: :interrupt} = dump} =
               Munition.fire(@spin, "spin", [], fuel: @plenty, timeout: 100)

      # The engine interrupted it: the manager's fallback (a task abandoned
      # after the grace period) has no store to read, so neither the engine's
      # message nor the fuel burnt.
      assert dump.message =~ "interrupt"
      assert dump.fuel_consumed > 0
      assert dump.fuel_consumed + dump.fuel_remaining == @plenty
      # Really stopped, not just abandoned: its store is gone when fire/4 returns.
      assert Wasmtime.live_count() == baseline
    end

    test "a guest whose caller dies is cancelled, not left running" do
      baseline = Wasmtime.live_count()
      [caller] = start_runaways(1)
      assert Wasmtime.live_count() == baseline + 1
      stop_runaways([caller], baseline)
    end

    test "a guest waiting on a host function whose caller dies is cancelled" do
      test = self()
      wat = ~s{(module (import "env" "wait" (func $wait)) (func (export "f") call $wait))}

      host =
        {"env", "wait", {[], []}, :wait,
         fn _ctx ->
           send(test, {:waiting, self()})
           receive do: (:never -> :ok)
         end}

      baseline = Wasmtime.live_count()

      caller =
        spawn(fn ->
          Munition.fire(wat, "f", [], host_functions: [host], capabilities: [:wait], timeout: @day)
        end)

      assert_receive {:waiting, _}
      assert Wasmtime.live_count() == baseline + 1
      stop_runaways([caller], baseline)
    end
  end

  describe "the caller's mailbox" do
    test "messages the caller already had are left in place, in order, and nothing is added" do
      {:ok, module} = Munition.compile(@add)
      other = spawn(fn -> :ok end)
      monitor = Process.monitor(other)
      assert_receive {:DOWN, ^monitor, :process, _, _} = down
      send(self(), down)
      send(self(), :mine)

      assert {:ok, 3, _} = Munition.fire(module, "add", [1, 2])
      assert {:crash, :trap, _} = Munition.fire(~s{(module (func (export "f") unreachable))}, "f", [])

      assert {:messages, [^down, :mine]} = Process.info(self(), :messages)
    end

    test "a call with host functions adds nothing to it either" do
      host = {"env", "twice", {[:i32], [:i32]}, :math, fn _ctx, x -> 2 * x end}

      wat =
        ~s{(module (import "env" "twice" (func $t (param i32) (result i32))) (func (export "f") (result i32) (call $t (i32.const 21))))}

      # The caller drives this call itself: a DOWN of its own is not taken
      # for its host function's.
      other = spawn(fn -> :ok end)
      monitor = Process.monitor(other)
      assert_receive {:DOWN, ^monitor, :process, _, _} = down
      send(self(), down)
      send(self(), :mine)

      assert {:ok, 42, _} = Munition.fire(wat, "f", [], host_functions: [host], capabilities: [:math])
      assert {:messages, [^down, :mine]} = Process.info(self(), :messages)
    end

    test "nor a host function still running at the deadline, that read the guest's memory first" do
      wat =
        ~s{(module (import "env" "peek" (func $p)) (memory (export "memory") 1) (func (export "f") (call $p)))}

      peek =
        {"env", "peek", {[], []}, :peek,
         fn ctx ->
           # Each read wakes the guest's driver, the caller.
           for _ <- 1..20, do: {:ok, _} = Munition.Host.Context.read(ctx, 0, 4)
           receive do: (:never -> :ok)
         end}

      send(self(), :mine)

      assert {:crash, :timeout, _dump} =
               Munition.fire(wat, "f", [], host_functions: [peek], capabilities: [:peek], timeout: 300)

      assert {:messages, [:mine]} = Process.info(self(), :messages)
    end
  end

  describe "the call in the instantiating step" do
    @copy_in ~s{(module (memory (export "memory") 1)
      (func (export "alloc") (param i32) (result i32) i32.const 1024)
      (func (export "len") (param i32 i32) (result i32) local.get 1))}
    @reactor ~s{(module (global $ready (mut i32) (i32.const 0))
      (func (export "_initialize") (global.set $ready (i32.const 1)))
      (func (export "ready") (result i32) global.get $ready))}

    test "is offered when nothing comes between, and a runtime may decline it" do
      {:ok, module} = Munition.compile(@add)
      assert {:ok, 5, _} = Munition.fire(module, "add", [2, 3], runtime: IgnoresCall)
      assert_received {:offered, {"add", [2, 3], true, "alloc", false}}
      assert {:ok, 5, _} = Munition.fire(module, "add", [2, 3])
    end

    test "asks for a binary result, read from the instance after by a runtime that declines" do
      {:ok, module} =
        Munition.compile(
          ~s{(module (memory (export "memory") 1) (data (i32.const 64) "hello") (func (export "hello") (result i32 i32) i32.const 64 i32.const 5))}
        )

      assert {:ok, "hello", _} = Munition.fire(module, "hello", [], result: :binary, runtime: IgnoresCall)
      assert_received {:offered, {"hello", [], true, "alloc", true}}
      assert {:ok, "hello", _} = Munition.fire(module, "hello", [], result: :binary)
    end

    test "offers binary arguments as they are, and is not offered when a reactor is initialized first" do
      {:ok, copy_in} = Munition.compile(@copy_in)
      assert {:ok, 3, _} = Munition.fire(copy_in, "len", ["abc"], runtime: IgnoresCall)
      assert_received {:offered, {"len", ["abc"], true, "alloc", false}}
      assert {:ok, 3, _} = Munition.fire(copy_in, "len", ["abc"])

      {:ok, reactor} = Munition.compile(@reactor)
      assert {:ok, 1, _} = Munition.fire(reactor, "ready", [], runtime: IgnoresCall)
      assert_received {:offered, nil}
      assert {:ok, 1, _} = Munition.fire(reactor, "ready", [])
    end
  end

  describe "cleanup" do
    test "no store outlives its call, whatever the outcome" do
      baseline = Wasmtime.live_count()

      for _ <- 1..50 do
        {:ok, 5, _} = Munition.fire(@add, "add", [2, 3])
        {:crash, :trap, _} = Munition.fire(~s{(module (func (export "f") unreachable))}, "f", [])
        {:crash, :fuel_exhausted, _} = Munition.fire(@spin, "spin", [], fuel: 1_000)
        {:error, {:function_not_found, _}} = Munition.fire(@add, "nope", [])
        {:error, {:bad_args, _}} = Munition.fire(@add, "add", [1])
      end

      assert Wasmtime.live_count() == baseline
    end

    test "a host function that outlives the deadline leaves no store behind" do
      baseline = Wasmtime.live_count()
      wat = ~s{(module (import "env" "wait" (func $wait)) (func (export "f") call $wait))}
      # Never returns: the behaviour under test.
      host = {"env", "wait", {[], []}, :wait, fn _ctx -> receive do: (:never -> :ok) end}

      assert {:crash, :timeout, %Dump{trap: :interrupt}} =
               Munition.fire(wat, "f", [], host_functions: [host], capabilities: [:wait], timeout: 100)

      assert Wasmtime.live_count() == baseline
    end

    test "a runtime that breaks its contract is a runtime failure, and its instance is still cleaned up" do
      baseline = Wasmtime.live_count()
      {:ok, module} = Munition.compile(@add)

      assert Munition.fire(module, "add", [1, 2], runtime: Broken) ==
               {:error, {:runtime_failure, "unexpected progress from the runtime: {:ok, :bogus}"}}

      assert_receive {:instance, instance}
      assert Wasmtime.call(instance, "add", [1, 2]) == {:error, {:invalid_state, "instance was cleaned up"}}
      assert Wasmtime.live_count() == baseline
    end
  end

  describe "scheduling" do
    # Each of these would hang, not fail, if runaway guests starved the VM: a
    # hang is a failure too (ExUnit's test timeout), and no time is measured.

    test "a short call completes while runaway guests hold every dirty scheduler" do
      baseline = Wasmtime.live_count()
      callers = start_runaways(:erlang.system_info(:dirty_cpu_schedulers))

      assert {:ok, 5, _} = Munition.fire(@add, "add", [2, 3])
      assert {:ok, nil, %{fuel_consumed: 1_600_004}} = short_call()
      # The runaways were running all along.
      assert Wasmtime.live_count() == baseline + length(callers)
      stop_runaways(callers, baseline)
    end

    test "plain processes keep running while runaway guests run" do
      baseline = Wasmtime.live_count()
      callers = start_runaways(8)

      for _ <- 1..20 do
        pid = spawn(fn -> receive(do: ({:ping, from} -> send(from, :pong))) end)
        send(pid, {:ping, self()})
        assert_receive :pong
      end

      assert Wasmtime.live_count() == baseline + length(callers)
      stop_runaways(callers, baseline)
    end

    test "guests waiting on Elixir host functions do not hold dirty schedulers" do
      test = self()
      wat = ~s{(module (import "env" "wait" (func $wait)) (func (export "f") call $wait))}

      host =
        {"env", "wait", {[], []}, :wait,
         fn _ctx ->
           send(test, {:waiting, self()})
           receive do: (:release -> :ok)
         end}

      waiting = 2 * :erlang.system_info(:dirty_cpu_schedulers)

      tasks =
        for _ <- 1..waiting do
          Task.async(fn ->
            Munition.fire(wat, "f", [], host_functions: [host], capabilities: [:wait], timeout: @day)
          end)
        end

      waiters =
        for _ <- tasks do
          assert_receive {:waiting, waiter}
          waiter
        end

      # Every guest is suspended on its host function: a call that needs dirty
      # schedulers still gets them.
      assert {:ok, nil, _} = short_call()

      Enum.each(waiters, &send(&1, :release))
      for task <- tasks, do: assert({:ok, nil, _} = Task.await(task, :infinity))
    end
  end

  # Timing: how fast, not whether. Excluded by default (see test_helper.exs):
  # on a loaded machine these measure the machine. Run with
  # `mix test --only timing` on a quiet one.
  describe "timing" do
    defp elapsed_ms(fun) do
      started = System.monotonic_time(:millisecond)
      result = fun.()
      {System.monotonic_time(:millisecond) - started, result}
    end

    @tag :timing
    test "an endless loop is stopped within 50 ms of its deadline" do
      {ms, result} = elapsed_ms(fn -> Munition.fire(@spin, "spin", [], fuel: @plenty, timeout: 300) end)
      assert {:crash, :timeout, %Dump{trap: :interrupt}} = result
      assert ms >= 300
      assert ms < 350, "stopped #{ms - 300} ms after the deadline"
    end

    @tag :timing
    test "a short call is not delayed by runaway guests" do
      baseline = Wasmtime.live_count()
      callers = start_runaways(:erlang.system_info(:dirty_cpu_schedulers))
      {ms, result} = elapsed_ms(fn -> Munition.fire(@add, "add", [2, 3]) end)
      assert {:ok, 5, _} = result
      assert ms < 100, "a short call took #{ms} ms"
      {ms, result} = elapsed_ms(&short_call/0)
      assert {:ok, nil, _} = result
      assert ms < 1_000, "a call of a few slices took #{ms} ms"
      stop_runaways(callers, baseline)
    end

    @tag :timing
    test "normal schedulers stay responsive while runaway guests run" do
      baseline = Wasmtime.live_count()
      callers = start_runaways(8)

      worst =
        for _ <- 1..20, reduce: 0 do
          worst ->
            {ms, :pong} =
              elapsed_ms(fn ->
                pid = spawn(fn -> receive(do: ({:ping, from} -> send(from, :pong))) end)
                send(pid, {:ping, self()})
                receive(do: (:pong -> :pong))
              end)

            max(worst, ms)
        end

      assert worst < 50, "a message round trip took #{worst} ms"
      stop_runaways(callers, baseline)
    end

    @tag :timing
    test "a short call is not delayed by guests waiting on host functions" do
      test = self()
      wat = ~s{(module (import "env" "wait" (func $wait)) (func (export "f") call $wait))}

      host =
        {"env", "wait", {[], []}, :wait,
         fn _ctx ->
           send(test, {:waiting, self()})
           receive do: (:release -> :ok)
         end}

      tasks =
        for _ <- 1..(2 * :erlang.system_info(:dirty_cpu_schedulers)) do
          Task.async(fn ->
            Munition.fire(wat, "f", [], host_functions: [host], capabilities: [:wait], timeout: @day)
          end)
        end

      waiters = for _ <- tasks, do: assert_receive({:waiting, waiter}) && waiter
      {ms, result} = elapsed_ms(&short_call/0)
      assert {:ok, nil, _} = result
      assert ms < 500, "a short call waited #{ms} ms behind guests waiting on host functions"
      Enum.each(waiters, &send(&1, :release))
      for task <- tasks, do: assert({:ok, nil, _} = Task.await(task, :infinity))
    end

    @tag :timing
    test "a host function whose process dies ends the call within a second" do
      wat = ~s{(module (import "env" "die" (func $die)) (func (export "f") call $die))}
      host = {"env", "die", {[], []}, :die, fn _ctx -> Process.exit(self(), :kill) end}

      {ms, result} =
        elapsed_ms(fn ->
          Munition.fire(wat, "f", [], host_functions: [host], capabilities: [:die], timeout: 5_000)
        end)

      assert {:crash, :host_error, _} = result
      assert ms < 1_000
    end

    @tag :timing
    test "a built-in working through a large range stops within 50 ms of its deadline" do
      {:ok, module} = Munition.compile(@random_loop)

      {ms, result} = elapsed_ms(fn -> fire_random_loop(module, 200) end)
      assert {:crash, :timeout, %Dump{trap: :interrupt}} = result
      assert ms < 250, "stopped #{ms - 200} ms after the deadline"
    end
  end

  describe "built-ins and the deadline" do
    test "a guest spending its time in a built-in is stopped at its deadline" do
      # Compiling is not part of the deadline: do it first.
      {:ok, module} = Munition.compile(@random_loop)
      baseline = Wasmtime.live_count()

      assert {:crash, :timeout, %Dump{trap: :interrupt, message: message}} = fire_random_loop(module, 200)

      # Almost always inside random_bytes, which checks the deadline between
      # chunks; rarely at the loop's back edge, by the engine, when the
      # deadline falls in the last chunk of a fill.
      assert message == "random_bytes: the deadline passed while the host function ran" or
               message =~ "interrupt"

      assert Wasmtime.live_count() == baseline
    end
  end

  # Captured without memory bytes: compressing 64 MiB of random bytes is slow,
  # and the memory is not what these tests look at.
  defp fire_random_loop(module, timeout) do
    Munition.fire(module, "f", [],
      capabilities: [:random],
      fuel: @plenty,
      timeout: timeout,
      max_memory: 128 <<< 20,
      forensics: :minimal
    )
  end
end

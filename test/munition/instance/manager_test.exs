defmodule Munition.Instance.ManagerTest do
  # Timing and scheduler tests: they run alone so other tests' load does not
  # blur what they measure.
  use ExUnit.Case, async: false
  import Bitwise

  alias Munition.Forensics.Dump

  @spin ~s{(module (func (export "spin") (loop br 0)))}
  @add ~s{(module (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))}
  @plenty 1_000_000_000_000_000

  defp elapsed_ms(fun) do
    started = System.monotonic_time(:millisecond)
    result = fun.()
    {System.monotonic_time(:millisecond) - started, result}
  end

  describe "timeout" do
    test "an endless loop with fuel to spare is stopped by the engine within 50 ms of its deadline" do
      baseline = Munition.Runtime.Wasmtime.live_count()

      {ms, result} = elapsed_ms(fn -> Munition.fire(@spin, "spin", [], fuel: @plenty, timeout: 300) end)

      assert {:crash, :timeout, %Dump{trap: :interrupt} = dump} = result
      # The engine stopped it (the abandoned-task fallback has another message).
      assert dump.message =~ "interrupt"
      assert dump.fuel_consumed > 0
      assert ms >= 300
      assert ms < 350, "stopped #{ms - 300} ms after the deadline"
      # Really stopped, not just abandoned: its store is gone when fire/4 returns.
      assert Munition.Runtime.Wasmtime.live_count() == baseline
    end

    test "a guest whose caller dies is cancelled, not left running" do
      baseline = Munition.Runtime.Wasmtime.live_count()
      caller = spawn(fn -> Munition.fire(@spin, "spin", [], fuel: @plenty, timeout: 60_000) end)
      Process.sleep(100)
      assert Munition.Runtime.Wasmtime.live_count() == baseline + 1
      Process.exit(caller, :kill)

      assert eventually(fn -> Munition.Runtime.Wasmtime.live_count() == baseline end),
             "the guest kept running after its caller was killed"
    end
  end

  describe "cleanup" do
    test "no store outlives its call, whatever the outcome" do
      baseline = Munition.Runtime.Wasmtime.live_count()

      for _ <- 1..50 do
        {:ok, 5, _} = Munition.fire(@add, "add", [2, 3])
        {:crash, :trap, _} = Munition.fire(~s{(module (func (export "f") unreachable))}, "f", [])
        {:crash, :fuel_exhausted, _} = Munition.fire(@spin, "spin", [], fuel: 1_000)
      end

      assert Munition.Runtime.Wasmtime.live_count() == baseline
    end

    test "a store with a large memory is released off the normal schedulers" do
      {:ok, module} = Munition.compile(~s{(module (memory (export "memory") 128) (func (export "f")))})

      state = %Munition.Instance.State{
        module: module,
        function: "f",
        args: [],
        runtime: Munition.Runtime.Wasmtime,
        fuel: 1_000,
        timeout: 1_000,
        max_memory: 16 <<< 20,
        log_limit: 0
      }

      baseline = Munition.Runtime.Wasmtime.live_count()

      {:ok, instance, :ready} = Munition.Runtime.Wasmtime.instantiate(module, state)
      # 8 MiB: over the inline limit, so the normal-scheduler NIF declines
      # (this test looks below the adapter on purpose) and the adapter
      # releases it on a dirty scheduler.
      assert Munition.Native.instance_cleanup(instance) == :large
      assert Munition.Runtime.Wasmtime.live_count() == baseline + 1
      assert Munition.Runtime.Wasmtime.cleanup(instance) == :ok
      assert Munition.Runtime.Wasmtime.live_count() == baseline
    end

    test "a host function that outlives the deadline leaves no store behind" do
      baseline = Munition.Runtime.Wasmtime.live_count()
      wat = ~s{(module (import "env" "wait" (func $wait)) (func (export "f") call $wait))}
      host = {"env", "wait", {[], []}, :wait, fn _ctx -> Process.sleep(5_000) end}

      assert {:crash, :timeout, _} =
               Munition.fire(wat, "f", [], host_functions: [host], capabilities: [:wait], timeout: 100)

      assert Munition.Runtime.Wasmtime.live_count() == baseline
    end
  end

  describe "scheduling" do
    test "two dirty schedulers' worth of runaway guests do not stop a short call" do
      runaways = :erlang.system_info(:dirty_cpu_schedulers)

      tasks =
        for _ <- 1..runaways do
          Task.async(fn -> Munition.fire(@spin, "spin", [], fuel: @plenty, timeout: 3_000) end)
        end

      Process.sleep(100)
      {ms, result} = elapsed_ms(fn -> Munition.fire(@add, "add", [2, 3]) end)
      assert {:ok, 5, _} = result
      # Far less than the runaways' 3 s: the short call got a slice between theirs.
      assert ms < 1_000

      for task <- tasks, do: assert({:crash, :timeout, _} = Task.await(task, 10_000))
    end
  end

  describe "normal schedulers" do
    test "stay responsive while runaway guests run" do
      # Guests start on the caller's normal scheduler for a short first slice
      # and continue on dirty ones: plain processes keep getting their turn.
      tasks =
        for _ <- 1..8 do
          Task.async(fn -> Munition.fire(@spin, "spin", [], fuel: @plenty, timeout: 1_500) end)
        end

      Process.sleep(100)

      worst =
        for _ <- 1..20, reduce: 0 do
          worst ->
            {ms, :pong} =
              elapsed_ms(fn ->
                pid = spawn(fn -> receive(do: ({:ping, from} -> send(from, :pong))) end)
                send(pid, {:ping, self()})
                receive(do: (:pong -> :pong))
              end)

            Process.sleep(10)
            max(worst, ms)
        end

      assert worst < 50, "a message round trip took #{worst} ms"
      for task <- tasks, do: assert({:crash, :timeout, _} = Task.await(task, 10_000))
    end
  end

  describe "host functions and scheduling" do
    test "guests waiting on slow Elixir host functions do not hold dirty schedulers" do
      wat = ~s{(module (import "env" "wait" (func $wait)) (func (export "f") call $wait))}
      host = {"env", "wait", {[], []}, :wait, fn _ctx -> Process.sleep(1_500) end}
      waiting = 2 * :erlang.system_info(:dirty_cpu_schedulers)

      tasks =
        for _ <- 1..waiting do
          Task.async(fn -> Munition.fire(wat, "f", [], host_functions: [host], capabilities: [:wait]) end)
        end

      Process.sleep(100)
      {ms, result} = elapsed_ms(fn -> Munition.fire(@add, "add", [2, 3]) end)
      assert {:ok, 5, _} = result
      assert ms < 500, "a short call waited #{ms} ms behind guests waiting on host functions"

      for task <- tasks, do: assert({:ok, nil, _} = Task.await(task, 10_000))
    end

    test "a host function whose process dies is a host error at once, not a timeout" do
      wat = ~s{(module (import "env" "die" (func $die)) (func (export "f") call $die))}
      host = {"env", "die", {[], []}, :die, fn _ctx -> Process.exit(self(), :kill) end}

      {ms, result} =
        elapsed_ms(fn ->
          Munition.fire(wat, "f", [], host_functions: [host], capabilities: [:die], timeout: 5_000)
        end)

      assert {:crash, :host_error, %Dump{message: message}} = result
      assert message =~ "ended without replying: :killed"
      assert ms < 1_000
    end

    test "a host function's process dies with a caller that is killed" do
      wat = ~s{(module (import "env" "wait" (func $wait)) (func (export "f") call $wait))}
      test = self()

      host =
        {"env", "wait", {[], []}, :wait,
         fn _ctx -> send(test, {:host, self()}) && Process.sleep(:infinity) end}

      baseline = Munition.Runtime.Wasmtime.live_count()

      caller =
        spawn(fn ->
          Munition.fire(wat, "f", [], host_functions: [host], capabilities: [:wait], timeout: 60_000)
        end)

      assert_receive {:host, host_pid}, 1_000
      ref = Process.monitor(host_pid)
      Process.exit(caller, :kill)
      assert_receive {:DOWN, ^ref, :process, ^host_pid, :killed}, 1_000
      assert eventually(fn -> Munition.Runtime.Wasmtime.live_count() == baseline end)
    end

    test "a host function whose process exits normally without replying is a host error too" do
      wat = ~s{(module (import "env" "quit" (func $quit)) (func (export "f") call $quit))}
      host = {"env", "quit", {[], []}, :quit, fn _ctx -> Process.exit(self(), :normal) end}

      {ms, result} =
        elapsed_ms(fn ->
          Munition.fire(wat, "f", [], host_functions: [host], capabilities: [:quit], timeout: 5_000)
        end)

      assert {:crash, :host_error, %Dump{message: message}} = result
      assert message =~ "ended without replying: :normal"
      assert ms < 1_000
    end

    test "a built-in working through a large range still stops at the deadline" do
      wat = """
      (module (import "munition" "random_bytes" (func $fill (param i32 i32)))
        (memory (export "memory") 1024)
        (func (export "f") (loop (call $fill (i32.const 0) (i32.const 67108864)) (br 0))))
      """

      # Compiling is not part of the deadline: do it first. Capture without
      # memory bytes: compressing 64 MiB of random bytes takes longer than the
      # overshoot measured here.
      {:ok, module} = Munition.compile(wat)

      {ms, result} =
        elapsed_ms(fn ->
          Munition.fire(module, "f", [],
            capabilities: [:random],
            fuel: @plenty,
            timeout: 200,
            max_memory: 128 <<< 20,
            forensics: :minimal
          )
        end)

      assert {:crash, :timeout, _} = result
      assert ms < 250, "stopped #{ms - 200} ms after the deadline"
    end
  end

  describe "VM stack hazard" do
    # A guest that recurses forever on a dirty scheduler thread's own stack
    # kills the VM with a segfault. Munition runs guests on its own stacks; this
    # starts a separate VM with tiny dirty-scheduler stacks (+sssdcpu 20, in
    # kilowords) and checks that the VM survives and reports the trap.
    test "infinite recursion is a trap even with small dirty scheduler stacks" do
      paths =
        Path.join(Mix.Project.build_path(), "lib/*/ebin")
        |> Path.wildcard()
        |> Enum.flat_map(&["-pa", &1])

      script = """
      {:ok, _} = Application.ensure_all_started(:munition)
      wat = ~s{(module (func $down (export "down") call $down))}
      {:crash, :trap, dump} = Munition.fire(wat, "down", [])
      {:ok, 3, _} = Munition.fire(~s{(module (func (export "f") (result i32) i32.const 3))}, "f", [])
      IO.puts("survived " <> Atom.to_string(dump.trap))
      """

      {out, status} =
        System.cmd("elixir", ["--erl", "+sssdcpu 20"] ++ paths ++ ["-e", script], stderr_to_stdout: true)

      assert status == 0, out
      assert out =~ "survived stack_overflow"
    end
  end

  defp eventually(check, tries \\ 50) do
    cond do
      check.() -> true
      tries == 0 -> false
      true -> Process.sleep(20) && eventually(check, tries - 1)
    end
  end
end

defmodule Munition.Instance.SlotsTest do
  # Fills every instance slot of the engine: nothing else may run meanwhile.
  use ExUnit.Case, async: false

  alias Munition.Sync

  alias Munition.Instance.Slots

  # The engine's instance slots (see engine.rs); the tests fill them all.
  @capacity 1_000
  @long 120_000

  @blocker ~s{(module (import "test" "block" (func $block)) (func (export "f") call $block))}

  # Fills every slot with a guest suspended in a host function; returns the
  # host functions' pids, each waiting for :go.
  defp fill_every_slot do
    test = self()

    block = {"test", "block", {[], []}, :block, fn _ctx -> hold(test) end}
    {:ok, module} = Munition.compile(@blocker)

    callers =
      for _ <- 1..@capacity do
        spawn_link(fn ->
          send(
            test,
            {:blocker_done,
             Munition.fire(module, "f", [], host_functions: [block], capabilities: [:block], timeout: @long)}
          )
        end)
      end

    holders = for _ <- callers, do: assert_receive({:holding, pid}, @long) && pid
    holders
  end

  defp hold(test) do
    send(test, {:holding, self()})

    receive do
      :go -> :ok
    end
  end

  defp release(holders) do
    Enum.each(holders, &send(&1, :go))
    for _ <- holders, do: assert_receive({:blocker_done, {:ok, nil, _}}, @long)
  end

  test "every slot in use: a call waits instead of failing, and runs when one frees" do
    baseline = Munition.Runtime.Wasmtime.live_count()
    holders = fill_every_slot()
    assert Munition.Runtime.Wasmtime.live_count() == baseline + @capacity

    test = self()

    spawn_link(fn ->
      send(
        test,
        {:waiter,
         Munition.fire(~s{(module (func (export "f") (result i32) i32.const 7))}, "f", [], timeout: @long)}
      )
    end)

    Sync.until(fn -> Slots.waiting() == 1 end)
    refute_received {:waiter, _}

    release(holders)
    assert_receive {:waiter, {:ok, 7, _}}, @long
    assert Slots.waiting() == 0
    assert Munition.Runtime.Wasmtime.live_count() == baseline
  end

  test "a caller still waiting at its deadline gets {:error, {:overloaded, _}}" do
    holders = fill_every_slot()

    assert {:error, {:overloaded, message}} =
             Munition.fire(~s{(module (func (export "f")))}, "f", [], timeout: 20)

    assert message =~ "deadline"
    # It left the queue (its cancel reaches the queue after it returned).
    Sync.until(fn -> Slots.waiting() == 0 end)

    release(holders)
  end

  test "a caller that dies while waiting leaves no trace" do
    baseline = Munition.Runtime.Wasmtime.live_count()
    holders = fill_every_slot()

    waiter = spawn(fn -> Munition.fire(~s{(module (func (export "f")))}, "f", [], timeout: @long) end)
    Sync.until(fn -> Slots.waiting() == 1 end)
    monitor = Process.monitor(waiter)
    Process.exit(waiter, :kill)
    assert_receive {:DOWN, ^monitor, :process, _, :killed}
    Sync.until(fn -> Slots.waiting() == 0 end)

    release(holders)
    assert Munition.Runtime.Wasmtime.live_count() == baseline
  end

  test "5,000 concurrent callers with mixed outcomes all get the right answer" do
    baseline = Munition.Runtime.Wasmtime.live_count()
    holders = fill_every_slot()

    calls = [
      {~s{(module (func (export "f") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))}, [2, 3],
       [], &match?({:ok, 5, _}, &1)},
      {~s{(module (memory 1) (func (export "f") unreachable))}, [], [],
       &match?({:crash, :trap, %{trap: :unreachable}}, &1)},
      {~s{(module (func (export "f") (loop br 0)))}, [], [fuel: 10_000],
       &match?({:crash, :fuel_exhausted, %{trap: :out_of_fuel}}, &1)},
      {~s{(module (memory 1) (func (export "f") (drop (memory.grow (i32.const 100)))))}, [],
       [max_memory: 65_536 * 2], &match?({:crash, :memory_limit, _}, &1)}
    ]

    compiled = for {wat, args, opts, check} <- calls, do: {elem(Munition.compile(wat), 1), args, opts, check}
    test = self()
    callers = 5_000 - @capacity

    for n <- 1..callers do
      {module, args, opts, check} = Enum.at(compiled, rem(n, length(compiled)))

      spawn_link(fn ->
        result = Munition.fire(module, "f", args, Keyword.put(opts, :timeout, @long))
        send(test, {:mixed, n, check.(result), result})
      end)
    end

    # Every one of them is queued behind the blocked guests before any slot frees.
    Sync.until(fn -> Slots.waiting() == callers end)
    release(holders)

    for n <- 1..callers do
      assert_receive {:mixed, ^n, true, _result}, @long
    end

    assert Slots.waiting() == 0
    assert Munition.Runtime.Wasmtime.live_count() == baseline
  end
end

defmodule Munition.PoolTest do
  use ExUnit.Case, async: true
  doctest Munition.Pool

  alias Munition.Sync

  alias Munition.Fixtures
  alias Munition.Forensics.Dump
  alias Munition.Native
  alias Munition.Pool

  @add ~s{(module (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add)
    (func (export "boom") unreachable))}

  @long 60_000

  # The places test's module: its thousands of calls go to a meter key of
  # their own, not to @add's, whose :adaptive fuel another test reads.
  @sum ~s{(module (func (export "sum") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))}

  # Callers killed mid-call by the places test: over 7 times the reductions
  # of a bare pooled call (about 125 on OTP 25).
  @victims 1_000

  defp unique_name, do: :"pool_#{System.unique_integer([:positive])}"

  defp start_pool!(opts) do
    name = unique_name()
    start_supervised!({Pool, [name: name] ++ opts})
    name
  end

  # A guest that calls the host function test.hold, which tells the test
  # process and waits for :go: a call that stays running until released.
  @held ~s{(module (import "test" "hold" (func $hold)) (func (export "f") call $hold))}

  defp hold_function(test) do
    {"test", "hold", {[], []}, :hold,
     fn _ctx ->
       send(test, {:holding, self()})

       receive do
         :go -> :ok
       end
     end}
  end

  defp start_held_call(name) do
    test = self()

    caller =
      spawn(fn -> send(test, {:held_done, self(), Munition.fire_pooled(name, "f", [], timeout: @long)}) end)

    assert_receive {:holding, holder}, @long
    {caller, holder}
  end

  # The pool options of Fixtures.plugin_wat/3 whose `run(0)` holds: its
  # `twice(0)` tells the test process and waits for :go.
  defp held_plugin(kind, version) do
    test = self()

    twice =
      Fixtures.twice_function(kind, fn
        0 ->
          send(test, {:holding, self()})

          receive do
            :go -> 0
          end

        x ->
          2 * x
      end)

    [wasm: Fixtures.plugin_wat(kind, version), host_functions: [twice], capabilities: [:twice]]
  end

  defp start_held_run(name) do
    test = self()

    caller =
      spawn(fn -> send(test, {:held_done, self(), Munition.fire_pooled(name, "run", [0], timeout: @long)}) end)

    assert_receive {:holding, holder}, @long
    {caller, holder}
  end

  # Calls the pool's `version` until told to stop (having said when its
  # first call answered), then once more; sends the versions it saw, in
  # order, and what the last call returned.
  defp call_until_stopped(name, test, versions \\ []) do
    {:ok, version, _} = Munition.fire_pooled(name, "version", [], timeout: @long)
    if versions == [], do: send(test, {:calling, self()})

    receive do
      :stop ->
        {:ok, last, _} = Munition.fire_pooled(name, "version", [], timeout: @long)
        send(test, {:stopped, self(), Enum.reverse([version | versions]), {:ok, last}})
    after
      0 -> call_until_stopped(name, test, [version | versions])
    end
  end

  # Burns `reductions`, then calls the pool's `sum` until killed; says when it
  # has started. A bare pooled call (no Elixir host function, no dump) stays
  # on its scheduler from start to end.
  defp call_forever(name, test, reductions) do
    send(test, {:calling, self()})
    burn(reductions)
    call_forever(name)
  end

  defp call_forever(name) do
    {:ok, 3, _} = Munition.fire_pooled(name, "sum", [1, 2])
    call_forever(name)
  end

  # Takes a place and keeps only whether it got one: the token is garbage.
  defp take_and_drop(places), do: is_reference(Native.pool_place_take(places))

  # One reduction per step.
  defp burn(0), do: :ok
  defp burn(n), do: burn(n - 1)

  describe "fire_pooled/4" do
    test "returns exactly what fire/4 returns" do
      name = start_pool!(wasm: @add)

      assert {:ok, 5, meta} = Munition.fire_pooled(name, "add", [2, 3])
      assert {:ok, 5, fire_meta} = Munition.fire(@add, "add", [2, 3])
      assert Map.keys(meta) == Map.keys(fire_meta)
      assert meta.module_hash == fire_meta.module_hash
      assert meta.fuel_consumed == fire_meta.fuel_consumed

      assert {:crash, :trap, %Dump{trap: :unreachable, function: "boom"}} =
               Munition.fire_pooled(name, "boom", [])

      assert {:error, {:function_not_found, "nope"}} = Munition.fire_pooled(name, "nope", [])
      assert Munition.fire_pooled(name, "add", [1]) == Munition.fire(@add, "add", [1])
    end

    test "a secret written to memory and to a global by one call is invisible to the next" do
      wat = ~s{(module (memory (export "memory") 1) (global $g (mut i64) (i64.const 0))
        (func (export "write") (i64.store (i32.const 64) (i64.const 0x5345435245540000)) (global.set $g (i64.const 42)))
        (func (export "read") (result i64 i64) (i64.load (i32.const 64)) (global.get $g)))}

      name = start_pool!(wasm: wat, size: 1)

      for _ <- 1..100 do
        assert {:ok, nil, _} = Munition.fire_pooled(name, "write", [])
        assert {:ok, [0, 0], _} = Munition.fire_pooled(name, "read", [])
      end
    end

    test "per-call options override the pool's defaults; links are fixed" do
      spin = ~s{(module (memory (export "memory") 1) (func (export "spin") (loop br 0))
        (func (export "pair") (result i32 i32) i32.const 0 i32.const 2))}

      name = start_pool!(wasm: spin, fuel: 1_000, forensics: false)

      assert {:crash, :fuel_exhausted, nil} = Munition.fire_pooled(name, "spin", [])

      assert {:crash, :fuel_exhausted, %Dump{fuel_given: 5_000}} =
               Munition.fire_pooled(name, "spin", [], fuel: 5_000, forensics: :full)

      assert {:crash, :timeout, %Dump{trap: :interrupt}} =
               Munition.fire_pooled(name, "spin", [],
                 fuel: 1_000_000_000_000,
                 timeout: 20,
                 forensics: :minimal
               )

      assert {:ok, <<0, 0>>, _} = Munition.fire_pooled(name, "pair", [], result: :binary)

      assert_raise ArgumentError, ~r/fixed when the pool starts/, fn ->
        Munition.fire_pooled(name, "spin", [], capabilities: [:time])
      end

      assert_raise ArgumentError, ~r/timeout/, fn -> Munition.fire_pooled(name, "spin", [], timeout: -1) end
    end

    # A caller's last overrides are checked and made into a State once, and
    # reused only for the same version of the same pool and equal options.
    test "a call's overrides are reused for the same pool and options only; every change is seen" do
      spin = ~s{(module (func (export "spin") (loop br 0)))}
      name = start_pool!(wasm: spin, fuel: 1_000, forensics: false)
      other = start_pool!(wasm: spin, fuel: 2_000, forensics: :minimal)

      for _ <- 1..2 do
        assert {:crash, :fuel_exhausted, %Dump{fuel_given: 5_000}} =
                 Munition.fire_pooled(name, "spin", [], fuel: 5_000, forensics: :full)

        assert {:crash, :fuel_exhausted, %Dump{fuel_given: 5_000}} =
                 Munition.fire_pooled(name, "spin", [], fuel: 5_000, forensics: :full)

        # The same options on another pool: its own defaults for the rest.
        assert {:crash, :fuel_exhausted, nil} = Munition.fire_pooled(name, "spin", [], fuel: 5_000)

        assert {:crash, :fuel_exhausted, %Dump{fuel_given: 5_000}} =
                 Munition.fire_pooled(other, "spin", [], fuel: 5_000)

        assert {:crash, :fuel_exhausted, nil} = Munition.fire_pooled(name, "spin", [], fuel: 5_000)

        assert {:crash, :fuel_exhausted, %Dump{fuel_given: 7_000}} =
                 Munition.fire_pooled(name, "spin", [], fuel: 7_000, forensics: :full)

        # No overrides: the pool's own.
        assert {:crash, :fuel_exhausted, nil} = Munition.fire_pooled(name, "spin", [])
        assert {:crash, :fuel_exhausted, %Dump{fuel_given: 2_000}} = Munition.fire_pooled(other, "spin", [])

        # Options that fail their check fail it however often given, after
        # good ones or not.
        assert_raise ArgumentError, ~r/fuel/, fn -> Munition.fire_pooled(name, "spin", [], fuel: 0) end
        assert_raise ArgumentError, ~r/fuel/, fn -> Munition.fire_pooled(name, "spin", [], fuel: 0) end
        assert_raise ArgumentError, ~r/timeout/, fn -> Munition.fire_pooled(name, "spin", [], timeout: -1) end
      end
    end

    test "a call's preopened directories are checked on every call" do
      name = start_pool!(wasm: @add, capabilities: [:wasi])

      dir = Munition.Tmp.path("pool")

      File.mkdir_p!(dir)
      opts = [wasi: [preopens: [{"/data", dir}]]]
      assert {:ok, 5, _} = Munition.fire_pooled(name, "add", [2, 3], opts)
      assert {:ok, 5, _} = Munition.fire_pooled(name, "add", [2, 3], opts)
      File.rm_rf!(dir)

      assert_raise ArgumentError, ~r/existing directories/, fn ->
        Munition.fire_pooled(name, "add", [2, 3], opts)
      end
    end

    test "fuel :auto is resolved once at start, :adaptive per call" do
      name = start_pool!(wasm: @add, fuel: :auto)
      assert is_integer(Pool.fetch(name).options.fuel)

      name = start_pool!(wasm: @add, fuel: :adaptive)
      assert {:adaptive, %{fallback: fallback}} = Pool.fetch(name).options.fuel

      assert {:ok, 5, %{fuel_remaining: left, fuel_consumed: used}} =
               Munition.fire_pooled(name, "add", [2, 3])

      # No history yet: the module's :auto budget.
      assert left + used == fallback
    end

    test "an unknown pool is :pool_unavailable" do
      assert {:error, {:pool_unavailable, _}} = Munition.fire_pooled(:no_such_pool, "f", [])
    end
  end

  describe "size and waiting" do
    test ":size bounds the calls running at once; more wait, and stats say so" do
      name = start_pool!(wasm: @held, size: 2, host_functions: [hold_function(self())], capabilities: [:hold])

      {_c1, h1} = start_held_call(name)
      {_c2, h2} = start_held_call(name)
      test = self()
      spawn(fn -> send(test, {:third, Munition.fire_pooled(name, "f", [], timeout: @long)}) end)
      Sync.until(fn -> match?({:ok, %{waiting: 1}}, Pool.stats(name)) end)

      assert {:ok, %{size: 2, running: 2, waiting: 1, completed: 0}} = Pool.stats(name)
      refute_received {:holding, _}

      send(h1, :go)
      assert_receive {:held_done, _, {:ok, nil, _}}, @long
      assert_receive {:holding, h3}, @long
      send(h2, :go)
      send(h3, :go)
      assert_receive {:held_done, _, {:ok, nil, _}}, @long
      assert_receive {:third, {:ok, nil, _}}, @long

      assert {:ok, %{running: 0, waiting: 0, completed: 3, crashed: 0, failed: 0}} = Pool.stats(name)
    end

    test "a call still waiting at its deadline is :overloaded, and counted as failed" do
      name = start_pool!(wasm: @held, size: 1, host_functions: [hold_function(self())], capabilities: [:hold])
      {_caller, holder} = start_held_call(name)

      assert {:error, {:overloaded, message}} = Munition.fire_pooled(name, "f", [], timeout: 10)
      assert message =~ "busy"
      assert {:ok, %{failed: 1}} = Pool.stats(name)

      send(holder, :go)
      assert_receive {:held_done, _, {:ok, nil, _}}, @long
    end

    # Wall-clock: 300 ms of a 400 ms timeout spent waiting for a place.
    @tag :timing
    test "a call that waited for a place runs for what is left of its timeout" do
      wasm = ~s{(module (import "test" "hold" (func $hold)) (func (export "f") call $hold)
        (func (export "spin") (loop br 0)))}

      name = start_pool!(wasm: wasm, size: 1, host_functions: [hold_function(self())], capabilities: [:hold])
      {_caller, holder} = start_held_call(name)
      test = self()

      spawn(fn ->
        send(test, {:spun, Munition.fire_pooled(name, "spin", [], timeout: 400, fuel: 1_000_000_000_000)})
      end)

      Sync.until(fn -> match?({:ok, %{waiting: 1}}, Pool.stats(name)) end)

      receive do
      after
        300 -> send(holder, :go)
      end

      # It ran for about 100 ms, not a whole 400 more.
      assert_receive {:spun, {:crash, :timeout, %Dump{execution_time_us: ran}}}, @long
      assert ran < 250_000
      assert_receive {:held_done, _, {:ok, nil, _}}, @long
    end

    test "a caller killed mid-call gives its place back" do
      name = start_pool!(wasm: @held, size: 1, host_functions: [hold_function(self())], capabilities: [:hold])
      {caller, _holder} = start_held_call(name)
      monitor = Process.monitor(caller)
      Process.exit(caller, :kill)
      assert_receive {:DOWN, ^monitor, :process, _, :killed}

      # The next call finds the place reclaimed.
      {_caller, holder} = start_held_call(name)
      send(holder, :go)
      assert_receive {:held_done, _, {:ok, nil, _}}, @long
      assert {:ok, %{running: 0, waiting: 0}} = Pool.stats(name)
    end

    test "stopping the pool answers its waiters, and running calls end as usual" do
      name = unique_name()

      {:ok, pid} =
        Pool.start_link(
          name: name,
          wasm: @held,
          size: 1,
          host_functions: [hold_function(self())],
          capabilities: [:hold]
        )

      Process.unlink(pid)
      {_caller, holder} = start_held_call(name)
      test = self()
      spawn(fn -> send(test, {:waiter, Munition.fire_pooled(name, "f", [], timeout: @long)}) end)
      Sync.until(fn -> match?({:ok, %{waiting: 1}}, Pool.stats(name)) end)

      GenServer.stop(pid)
      assert_receive {:waiter, {:error, {:pool_unavailable, _}}}, @long
      assert {:error, {:pool_unavailable, _}} = Munition.fire_pooled(name, "f", [])

      send(holder, :go)
      assert_receive {:held_done, _, {:ok, nil, _}}, @long
    end

    test "a pool under a supervisor is restarted and serves again" do
      name = unique_name()
      {:ok, sup} = Supervisor.start_link([{Pool, name: name, wasm: @add}], strategy: :one_for_one)
      pid = Process.whereis(name)
      monitor = Process.monitor(pid)
      Process.exit(pid, :kill)
      assert_receive {:DOWN, ^monitor, :process, _, :killed}

      Sync.until(fn -> match?(%Pool{pid: new} when new != pid, Pool.fetch(name)) end)
      assert {:ok, 5, _} = Munition.fire_pooled(name, "add", [2, 3])
      Supervisor.stop(sup)
    end
  end

  describe "places" do
    # A caller killed between taking a place and recording that it holds
    # it, or between the two steps of giving it back, must not take the
    # place with it. A kill is acted on when its victim is next scheduled
    # out, and a bare pooled call is scheduled out only when its time slice
    # (4,000 reductions) ends. Victim n burns n reductions before calling in
    # a loop, so its first slice ends one reduction further into its calls
    # than victim n - 1's: the victims die at every point of a call,
    # checking out and in included, several times over. (Before places were
    # tokens, 29 of 1,000 such victims each took a place with them.)
    # Nothing is timed: each victim's DOWN is awaited, then the pool's count
    # (a victim may have died waiting in line, which is a schedule-out too).
    test "callers killed at any point of a call leave every place free" do
      name = start_pool!(wasm: @sum, size: 1)
      test = self()
      # A module's first call does one-time work that leaves the scheduler
      # (a victim would die there, every time): done here, once.
      assert {:ok, 3, _} = Munition.fire_pooled(name, "sum", [1, 2])

      for n <- 1..@victims do
        {victim, monitor} = spawn_monitor(fn -> call_forever(name, test, n) end)

        receive do
          {:calling, ^victim} -> Process.exit(victim, :kill)
        end

        assert_receive {:DOWN, ^monitor, :process, ^victim, reason}, @long
        assert reason == :killed
      end

      # The place comes back by itself (a killed victim's just after its
      # DOWN, when its heap is freed), with no call waiting for it.
      Sync.until(fn -> match?({:ok, %{running: 0, waiting: 0}}, Pool.stats(name)) end)
      assert {:ok, 3, _} = Munition.fire_pooled(name, "sum", [1, 2], timeout: @long)
      assert {:ok, %{running: 0, waiting: 0, crashed: 0}} = Pool.stats(name)
    end

    test "a place is given back once, by its caller or by its token's destructor" do
      name = start_pool!(wasm: @add, size: 1)
      places = Pool.fetch(name).places
      test = self()

      place = Native.pool_place_take(places)
      assert is_reference(place)
      assert Native.pool_place_take(places) == :full
      assert Native.pool_place_return(place) == :ok
      assert Native.pool_place_return(place) == :released
      assert {:ok, %{running: 0}} = Pool.stats(name)

      # A token dropped unreturned gives its place back once collected (the
      # VM runs the destructor just after the collection, not within it).
      assert take_and_drop(places)
      :erlang.garbage_collect()
      Sync.until(fn -> match?({:ok, %{running: 0}}, Pool.stats(name)) end)

      # A process that dies holding a token it never returned.
      {holder, monitor} =
        spawn_monitor(fn ->
          place = Native.pool_place_take(places)
          send(test, {:taken, is_reference(place)})
          receive do: (:never -> place)
        end)

      assert_receive {:taken, true}
      assert {:ok, %{running: 1}} = Pool.stats(name)
      Process.exit(holder, :kill)
      assert_receive {:DOWN, ^monitor, :process, ^holder, :killed}
      # Its heap, and the token with it, is freed about when its DOWN is sent.
      Sync.until(fn -> match?({:ok, %{running: 0}}, Pool.stats(name)) end)
      assert {:ok, 5, _} = Munition.fire_pooled(name, "add", [2, 3])
    end
  end

  describe "components" do
    setup do
      %{wat: Fixtures.plugin_wat(:component, 1), twice: Fixtures.twice_function(:component, &(2 * &1))}
    end

    test "a pool of a component, from its bytes or compiled ahead, serves WIT values", %{
      wat: wat,
      twice: twice
    } do
      {:ok, compiled} = Munition.compile(wat)

      for wasm <- [wat, compiled] do
        name = start_pool!(wasm: wasm, host_functions: [twice], capabilities: [:twice])

        # Compiled when the pool started, before any call.
        assert {:ok, %Munition.Module{kind: :component, hash: hash}} = Pool.module(name)
        assert hash == compiled.hash

        assert {:ok, 41, meta} = Munition.fire_pooled(name, "run", [20])

        assert {:ok, 41, fire_meta} =
                 Munition.fire(compiled, "run", [20], host_functions: [twice], capabilities: [:twice])

        assert Map.delete(meta, :execution_time_us) == Map.delete(fire_meta, :execution_time_us)
        assert {:ok, "héllo", _} = Munition.fire_pooled(name, "greet", ["héllo"])
        assert {:ok, %{completed: 2, failed: 0}} = Pool.stats(name)
      end
    end

    test "its arguments are WIT values, checked by the component, and the binary ABI does not apply", %{
      wat: wat,
      twice: twice
    } do
      name = start_pool!(wasm: wat, host_functions: [twice], capabilities: [:twice])

      # A core module's numbers-only check would raise on these: here they
      # are values the component's types refuse.
      assert {:error, {:bad_args, message}} = Munition.fire_pooled(name, "run", [nil])
      assert message =~ "argument x"
      assert {:error, {:bad_args, _}} = Munition.fire_pooled(name, "greet", [%{"a" => 1}])
      assert {:error, {:bad_args, message}} = Munition.fire_pooled(name, "run", [-1])
      assert message =~ "out of range for u32"

      assert {:error, {:bad_result, message}} = Munition.fire_pooled(name, "greet", ["x"], result: :binary)
      assert message =~ "WIT values"
      assert {:ok, %{completed: 0, failed: 4}} = Pool.stats(name)
    end

    test "fuel, the deadline, traps and dumps, with the pool's defaults and each call's", %{
      wat: wat,
      twice: twice
    } do
      dir = Munition.Tmp.path("pool")

      on_exit(fn -> File.rm_rf!(dir) end)

      name =
        start_pool!(wasm: wat, host_functions: [twice], capabilities: [:twice], fuel: 1_000, dump_dir: dir)

      assert {:crash, :fuel_exhausted, %Dump{fuel_consumed: 1_000}} = Munition.fire_pooled(name, "spin", [])

      assert {:crash, :fuel_exhausted, %Dump{fuel_consumed: 5_000}} =
               Munition.fire_pooled(name, "spin", [], fuel: 5_000)

      assert {:crash, :timeout, %Dump{trap: :interrupt}} =
               Munition.fire_pooled(name, "spin", [], fuel: 1_000_000_000_000, timeout: 20)

      assert {:crash, :trap, %Dump{trap: :unreachable, function: "boom", module_hash: hash} = dump} =
               Munition.fire_pooled(name, "boom", [])

      assert [%{size: 65_536}] = dump.memories
      assert {:crash, :trap, nil} = Munition.fire_pooled(name, "boom", [], forensics: false)
      assert {:ok, %{crashed: 5}} = Pool.stats(name)
      {:ok, module} = Pool.module(name)
      assert hash == module.hash
      # Every dump but the one not taken (forensics: false) was written.
      assert length(File.ls!(dir)) == 4
    end

    test "its host functions and capabilities are the pool's", %{wat: wat, twice: twice} do
      Process.flag(:trap_exit, true)

      assert {:error, {:capability_denied, [%{module: "my:host/api", name: "twice", needs: :twice}]}} =
               Pool.start_link(name: unique_name(), wasm: wat, host_functions: [twice])

      core_typed = Fixtures.twice_function(:module, &(2 * &1))
      core_typed = put_elem(core_typed, 0, "my:host/api")

      assert {:error, {:instantiation_failed, message}} =
               Pool.start_link(
                 name: unique_name(),
                 wasm: wat,
                 host_functions: [core_typed],
                 capabilities: [:twice]
               )

      assert message =~ ":wit"

      name = start_pool!(wasm: wat, host_functions: [twice], capabilities: [:twice])

      assert_raise ArgumentError, ~r/fixed when the pool starts/, fn ->
        Munition.fire_pooled(name, "run", [1], host_functions: [])
      end
    end
  end

  for kind <- [:module, :component] do
    describe "swap/3, #{kind}" do
      @describetag kind: kind

      test "a call in flight finishes on the old version; a call after the swap gets the new one", %{
        kind: kind
      } do
        name = start_pool!(held_plugin(kind, 1) ++ [size: 2])
        {:ok, old} = Pool.module(name)
        {caller, holder} = start_held_run(name)

        assert {:ok, %Munition.Module{kind: ^kind} = new} = Pool.swap(name, Fixtures.plugin_wat(kind, 2))
        assert new.hash != old.hash
        assert Pool.module(name) == {:ok, new}
        assert {:ok, 2, %{module_hash: new_hash}} = Munition.fire_pooled(name, "version", [])
        assert new_hash == new.hash
        assert {:ok, 12, _} = Munition.fire_pooled(name, "run", [5])

        send(holder, :go)
        assert_receive {:held_done, ^caller, {:ok, 1, %{module_hash: old_hash}}}, @long
        assert old_hash == old.hash
        assert {:ok, %{completed: 3, running: 0, crashed: 0, failed: 0}} = Pool.stats(name)
      end

      test "a call waiting for a place when the pool switches runs the new version", %{kind: kind} do
        name = start_pool!(held_plugin(kind, 1) ++ [size: 1])
        {caller, holder} = start_held_run(name)
        test = self()

        waiter =
          spawn(fn ->
            send(test, {:waited, self(), Munition.fire_pooled(name, "version", [], timeout: @long)})
          end)

        Sync.until(fn -> match?({:ok, %{waiting: 1}}, Pool.stats(name)) end)

        assert {:ok, _new} = Pool.swap(name, Fixtures.plugin_wat(kind, 2))
        send(holder, :go)
        assert_receive {:held_done, ^caller, {:ok, 1, _}}, @long
        assert_receive {:waited, ^waiter, {:ok, 2, _}}, @long
      end

      test "a version that does not compile or link leaves the old one serving", %{kind: kind} do
        name = start_pool!(held_plugin(kind, 1) ++ [limits: [functions: 50]])
        {:ok, old} = Pool.module(name)

        refused_import =
          case kind do
            :module -> ~s{(module (import "munition" "get_time_ms" (func (result i64))))}
            :component -> Fixtures.plugin_wat(kind, 2) |> String.replace("my:host/api", "my:host/other")
          end

        too_many =
          String.replace(
            Fixtures.plugin_wat(kind, 2),
            "(func (export \"boom\")",
            String.duplicate("(func) ", 60) <> "(func (export \"boom\")",
            global: false
          )

        assert {:error, {:invalid_module, _}} = Pool.swap(name, "(#{kind} (func")
        assert {:error, {:capability_denied, [%{name: denied}]}} = Pool.swap(name, refused_import)
        assert denied in ["get_time_ms", "twice"]
        assert {:error, {:module_limit, _}} = Pool.swap(name, too_many)

        assert Pool.module(name) == {:ok, old}
        assert {:ok, 1, _} = Munition.fire_pooled(name, "version", [])
      end

      test "callers calling all through the swap all succeed, on the old version then the new", %{kind: kind} do
        name = start_pool!(held_plugin(kind, 1) ++ [size: 2])
        test = self()
        callers = for _ <- 1..8, do: spawn_link(fn -> call_until_stopped(name, test) end)
        for caller <- callers, do: assert_receive({:calling, ^caller}, @long)

        assert {:ok, _new} = Pool.swap(name, Fixtures.plugin_wat(kind, 2))
        for caller <- callers, do: send(caller, :stop)

        for caller <- callers do
          assert_receive {:stopped, ^caller, versions, last}, @long
          # Every call answered; each caller saw the old version, then the new.
          assert last == {:ok, 2}
          assert [1 | _] = versions
          assert versions == Enum.sort(versions)
          assert Enum.all?(versions, &(&1 in [1, 2]))
        end

        assert {:ok, %{crashed: 0, failed: 0, running: 0, waiting: 0}} = Pool.stats(name)
      end
    end
  end

  describe "swap/3" do
    test "a pool switches between a core module and a component" do
      core = ~s{(module (func (export "version") (result i32) i32.const 1))}

      component = ~s{(component
        (core module $m (func (export "version") (result i32) (i32.const 2)))
        (core instance $i (instantiate $m))
        (func (export "version") (result u32) (canon lift (core func $i "version"))))}

      name = start_pool!(wasm: core)
      assert {:ok, %Munition.Module{kind: :component}} = Pool.swap(name, component)
      assert {:ok, 2, _} = Munition.fire_pooled(name, "version", [])
      assert {:ok, %Munition.Module{kind: :module}} = Pool.swap(name, core)
      assert {:ok, 1, _} = Munition.fire_pooled(name, "version", [])
    end

    test "the new version's fuel is its own: :auto from its code" do
      name = start_pool!(wasm: @add, fuel: :auto)
      looping = ~s{(module (func (export "add") (param i32 i32) (result i32) (loop br 0) i32.const 0))}
      {:ok, module} = Pool.swap(name, looping)
      assert Pool.fetch(name).options.fuel == Munition.Fuel.Policy.for_module(module)

      assert Pool.fetch(name).options.fuel !=
               Munition.Fuel.Policy.for_module(Munition.compile(@add) |> elem(1))
    end

    test "a caller's mistake raises; a pool that is not running is :pool_unavailable" do
      name = start_pool!(wasm: @add)

      assert_raise ArgumentError, ~r/name must be an atom, got: "x"/, fn -> Pool.swap("x", @add) end
      assert_raise ArgumentError, ~r/unknown keys \[:fuel\]/, fn -> Pool.swap(name, @add, fuel: 1) end

      assert_raise ArgumentError, ~r/compile_timeout .* got: 0/, fn ->
        Pool.swap(name, @add, compile_timeout: 0)
      end

      assert_raise ArgumentError, ~r/wasm must be wasm bytes, .* got: 42/, fn -> Pool.swap(name, 42) end

      {:ok, wasmi} = Munition.compile(@add, runtime: Munition.Runtime.Wasmi)

      assert_raise ArgumentError,
                   ~r/compiled by Munition.Runtime.Wasmi and cannot run on Munition.Runtime.Wasmtime/,
                   fn ->
                     Pool.swap(name, wasmi)
                   end

      # Whether or not the pool runs.
      assert_raise ArgumentError, ~r/got: 42/, fn -> Pool.swap(:no_such_pool, 42) end

      assert Pool.swap(:no_such_pool, @add) ==
               {:error, {:pool_unavailable, "no pool named :no_such_pool is running"}}

      assert Pool.module(:no_such_pool) ==
               {:error, {:pool_unavailable, "no pool named :no_such_pool is running"}}
    end
  end

  describe "start_link/1" do
    test "a module that cannot run is an error tuple, as fire/4 would say" do
      Process.flag(:trap_exit, true)
      assert {:error, {:invalid_module, _}} = Pool.start_link(name: unique_name(), wasm: <<0, 1, 2>>)

      assert {:error, {:capability_denied, [%{name: "get_time_ms", needs: :time}]}} =
               Pool.start_link(
                 name: unique_name(),
                 wasm: ~s{(module (import "munition" "get_time_ms" (func (result i64))))}
               )
    end

    test "a caller's mistake raises ArgumentError naming the value" do
      assert_raise ArgumentError, ~r/name must be an atom, got: "x"/, fn ->
        Pool.start_link(name: "x", wasm: @add)
      end

      assert_raise ArgumentError, ~r/size must be a positive integer, got: 0/, fn ->
        Pool.start_link(name: unique_name(), wasm: @add, size: 0)
      end

      assert_raise ArgumentError, ~r/needs :wasm/, fn -> Pool.start_link(name: unique_name()) end

      assert_raise ArgumentError, ~r/max_memory/, fn ->
        Pool.start_link(name: unique_name(), wasm: @add, max_memory: -5)
      end

      assert_raise ArgumentError, ~r/unknown capability/, fn ->
        Pool.start_link(name: unique_name(), wasm: @add, capabilities: [:nope])
      end

      {:ok, compiled_by_wasmtime} = Munition.compile(@add)

      assert_raise ArgumentError,
                   ~r/compiled by Munition.Runtime.Wasmtime and cannot run on Munition.Runtime.Wasmi/,
                   fn ->
                     Pool.start_link(
                       name: unique_name(),
                       wasm: compiled_by_wasmtime,
                       runtime: Munition.Runtime.Wasmi
                     )
                   end
    end

    test "the pool's :limits bound the compile it does when it starts" do
      Process.flag(:trap_exit, true)
      wat = ~s{(module (func) (func) (func (export "f")))}

      assert {:error, {:module_limit, message}} =
               Pool.start_link(name: unique_name(), wasm: wat, limits: [functions: 2])

      assert message =~ "functions"
      assert {:ok, _} = Pool.start_link(name: unique_name(), wasm: wat, limits: [functions: 3])
    end

    test "a missing pool is the same {:error, {:pool_unavailable, _}} for stats/1 and fire_pooled/4" do
      missing = {:error, {:pool_unavailable, "no pool named :no_such_pool is running"}}
      assert Pool.stats(:no_such_pool) == missing
      assert Munition.fire_pooled(:no_such_pool, "f", []) == missing

      name = unique_name()
      {:ok, pid} = Pool.start_link(name: name, wasm: ~s{(module (func (export "f")))})
      assert {:ok, %{size: 100}} = Pool.stats(name)
      GenServer.stop(pid)
      assert Pool.stats(name) == Munition.fire_pooled(name, "f", [])
      assert {:error, {:pool_unavailable, _}} = Pool.stats(name)
    end

    test "a pool name that is not an atom is the caller's mistake, for stats/1 and fire_pooled/4" do
      for bad <- ["rules", nil, 42] do
        message = "a pool's name must be an atom, got: #{inspect(bad)}"
        assert_raise ArgumentError, message, fn -> Pool.stats(bad) end
        assert_raise ArgumentError, message, fn -> Munition.fire_pooled(bad, "f", []) end
        assert_raise ArgumentError, message, fn -> Munition.fire_pooled(bad, "f", [], node: :any) end
      end
    end
  end
end

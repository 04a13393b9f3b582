defmodule Munition.Fuel.PolicyTest do
  # Reads and writes the application environment and the global meter.
  use ExUnit.Case, async: false
  import Munition.Fixtures, only: [counter_wat: 1]
  import Munition.AppEnv

  alias Munition.Fuel.{Meter, Policy}

  doctest Munition.Fuel.Policy

  # Runs its inner loop n * n times.
  defp nested_wat do
    ~s{(module (func (export "f") (param i32) (local i32 i32)
      (local.set 1 (local.get 0))
      (block (loop
        (br_if 1 (i32.eqz (local.get 1)))
        (local.set 2 (local.get 0))
        (block (loop
          (br_if 1 (i32.eqz (local.get 2)))
          (local.set 2 (i32.sub (local.get 2) (i32.const 1)))
          (br 0)))
        (local.set 1 (i32.sub (local.get 1) (i32.const 1)))
        (br 0)))))}
  end

  @straight_wat ~s{(module (func (export "f") (param i32) (result i32)
    (i32.add (i32.mul (local.get 0) (i32.const 3)) (i32.const 1))))}

  @triple_wat ~s{(module (func (export "f")
    (loop (loop (loop (br 0)) (br 0)) (br 0))))}

  defp compile!(wat) do
    {:ok, module} = Munition.compile(wat)
    module
  end

  setup do
    Meter.reset()
    %{module: compile!(@straight_wat)}
  end

  describe "resolve!/3 with budgets and profiles" do
    test "nil is the default budget", %{module: module} do
      assert Policy.resolve!(nil, module, "f") == 10_000_000
    end

    test "a positive integer is used as is", %{module: module} do
      assert Policy.resolve!(1, module, "f") == 1
      assert Policy.resolve!(123_456, module, "f") == 123_456
    end

    test "the built-in profiles", %{module: module} do
      assert Policy.resolve!(:strict, module, "f") == 1_000_000
      assert Policy.resolve!(:default, module, "f") == 10_000_000
      assert Policy.resolve!(:generous, module, "f") == 100_000_000
    end

    test ":default_fuel in the environment sets nil and :default", %{module: module} do
      put_env(:default_fuel, 2_000)
      assert Policy.resolve!(nil, module, "f") == 2_000
      assert Policy.resolve!(:default, module, "f") == 2_000
      assert Policy.profiles().default == 2_000
    end

    test "profiles from the environment are added and override the built-ins", %{module: module} do
      put_env(:fuel_profiles, batch: 5_000_000_000, strict: 50_000)
      assert Policy.resolve!(:batch, module, "f") == 5_000_000_000
      assert Policy.resolve!(:strict, module, "f") == 50_000
      assert Policy.resolve!(:generous, module, "f") == 100_000_000
    end

    test "a profile budget is what the call gets" do
      put_env(:fuel_profiles, tiny: 10)
      assert {:crash, :fuel_exhausted, _} = Munition.fire(counter_wat("tiny"), "f", [100], fuel: :tiny)
      assert {:ok, nil, %{fuel_consumed: 804}} = Munition.fire(counter_wat("tiny"), "f", [100], fuel: :strict)
    end
  end

  describe "resolve!/3 with bad values" do
    for bad <- [0, -1, -10_000_000, 1.5, 10.0, :unknown, :stricter, "10", [], {:fuel, 1}, true] do
      test "#{inspect(bad)} raises ArgumentError naming it", %{module: module} do
        bad = unquote(Macro.escape(bad))

        error = assert_raise ArgumentError, fn -> Policy.resolve!(bad, module, "f") end
        assert error.message =~ "got: #{inspect(bad)}"
      end
    end

    test "fire/4 refuses a bad fuel before running anything" do
      assert_raise ArgumentError, ~r/got: -5/, fn -> Munition.fire(@straight_wat, "f", [1], fuel: -5) end

      assert_raise ArgumentError, ~r/got: :nope/, fn ->
        Munition.fire(@straight_wat, "f", [1], fuel: :nope)
      end
    end

    test "a bad profile in the environment raises naming it", %{module: module} do
      put_env(:fuel_profiles, broken: 0)
      assert_raise ArgumentError, ~r/\{:broken, 0\}/, fn -> Policy.resolve!(:strict, module, "f") end
    end

    test ":auto, :adaptive and :default cannot be configured as profiles", %{module: module} do
      for name <- [:auto, :adaptive, :default] do
        put_env(:fuel_profiles, [{name, 5}])
        assert_raise ArgumentError, ~r/#{inspect(name)}/, fn -> Policy.resolve!(:strict, module, "f") end
      end
    end
  end

  describe ":auto" do
    test "gives a module with nested loops more than a straight-line one", %{module: straight} do
      nested = compile!(nested_wat())
      assert nested.stats.max_loop_depth == 2

      straight_budget = Policy.resolve!(:auto, straight, "f")
      nested_budget = Policy.resolve!(:auto, nested, "f")

      assert nested_budget > straight_budget
      assert nested_budget > 100 * straight_budget
      assert nested_budget == Policy.estimate(nested.stats)
    end

    test "stays within the default bounds", %{module: straight} do
      assert Policy.resolve!(:auto, straight, "f") == 10_000
      assert Policy.estimate(straight.stats) < 10_000

      triple = compile!(@triple_wat)
      assert Policy.estimate(triple.stats) > 100_000_000
      assert Policy.resolve!(:auto, triple, "f") == 100_000_000
    end

    test "stays within configured bounds", %{module: straight} do
      put_env(:auto_fuel, min: 50_000, max: 200_000)
      nested = compile!(nested_wat())

      assert Policy.resolve!(:auto, straight, "f") == 50_000
      assert Policy.resolve!(:auto, nested, "f") == 200_000
      assert Policy.for_module(nested, max: 300_000) == 300_000
    end

    test "rejects bad bounds", %{module: module} do
      assert_raise ArgumentError, ~r/must not exceed/, fn -> Policy.for_module(module, min: 10, max: 5) end
      assert_raise ArgumentError, ~r/got: "bytes"/, fn -> Policy.for_module("bytes") end
      put_env(:auto_fuel, min: 0)
      assert_raise ArgumentError, ~r/got: 0/, fn -> Policy.resolve!(:auto, module, "f") end
    end

    test "lets a nested loop finish and stops a runaway with fuel, not the clock" do
      assert {:ok, nil, _} = Munition.fire(nested_wat(), "f", [200], fuel: :auto)

      assert {:crash, :fuel_exhausted, dump} = Munition.fire(@triple_wat, "f", [], fuel: :auto)
      assert dump.fuel_consumed == 100_000_000
    end
  end

  describe ":adaptive" do
    test "falls back to :auto before there is history" do
      module = compile!(counter_wat("fallback"))
      assert Policy.for_history(module, "f") == :not_enough_history
      assert Policy.resolve!(:adaptive, module, "f") == Policy.for_module(module)

      for _ <- 1..19, do: {:ok, _, _} = Munition.fire(module, "f", [100])
      assert Policy.resolve!(:adaptive, module, "f") == Policy.for_module(module)
    end

    test "converges to p99 of successful calls times the headroom after enough history" do
      module = compile!(counter_wat("converge"))
      for _ <- 1..20, do: {:ok, _, %{fuel_consumed: 804}} = Munition.fire(module, "f", [100])

      assert Policy.for_history(module, "f") == {:ok, 1_608}
      assert Policy.resolve!(:adaptive, module, "f") == 1_608
      assert Policy.resolve!(:adaptive, module, "f") < Policy.for_module(module)

      # The budget is what the next call gets: enough for its usual work...
      assert {:ok, nil, %{fuel_remaining: 804}} = Munition.fire(module, "f", [100], fuel: :adaptive)
      # ...and not for ten times more.
      assert {:crash, :fuel_exhausted, _} = Munition.fire(module, "f", [1_000], fuel: :adaptive)
    end

    test "ignores crashed calls and follows the tail of a mixed history" do
      # No floor, to see the history's own figure.
      put_env(:adaptive_fuel, min: 1)
      module = compile!(counter_wat("mixed"))
      # 99 calls of 84 fuel, then one of 8_004: p99 is 84 (nearest rank).
      for _ <- 1..99, do: {:ok, _, %{fuel_consumed: 84}} = Munition.fire(module, "f", [10])
      {:ok, _, %{fuel_consumed: 8_004}} = Munition.fire(module, "f", [1_000])
      for _ <- 1..10, do: {:crash, :fuel_exhausted, _} = Munition.fire(module, "f", [1_000], fuel: 100)

      {:ok, budget} = Policy.for_history(module, "f")
      # The histogram's p99 is the top of the bucket holding 84: 84..87.
      assert budget in (84 * 2)..(87 * 2)
      assert budget < 2 * 8_004

      # One more slow call per 99 fast ones moves the p99 to it.
      for _ <- 1..3, do: {:ok, _, _} = Munition.fire(module, "f", [1_000])
      {:ok, budget} = Policy.for_history(module, "f")
      assert budget in (8_004 * 2)..(8_191 * 2)
    end

    test "follows the configured samples, quantile, headroom and floor" do
      put_env(:adaptive_fuel, min_samples: 3, quantile: 0.5, headroom: 1.5, min: 10)
      module = compile!(counter_wat("configured"))
      for n <- [1, 1, 100], do: Munition.fire(module, "f", [n])

      # p50 of [12, 12, 804] is 12; 12 * 1.5 = 18.
      assert Policy.resolve!(:adaptive, module, "f") == 18

      put_env(:adaptive_fuel, min_samples: 3, quantile: 0.5, headroom: 1.5, min: 1_000)
      assert Policy.resolve!(:adaptive, module, "f") == 1_000

      put_env(:adaptive_fuel, headroom: -1)
      assert_raise ArgumentError, ~r/headroom: -1/, fn -> Policy.resolve!(:adaptive, module, "f") end
    end

    test "prepared once (as a pool does), the settings are those of that moment; the history is read per call" do
      module = compile!(counter_wat("prepared"))
      put_env(:adaptive_fuel, min_samples: 3, quantile: 0.5, headroom: 1.5, min: 10)
      prepared = Policy.prepare_adaptive(module)
      assert Policy.resolve!(prepared, module, "f") == Policy.for_module(module)

      for n <- [1, 1, 100], do: Munition.fire(module, "f", [n])
      assert Policy.resolve!(prepared, module, "f") == 18

      # Configured otherwise later: only what is prepared after sees it.
      put_env(:adaptive_fuel, min_samples: 3, quantile: 0.5, headroom: 1.5, min: 1_000)
      assert Policy.resolve!(prepared, module, "f") == 18
      assert Policy.resolve!(Policy.prepare_adaptive(module), module, "f") == 1_000

      put_env(:adaptive_fuel, headroom: -1)
      assert_raise ArgumentError, ~r/headroom: -1/, fn -> Policy.prepare_adaptive(module) end
    end

    test "falls back to :auto when the meter is not running" do
      module = compile!(counter_wat("stopped"))
      for _ <- 1..20, do: Munition.fire(module, "f", [100])
      assert Policy.resolve!(:adaptive, module, "f") == 1_608

      :ok = Supervisor.terminate_child(Munition.Supervisor, Meter)
      on_exit(fn -> Supervisor.restart_child(Munition.Supervisor, Meter) end)

      assert Policy.resolve!(:adaptive, module, "f") == Policy.for_module(module)
      assert {:ok, nil, _} = Munition.fire(module, "f", [100], fuel: :adaptive)
    end
  end
end

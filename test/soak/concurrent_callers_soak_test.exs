Code.require_file("soak_helpers.exs", __DIR__)

defmodule Munition.Soak.ConcurrentCallersTest do
  # Load: 5,000 callers at once with mixed outcomes, several rounds. More
  # callers than the engine's 1,000 instance slots, so some wait in line
  # (Munition.Instance.Slots): every one of them gets its own right answer.
  use ExUnit.Case, async: false

  alias Munition.Instance.Slots
  alias Munition.Soak

  @moduletag :soak

  @callers 5_000
  @rounds 5
  # Generous: a caller waits in line, behind thousands of others on two cores.
  @timeout 300_000

  @tag timeout: 3_600_000
  test "5,000 concurrent callers with mixed outcomes, several rounds: every caller gets the right answer" do
    kinds = List.to_tuple(kinds())
    baseline = Soak.live()

    Soak.say(
      "concurrent",
      "#{@rounds} rounds of #{@callers} callers at once, #{tuple_size(kinds)} kinds; " <>
        "#{:erlang.system_info(:schedulers_online)} schedulers, " <>
        "#{:erlang.system_info(:dirty_cpu_schedulers)} dirty CPU schedulers, #{Soak.machine()}; " <>
        "stores alive at start #{baseline}"
    )

    for round <- 1..@rounds do
      sampler = Soak.start_sampler()
      first = (round - 1) * @callers

      {us, answers} =
        Soak.timed(fn ->
          callers =
            for n <- first..(first + @callers - 1), into: %{} do
              kind = elem(kinds, rem(n, tuple_size(kinds)))
              test = self()

              {pid, monitor} =
                spawn_monitor(fn ->
                  {us, {name, right?, result}} = Soak.timed(fn -> Soak.fire(kind, n) end)
                  send(test, {:answer, n, name, right?, us, summary(result)})
                end)

              {monitor, {n, pid}}
            end

          collect(callers, %{})
        end)

      peaks = Soak.stop_sampler(sampler)
      wrong = for {n, {name, false, _us, summary}} <- answers, do: {n, name, summary}
      latencies = for {_n, {_name, _right, us, _}} <- answers, do: us

      counts =
        Enum.frequencies_by(answers, fn {_n, {name, _, _, summary}} -> "#{name}:#{outcome(summary)}" end)

      Soak.say(
        "concurrent",
        "round #{round}: #{map_size(answers)} answers in #{Soak.ms(us)} ms " <>
          "(#{round(map_size(answers) * 1_000_000 / max(us, 1))} calls/s); per caller median #{Soak.ms(Soak.quantile(latencies, 0.5))} ms, " <>
          "p99 #{Soak.ms(Soak.quantile(latencies, 0.99))} ms, max #{Soak.ms(Enum.max(latencies))} ms; " <>
          "peak stores alive #{peaks.live}, peak waiting for a slot #{peaks.waiting}; wrong #{length(wrong)}"
      )

      Soak.say("concurrent", "round #{round} outcomes: #{Soak.tally(counts)}")

      assert map_size(answers) == @callers
      assert wrong == [], "wrong answers (first few): #{inspect(Enum.take(wrong, 5))}"
    end

    Soak.say("concurrent", "stores alive at end #{Soak.live()}, waiting for a slot #{Slots.waiting()}")
    assert Soak.live() == baseline
    assert Slots.waiting() == 0
  end

  # The mixed kinds, plus a longer guest (a few ms of fuel, so slots stay busy
  # and callers queue) and a runaway with a short deadline: a :timeout crash,
  # or {:error, {:overloaded, _}} when it waited in line past its deadline.
  defp kinds do
    {:ok, spin} = Munition.compile(Soak.spin_wat())

    Soak.mixed(timeout: @timeout) ++
      [
        {:slow, Soak.compile!(Soak.counter_wat()), "f", &[200_000 + rem(&1, 1000)], [timeout: @timeout],
         fn n, result ->
           expected = 200_000 + rem(n, 1000)
           match?({:ok, ^expected, _}, result)
         end},
        {:runaway, spin, "f", fn _ -> [] end, [fuel: 1_000_000_000_000, timeout: 300, forensics: :minimal],
         fn _, result ->
           match?({:crash, :timeout, %{trap: :interrupt}}, result) or
             match?({:error, {:overloaded, _}}, result)
         end}
      ]
  end

  # Answers by caller number; a caller that died without answering is a wrong answer.
  defp collect(callers, answers) when map_size(callers) == 0, do: answers

  defp collect(callers, answers) do
    receive do
      {:answer, n, name, right?, us, summary} ->
        collect(callers, Map.put(answers, n, {name, right?, us, summary}))

      {:DOWN, monitor, :process, _pid, reason} ->
        {{n, _pid}, callers} = Map.pop!(callers, monitor)

        if reason == :normal,
          do: collect(callers, answers),
          else: collect(callers, Map.put(answers, n, {:died, false, 0, reason}))
    end
  end

  defp outcome({:ok, _value}), do: :ok
  defp outcome({:crash, reason, _trap}), do: reason
  defp outcome({:error, {reason, _}}), do: reason
  defp outcome(other), do: inspect(other)

  defp summary({:ok, value, _meta}), do: {:ok, value}
  defp summary({:crash, reason, dump}), do: {:crash, reason, dump && dump.trap}
  defp summary({:error, reason}), do: {:error, reason}
end

Code.require_file("soak_helpers.exs", __DIR__)

defmodule Munition.Soak.MixedCallsTest do
  # Soak: 200,000 mixed calls (returns, traps, fuel exhaustion, memory-limit
  # crashes, Elixir and built-in host functions, binaries), half from the test
  # process one after another, half from a few processes at once. No store
  # outlives its call, and once warm the VM's resident memory stays flat.
  use ExUnit.Case, async: false

  alias Munition.Soak

  @moduletag :soak

  @calls 200_000
  @rounds 10
  @concurrency 4
  # Resident memory may move this much (a fraction) between the end of the
  # warm-up round and the end of the run.
  @rss_tolerance 0.05

  @tag timeout: 3_600_000
  test "200,000 mixed calls: no store left behind, resident memory flat after warm-up" do
    kinds = List.to_tuple(Soak.mixed())
    baseline = Soak.live()
    per_round = div(@calls, @rounds)
    {%{"VmRSS" => rss_start}, settle_start} = Soak.settled_memory_kib()

    Soak.say(
      "mixed",
      "#{@calls} calls in #{@rounds} rounds (round 1 is the warm-up), each half sequential, " <>
        "half from #{@concurrency} processes; #{tuple_size(kinds)} kinds; " <>
        "#{Soak.machine()}; stores alive at start #{baseline}, RSS at start #{rss_start} KiB (settled in #{settle_start} ms)"
    )

    {totals, rss_warm, seq_us, conc_us} =
      Enum.reduce(1..@rounds, {%{}, nil, 0, 0}, fn round, {totals, rss_warm, seq_us, conc_us} ->
        first = (round - 1) * per_round
        half = div(per_round, 2)

        {us_seq, seq} = Soak.timed(fn -> run(kinds, first, first + half - 1) end)

        {us_conc, conc} =
          Soak.timed(fn ->
            chunk = div(per_round - half, @concurrency)

            for p <- 0..(@concurrency - 1) do
              from = first + half + p * chunk
              Task.async(fn -> run(kinds, from, from + chunk - 1) end)
            end
            |> Enum.map(&Task.await(&1, :infinity))
          end)

        totals = Enum.reduce([seq | conc], totals, &merge/2)
        # The warm-up mark is a settled reading, as the end's is; the other
        # rounds' figures are taken at once (after a collection), for the trend.
        {memory, settle} =
          if round == 1 do
            Soak.settled_memory_kib()
          else
            Soak.collect_all()
            {Soak.memory_kib(), nil}
          end

        rss = memory["VmRSS"]
        live = Soak.live()

        Soak.say(
          "mixed",
          "round #{round}: sequential #{rate(half, us_seq)} calls/s, concurrent #{rate(per_round - half, us_conc)} calls/s, " <>
            "RSS #{rss} KiB (anon #{memory["RssAnon"]}, file #{memory["RssFile"]}), stores alive #{live}" <>
            if(settle, do: " (the warm-up mark, settled in #{settle} ms)", else: "")
        )

        {totals, rss_warm || rss, seq_us + us_seq, conc_us + us_conc}
      end)

    {%{"VmRSS" => rss_end}, settle_end} = Soak.settled_memory_kib()
    live_end = Soak.live()
    drift = (rss_end - rss_warm) / rss_warm

    Soak.say("mixed", "outcomes: #{Soak.tally(totals.counts)}")

    Soak.say(
      "mixed",
      "overall #{rate(@calls, seq_us + conc_us)} calls/s (sequential #{rate(div(@calls, 2), seq_us)}, " <>
        "concurrent #{rate(div(@calls, 2), conc_us)}); RSS start #{rss_start} KiB, " <>
        "warm-up mark #{rss_warm} KiB, end #{rss_end} KiB (settled in #{settle_end} ms; " <>
        "#{Float.round(drift * 100, 2)}% from the mark); " <>
        "stores alive #{baseline} -> #{live_end}"
    )

    assert totals.wrong == [], "wrong answers (first few): #{inspect(totals.wrong, limit: 5)}"
    assert Enum.sum(Map.values(totals.counts)) == @calls
    assert live_end == baseline
    assert abs(drift) <= @rss_tolerance, "RSS moved #{Float.round(drift * 100, 2)}% after the warm-up"
  end

  # Runs calls `from..to`, each of kind `n rem kinds`: `%{counts, wrong}`.
  defp run(kinds, from, to) do
    Enum.reduce(from..to, %{counts: %{}, wrong: []}, fn n, acc ->
      {name, right?, result} = Soak.fire(elem(kinds, rem(n, tuple_size(kinds))), n)
      acc = %{acc | counts: Map.update(acc.counts, name, 1, &(&1 + 1))}

      if right? or length(acc.wrong) >= 5,
        do: acc,
        else: %{acc | wrong: [{n, name, result} | acc.wrong]}
    end)
  end

  defp merge(part, acc) do
    %{
      counts: Map.merge(Map.get(acc, :counts, %{}), part.counts, fn _k, a, b -> a + b end),
      wrong: Map.get(acc, :wrong, []) ++ part.wrong
    }
  end

  defp rate(calls, us), do: round(calls * 1_000_000 / max(us, 1))
end

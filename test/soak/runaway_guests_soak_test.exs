Code.require_file("soak_helpers.exs", __DIR__)

defmodule Munition.Soak.RunawayGuestsTest do
  # Load: every dirty CPU scheduler busy with runaway guests (`(loop br 0)`,
  # fuel to spare, a multi-second deadline, several per dirty scheduler),
  # while a heartbeat process on a normal scheduler ticks every millisecond
  # and short calls keep going. Figures first without the runaways, then with
  # them; no time bound is asserted.
  use ExUnit.Case, async: false

  alias Munition.Soak

  @moduletag :soak

  # Runaways per dirty CPU scheduler: SOAK_RUNAWAYS_PER_DIRTY=20 gives the
  # 40 runaways on 2 cores that issue 23 measured its bounds with.
  @per_dirty_scheduler String.to_integer(System.get_env("SOAK_RUNAWAYS_PER_DIRTY", "4"))
  @runaway_timeout 3_000
  @plenty 1_000_000_000_000_000
  # Heartbeats in the phase without runaways.
  @quiet_beats 2_000
  @counter_turns 3_000_000

  @tag timeout: 600_000
  test "runaway guests on every dirty scheduler: the heartbeat and short calls go on, the runaways time out" do
    dirty = :erlang.system_info(:dirty_cpu_schedulers)
    runaways = dirty * @per_dirty_scheduler
    baseline = Soak.live()
    add = Soak.compile!(Soak.add_wat())
    counter = Soak.compile!(Soak.counter_wat())
    spin = Soak.compile!(Soak.spin_wat())

    Soak.say(
      "runaway",
      "#{:erlang.system_info(:schedulers_online)} normal schedulers, #{dirty} dirty CPU schedulers, " <>
        "#{Soak.machine()} (shared with other work: figures are noisy); " <>
        "#{runaways} runaways (#{@per_dirty_scheduler} per dirty scheduler), #{@runaway_timeout} ms deadline; " <>
        "short calls back to back: add (ends in its first slice, on the normal scheduler) and, every tenth, " <>
        "a counter of #{@counter_turns} turns (a few ms: goes on to dirty schedulers)"
    )

    test = self()

    # Without runaways, for comparison: until the heartbeat has beaten @quiet_beats times.
    heartbeat = start_heartbeat(@quiet_beats)
    caller = spawn_link(fn -> send(test, {:calls, run_calls(add, counter)}) end)
    receive(do: (:heartbeat_reached -> send(caller, :stop)))
    quiet = receive(do: ({:calls, calls} -> calls))
    report("without runaways", stop_heartbeat(heartbeat), quiet)

    # Runaways and the heartbeat alone.
    {alone, beats_alone} = with_runaways(spin, runaways, baseline, fn -> nil end)
    report("#{runaways} runaways, heartbeat alone", beats_alone, nil)

    # Runaways, the heartbeat and short calls.
    {outcomes, beats_loaded} =
      with_runaways(spin, runaways, baseline, fn ->
        spawn_link(fn -> send(test, {:calls, run_calls(add, counter)}) end)
      end)

    loaded = receive(do: ({:calls, calls} -> calls))
    report("#{runaways} runaways and short calls", beats_loaded, loaded)

    for {name, outcomes} <- [alone: alone, with_calls: outcomes] do
      durations = for {us, _} <- outcomes, do: us

      Soak.say(
        "runaway",
        "runaways (#{name}): #{Soak.tally(Enum.frequencies_by(outcomes, fn {_, r} -> inspect(Tuple.delete_at(r, 2)) end))}; " <>
          "returned after #{Soak.ms(Enum.min(durations))}..#{Soak.ms(Enum.max(durations))} ms " <>
          "(deadline #{@runaway_timeout} ms)"
      )
    end

    for {_us, result} <- alone ++ outcomes, do: assert({:crash, :timeout, %{trap: :interrupt}} = result)
    assert loaded.wrong == [], "wrong answers to short calls: #{inspect(Enum.take(loaded.wrong, 5))}"
    assert quiet.wrong == []
    assert loaded.add != [], "no short call completed while the runaways ran"
    assert loaded.counter != []
    assert Soak.live() == baseline
  end

  # Starts `runaways` runaway guests, and once they all hold their stores the
  # heartbeat and what `during` starts (a process, or nil); when every runaway
  # has returned, stops both: `{[{us, result}], beats}`, the beats with the
  # pauses dirty schedulers made to give the VM's threads their cores.
  defp with_runaways(spin, runaways, baseline, during) do
    test = self()
    pauses = Munition.Native.instance_slice_pauses()

    for i <- 1..runaways do
      spawn_link(fn ->
        {us, result} =
          Soak.timed(fn -> Munition.fire(spin, "f", [], fuel: @plenty, timeout: @runaway_timeout) end)

        send(test, {:runaway, i, us, result})
      end)
    end

    # Every runaway holds its store from instantiation to its end.
    assert {:ok, _} = Soak.poll(fn -> Soak.live() >= baseline + runaways end)
    heartbeat = start_heartbeat(nil)
    pid = during.()
    outcomes = for i <- 1..runaways, do: receive(do: ({:runaway, ^i, us, result} -> {us, result}))
    if pid, do: send(pid, :stop)
    beats = stop_heartbeat(heartbeat)
    {outcomes, Map.put(beats, :pauses, Munition.Native.instance_slice_pauses() - pauses)}
  end

  defp report(phase, beats, calls) do
    Soak.say(
      "runaway",
      "#{phase}: heartbeat #{beats.beats} beats, worst gap #{Soak.ms(beats.worst)} ms, " <>
        "p99 gap #{Soak.ms(Soak.quantile(beats.gaps, 0.99))} ms" <>
        if(beats[:pauses], do: ", #{beats.pauses} slice pauses", else: "")
    )

    for {name, latencies} <- if(calls, do: [add: calls.add, counter: calls.counter], else: []) do
      Soak.say(
        "runaway",
        "#{phase}: #{length(latencies)} #{name} calls, median #{Soak.ms(Soak.quantile(latencies, 0.5))} ms, " <>
          "p99 #{Soak.ms(Soak.quantile(latencies, 0.99))} ms, max #{Soak.ms(Enum.max(latencies, fn -> nil end))} ms"
      )
    end
  end

  # Short calls back to back (nine adds, then a counter) until a :stop: their
  # latencies in µs, and any wrong answers.
  defp run_calls(add, counter), do: run_calls(add, counter, 0, %{add: [], counter: [], wrong: []})

  defp run_calls(add, counter, done, acc) do
    receive do
      :stop -> acc
    after
      0 ->
        {name, module, args, expected} =
          if rem(done, 10) == 9,
            do: {:counter, counter, [@counter_turns], @counter_turns},
            else: {:add, add, [done, 1], done + 1}

        {us, result} = Soak.timed(fn -> Munition.fire(module, "f", args, fuel: 100_000_000) end)

        acc =
          case result do
            {:ok, ^expected, _} -> Map.update!(acc, name, &[us | &1])
            other -> %{acc | wrong: [{name, other} | acc.wrong]}
          end

        run_calls(add, counter, done + 1, acc)
    end
  end

  # A process that sends itself a message every millisecond and records the
  # gaps between them; it tells the test once it has beaten `notify_at` times.
  defp start_heartbeat(notify_at) do
    test = self()

    spawn_link(fn ->
      :erlang.send_after(1, self(), :beat)
      beat(test, notify_at, System.monotonic_time(:microsecond), [], 0)
    end)
  end

  defp beat(test, notify_at, last, gaps, count) do
    receive do
      :beat ->
        now = System.monotonic_time(:microsecond)
        :erlang.send_after(1, self(), :beat)
        if count + 1 == notify_at, do: send(test, :heartbeat_reached)
        beat(test, notify_at, now, [now - last | gaps], count + 1)

      {:stop, from} ->
        send(from, {:beats, %{beats: count, worst: Enum.max(gaps, fn -> nil end), gaps: gaps}})
    end
  end

  defp stop_heartbeat(heartbeat) do
    send(heartbeat, {:stop, self()})
    receive(do: ({:beats, beats} -> beats))
  end
end

Code.require_file("soak_helpers.exs", __DIR__)

defmodule Munition.Soak.KilledCallersTest do
  # Soak: 2,000 callers, a killer process killing random ones at random
  # moments mid-call: waiting for a slot, mid-slice on a dirty scheduler,
  # inside an Elixir host function, holding a large memory, capturing a
  # crash. The killed leave no store, process or place in line behind, the
  # survivors get their right answers and nothing else in their mailboxes,
  # the VM lives, and later calls work.
  #
  # The seed is printed; `SOAK_SEED=n make soak` replays a run's choices
  # (which callers are killed and after which pauses; the machine decides the
  # rest).
  use ExUnit.Case, async: false

  import Bitwise

  alias Munition.Instance.Slots
  alias Munition.Soak

  @moduletag :soak

  @callers 2_000
  # Chance (in %) that the killer picks a caller.
  @kill_percent 50
  # Kills come at random moments within this many ms of the start.
  @kill_window 3_000
  @long 120_000

  @tag timeout: 3_600_000
  test "callers killed at random moments mid-call leave nothing behind; survivors are answered, and only answered" do
    seed = seed()
    kinds = List.to_tuple(kinds())
    baseline = Soak.live()
    processes = length(Process.list())
    test = self()

    Soak.say(
      "killed",
      "seed #{seed}; #{@callers} callers, #{tuple_size(kinds)} kinds, each picked for killing with chance " <>
        "#{@kill_percent}%, at a random moment in the first #{@kill_window} ms (most early); #{Soak.machine()}; stores alive at start #{baseline}, processes #{processes}"
    )

    sampler = Soak.start_sampler()

    callers =
      for n <- 1..@callers, into: %{} do
        {pid, monitor} = spawn_monitor(fn -> caller(test, elem(kinds, rem(n, tuple_size(kinds))), n) end)
        {monitor, {n, pid}}
      end

    spawn_link(fn -> killer(test, seed, callers |> Map.values() |> Enum.sort()) end)

    # Until the killer is done and every caller still alive has answered.
    {us, {callers, answers, killed}} = Soak.timed(fn -> settle(callers, %{}, %{}, nil) end)
    peaks = Soak.stop_sampler(sampler)
    killed_before = Enum.count(killed, fn {_n, answered?} -> not answered? end)

    Soak.say(
      "killed",
      "killer done and every caller answered or dead in #{Soak.ms(us)} ms: " <>
        "#{map_size(killed)} died killed (#{killed_before} before answering, " <>
        "#{map_size(killed) - killed_before} after), #{map_size(callers)} alive; " <>
        "peak stores alive #{peaks.live}, peak waiting for a slot #{peaks.waiting}"
    )

    # Stores of killed callers go with their process heaps: nothing to wait
    # for but the count.
    {live_poll, polls} = Soak.poll(fn -> Soak.live() == baseline end)

    Soak.say(
      "killed",
      "stores alive back to #{Soak.live()} (baseline #{baseline}) after #{polls} polls; " <>
        "waiting for a slot #{Slots.waiting()}"
    )

    assert live_poll == :ok, "#{Soak.live() - baseline} stores outlived their killed callers"

    # Once every store is gone, the survivors report what their mailboxes
    # hold, and exit.
    for {_monitor, {_n, pid}} <- callers, do: send(pid, :report)
    {mailboxes, late_kills} = reports(callers, %{}, 0)
    leaks = for {n, messages} <- mailboxes, messages != [], do: {n, messages}
    survivors = Map.take(answers, Map.keys(mailboxes))
    wrong = for {n, {name, false, summary}} <- survivors, do: {n, name, summary}

    outcomes =
      Enum.frequencies_by(survivors, fn {_n, {name, _, summary}} -> "#{name}:#{elem(summary, 0)}" end)

    Soak.say(
      "killed",
      "#{map_size(survivors)} survivors (#{late_kills} more found killed after answering); " <>
        "outcomes: #{Soak.tally(outcomes)}"
    )

    # Every caller is gone, and so is every host function's process.
    {procs_poll, proc_polls} = Soak.poll(fn -> length(Process.list()) <= processes end)

    Soak.say(
      "killed",
      "processes back to #{length(Process.list())} (at start #{processes}) after #{proc_polls} polls; " <>
        "survivors with messages left #{length(leaks)}, wrong answers #{length(wrong)}, " <>
        "messages left to the test process #{inspect(elem(Process.info(self(), :message_queue_len), 1))}"
    )

    assert leaks == [], "messages leaked to survivors (first few): #{inspect(Enum.take(leaks, 5))}"
    assert wrong == [], "wrong answers (first few): #{inspect(Enum.take(wrong, 5))}"
    assert procs_poll == :ok
    assert Slots.waiting() == 0
    assert {:messages, []} = Process.info(self(), :messages)

    # The VM lives, and calls work after the massacre.
    after_kinds = for kind <- Tuple.to_list(kinds), do: Soak.fire(kind, 7)

    Soak.say(
      "killed",
      "after: #{Enum.map_join(after_kinds, ", ", fn {name, ok?, _} -> "#{name} #{ok?}" end)}"
    )

    assert Enum.all?(after_kinds, fn {_, ok?, _} -> ok? end)
    assert Soak.live() == baseline
  end

  defp seed do
    case System.get_env("SOAK_SEED") do
      nil -> :rand.uniform(1 <<< 32)
      seed -> String.to_integer(seed)
    end
  end

  # Mostly long-running kinds, so kills land mid-call: runaways holding slots
  # (a :timeout, or overloaded if they waited in line past their deadline),
  # guests inside a slow Elixir host function, a guest holding 8 MiB of
  # touched memory (released off the normal schedulers), long counters, and
  # the mixed kinds.
  defp kinds do
    busy =
      {"env", "lookup", {[:i32], [:i32]}, :kv,
       fn _ctx, key -> Enum.reduce(1..100_000, key, &max/2) && key * 2 end}

    spin = Soak.compile!(Soak.spin_wat())
    host = Soak.compile!(Soak.host_wat())

    memory = Soak.compile!(~s{(module (memory 1) (func (export "f") (result i32) (local $a i32)
        (drop (memory.grow (i32.const 127)))
        (block $done (loop $touch
          (i32.store (local.get $a) (i32.const 1))
          (local.set $a (i32.add (local.get $a) (i32.const 4096)))
          (br_if $done (i32.ge_u (local.get $a) (i32.const 8388608)))
          (br $touch)))
        (memory.size)))})

    long = [
      {:runaway, spin, "f", fn _ -> [] end, [fuel: 1_000_000_000_000, timeout: 2_000, forensics: :minimal],
       fn _, result ->
         match?({:crash, :timeout, %{trap: :interrupt}}, result) or match?({:error, {:overloaded, _}}, result)
       end},
      {:slow_host, host, "f", &[&1], [host_functions: [busy], capabilities: [:kv], timeout: @long],
       fn n, result -> match?({:ok, r, _} when r == n * 2, result) end},
      {:memory_8mib, memory, "f", fn _ -> [] end, [max_memory: 16 <<< 20, timeout: @long],
       fn _, result -> match?({:ok, 128, _}, result) end},
      {:long_counter, Soak.compile!(Soak.counter_wat()), "f", &[1_000_000 + &1], [timeout: @long],
       fn n, result -> match?({:ok, r, _} when r == 1_000_000 + n, result) end}
    ]

    long ++ long ++ Soak.mixed(timeout: @long)
  end

  # A caller: fires, answers the test, then waits to report its mailbox.
  defp caller(test, kind, n) do
    {name, right?, result} = Soak.fire(kind, n)
    send(test, {:answer, n, name, right?, summary(result)})

    receive do
      :report ->
        {:messages, messages} = Process.info(self(), :messages)
        send(test, {:mailbox, n, messages})
    end
  end

  defp summary({:ok, value, _meta}), do: {:ok, value}
  defp summary({:crash, reason, dump}), do: {:crash, reason, dump && dump.trap}
  defp summary({:error, reason}), do: {:error, reason}

  # Picks about @kill_percent% of the callers (seeded), gives each a moment
  # in the first @kill_window ms (seeded; cubed, so most come early, while
  # most calls are in flight, and some late, when only the runaways are), and
  # kills each at its moment unless it has already answered (then it is only
  # counted: the point is to kill mid-call). The pauses are the workload's
  # randomness, not a synchronisation.
  defp killer(test, seed, callers) do
    :rand.seed(:exsss, seed)

    victims =
      for caller <- callers, :rand.uniform(100) <= @kill_percent do
        {round(@kill_window * :math.pow(:rand.uniform(), 3)), caller}
      end

    started = System.monotonic_time(:millisecond)

    states =
      for {moment, {_n, pid}} <- Enum.sort(victims) do
        receive do
        after
          max(started + moment - System.monotonic_time(:millisecond), 0) ->
            case where(pid) do
              :answered ->
                :answered_before_its_moment

              state ->
                Process.exit(pid, :kill)
                state
            end
        end
      end

    send(test, {:killer_done, Enum.frequencies(states)})
  end

  # Where a caller stands, roughly (it moves on while this looks).
  defp where(pid) do
    case Process.info(pid, :current_function) do
      nil -> :already_dead
      {:current_function, {Munition.Instance.Waiters, :await, _}} -> :waiting_for_a_slot
      {:current_function, {Munition.Host.Calls, :loop, _}} -> :in_a_host_function
      {:current_function, {Munition.Native, _, _}} -> :in_a_nif
      {:current_function, {__MODULE__, :caller, _}} -> :answered
      {:current_function, {:code_server, _, _}} -> :loading_code
      {:current_function, mfa} -> Exception.format_mfa(elem(mfa, 0), elem(mfa, 1), elem(mfa, 2))
    end
  end

  # Until the killer is done and every caller alive has answered:
  # `{callers alive, answers by caller number, killed}` where `killed` maps
  # a killed caller's number to whether it had answered.
  defp settle(callers, answers, killed, killer_done) do
    if killer_done != nil and Enum.all?(callers, fn {_, {n, _}} -> Map.has_key?(answers, n) end) do
      {callers, answers, killed}
    else
      receive do
        {:killer_done, states} ->
          Soak.say("killed", "the killer's picks, by where they stood: #{Soak.tally(states)}")
          settle(callers, answers, killed, states)

        {:answer, n, name, right?, summary} ->
          settle(callers, Map.put(answers, n, {name, right?, summary}), killed, killer_done)

        {:DOWN, monitor, :process, _pid, reason} ->
          {{n, _pid}, callers} = Map.pop!(callers, monitor)
          assert reason == :killed, "caller #{n} died of #{inspect(reason)}"
          settle(callers, answers, Map.put(killed, n, Map.has_key?(answers, n)), killer_done)
      end
    end
  end

  # The survivors' mailboxes, by caller number, until every caller is gone;
  # and how many were found killed only now (their DOWN came after the
  # killer's word that it was done).
  defp reports(callers, mailboxes, late_kills) when map_size(callers) == 0, do: {mailboxes, late_kills}

  defp reports(callers, mailboxes, late_kills) do
    receive do
      {:mailbox, n, messages} ->
        reports(callers, Map.put(mailboxes, n, messages), late_kills)

      {:DOWN, monitor, :process, _pid, reason} ->
        {{n, _pid}, callers} = Map.pop!(callers, monitor)

        case reason do
          :normal -> reports(callers, mailboxes, late_kills)
          :killed -> reports(callers, Map.delete(mailboxes, n), late_kills + 1)
        end
    end
  end
end

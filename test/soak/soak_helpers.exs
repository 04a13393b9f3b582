defmodule Munition.Soak do
  @moduledoc false
  # Shared by the soak and load suites in test/soak (`make soak`): the mixed
  # guests, what each caller must get back, and the figures the suites print.
  # Every suite prints its figures. None asserts a time bound of its own: the
  # one bound asserted (hostile inputs, slow compiles) is the manager's, a call
  # returning by its deadline plus one second of grace.

  import Bitwise

  alias Munition.Instance.Slots
  alias Munition.Runtime.Wasmtime

  @add ~s{(module (func (export "f") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))}
  @trap ~s{(module (memory 1) (func (export "f") (param i32) unreachable))}
  @div ~s{(module (func (export "f") (param i32) (result i32) (i32.div_s (local.get 0) (i32.const 0))))}
  @spin ~s{(module (func (export "f") (loop br 0)))}
  @grow ~s{(module (memory 1) (func (export "f") (result i32) (memory.grow (i32.const 100))))}
  @host ~s{(module (import "env" "lookup" (func $lookup (param i32) (result i32)))
    (func (export "f") (param i32) (result i32) (call $lookup (local.get 0))))}
  @log ~s{(module (import "munition" "log" (func $log (param i32 i32 i32)))
    (memory (export "memory") 1) (data (i32.const 16) "soak")
    (func (export "f") (param i32) (result i32)
      (call $log (i32.const 1) (i32.const 16) (i32.const 4)) (i32.add (local.get 0) (i32.const 1))))}
  @counter ~s{(module (func (export "f") (param i32) (result i32) (local $left i32)
    (local.set $left (local.get 0))
    (block (loop
      (br_if 1 (i32.eqz (local.get $left)))
      (local.set $left (i32.sub (local.get $left) (i32.const 1)))
      (br 0)))
    (local.get 0)))}

  @doc "WAT of a guest whose `f` loops forever (`(loop br 0)`)."
  def spin_wat, do: @spin

  @doc "WAT of a guest whose `f(n)` returns what its import `env.lookup(n)` returns."
  def host_wat, do: @host

  @doc "WAT of a guest whose `f(a, b)` returns `a + b`."
  def add_wat, do: @add

  @doc "WAT of a guest whose `f(n)` counts down from `n` (8 fuel a turn) and returns `n`."
  def counter_wat, do: @counter

  @doc """
  The mixed workload: `{name, module, function, args_fun, opts, check_fun}`
  for each kind of call. `args_fun.(n)` gives caller `n`'s arguments and
  `check_fun.(n, result)` says whether `result` is the right answer for
  caller `n` (answers depend on `n`, so crossed answers are caught).
  """
  def mixed(extra_opts \\ []) do
    lookup = {"env", "lookup", {[:i32], [:i32]}, :kv, fn _ctx, key -> key * 2 end}
    failing = {"env", "lookup", {[:i32], [:i32]}, :kv, fn _ctx, key -> raise "no key #{key}" end}
    upcase = compile!(File.read!("test/fixtures/upcase.wat"))

    kinds = [
      {:return, compile!(@add), "f", &[&1, 1], [],
       fn n, result -> match?({:ok, r, _} when r == n + 1, result) end},
      {:trap, compile!(@trap), "f", &[&1], [],
       fn _, result -> match?({:crash, :trap, %{trap: :unreachable}}, result) end},
      {:div_by_zero, compile!(@div), "f", &[&1], [forensics: :minimal],
       fn _, result -> match?({:crash, :trap, %{trap: :integer_divide_by_zero}}, result) end},
      {:fuel_exhausted, compile!(@spin), "f", fn _ -> [] end, [fuel: 20_000],
       fn _, result -> match?({:crash, :fuel_exhausted, %{trap: :out_of_fuel}}, result) end},
      {:memory_limit, compile!(@grow), "f", fn _ -> [] end, [max_memory: 2 <<< 16],
       fn _, result -> match?({:crash, :memory_limit, _}, result) end},
      {:host_function, compile!(@host), "f", &[&1], [host_functions: [lookup], capabilities: [:kv]],
       fn n, result -> match?({:ok, r, _} when r == n * 2, result) end},
      {:host_error, compile!(@host), "f", &[&1],
       [host_functions: [failing], capabilities: [:kv], forensics: false],
       fn _, result -> match?({:crash, :host_error, nil}, result) end},
      {:builtin_log, compile!(@log), "f", &[&1], [capabilities: [:log]],
       fn n, result -> match?({:ok, r, %{log: [{1, "soak"}]}} when r == n + 1, result) end},
      {:binary, upcase, "upcase", &["soak #{&1}"], [result: :binary],
       fn n, result ->
         expected = "SOAK #{n}"
         match?({:ok, ^expected, _}, result)
       end},
      {:counter, compile!(@counter), "f", fn _ -> [5_000] end, [],
       fn _, result -> match?({:ok, 5_000, _}, result) end}
    ]

    for {name, module, function, args, opts, check} <- kinds,
        do: {name, module, function, args, opts ++ extra_opts, check}
  end

  @doc "Runs kind `kind` of `mixed/1` as caller `n`: `{name, right_answer?, result}`."
  def fire({name, module, function, args, opts, check}, n) do
    result = Munition.fire(module, function, args.(n), opts)
    {name, check.(n, result), result}
  end

  def compile!(wat) do
    {:ok, module} = Munition.compile(wat)
    module
  end

  @doc "Stores alive in the engine."
  def live, do: Wasmtime.live_count()

  @doc """
  The VM's memory figures from `/proc/self/status` in KiB (`VmRSS`, and its
  parts `RssAnon`, `RssFile`, `RssShmem`), after collecting every process and
  letting the VM give back what that freed.

  The VM returns freed memory to the OS over seconds, about one step a second
  (an idle VM just started goes from 35 to 27 MiB anonymous over 10 s here),
  so a reading right after a collection depends on when it is taken. This
  polls (every millisecond, there being no event to wait for) until `VmRSS`
  has not gone down for `quiet_ms`, at most `max_ms`: `{figures, waited_ms}`.
  """
  def settled_memory_kib(quiet_ms \\ 3_000, max_ms \\ 60_000) do
    collect_all()
    started = System.monotonic_time(:millisecond)
    settle(memory_kib(), started, started, quiet_ms, max_ms)
  end

  defp settle(low, started, since, quiet_ms, max_ms) do
    now = System.monotonic_time(:millisecond)

    if now - since >= quiet_ms or now - started >= max_ms do
      {low, now - started}
    else
      receive do
      after
        1 ->
          current = memory_kib()

          if current["VmRSS"] < low["VmRSS"],
            do: settle(current, started, System.monotonic_time(:millisecond), quiet_ms, max_ms),
            else: settle(low, started, since, quiet_ms, max_ms)
      end
    end
  end

  @doc "Garbage-collects every process."
  def collect_all, do: Enum.each(Process.list(), &:erlang.garbage_collect/1)

  @doc "The VM's memory figures from `/proc/self/status` in KiB, as they are now."
  def memory_kib do
    for [_, key, kib] <-
          Regex.scan(~r/^(VmRSS|RssAnon|RssFile|RssShmem):\s+(\d+) kB/m, File.read!("/proc/self/status")),
        into: %{},
        do: {key, String.to_integer(kib)}
  end

  @doc """
  Polls `check` every millisecond until it holds, at most `tries` times, for
  what has no event to wait on (stores released by the garbage collector).
  Returns `{:ok, polls}` or `{:gave_up, polls}`; no time bound is asserted.
  """
  def poll(check, tries \\ 600_000), do: poll(check, tries, 0)

  defp poll(check, tries, polls) do
    cond do
      check.() ->
        {:ok, polls}

      polls >= tries ->
        {:gave_up, polls}

      true ->
        receive do
        after
          1 -> poll(check, tries, polls + 1)
        end
    end
  end

  @doc """
  Starts a process (linked) that samples the stores alive and the callers
  waiting for a slot every millisecond (a figure, not a synchronisation);
  `stop_sampler/1` returns their peaks, `%{live: n, waiting: n}`.
  """
  def start_sampler do
    spawn_link(fn -> sample(%{live: 0, waiting: 0}) end)
  end

  defp sample(peaks) do
    receive do
      {:stop, from} -> send(from, {:peaks, peaks})
    after
      1 -> sample(%{live: max(peaks.live, live()), waiting: max(peaks.waiting, Slots.waiting())})
    end
  end

  @doc "Stops a sampler: the peaks it saw."
  def stop_sampler(sampler) do
    send(sampler, {:stop, self()})

    receive do
      {:peaks, peaks} -> peaks
    end
  end

  @doc "`{microseconds, result}` of `fun`."
  def timed(fun) do
    started = System.monotonic_time(:microsecond)
    result = fun.()
    {System.monotonic_time(:microsecond) - started, result}
  end

  @doc "The `q` quantile (0..1) of a list of numbers, nearest rank."
  def quantile([], _q), do: nil

  def quantile(values, q) do
    sorted = Enum.sort(values)
    Enum.at(sorted, min(length(sorted) - 1, max(0, ceil(q * length(sorted)) - 1)))
  end

  @doc "A microsecond figure as milliseconds, 2 decimals."
  def ms(nil), do: "-"
  def ms(us), do: :erlang.float_to_binary(us / 1000, decimals: 2)

  @doc """
  The machine's load, for a suite's first line: the machine is shared, and
  its figures are only as quiet as it is.
  """
  def machine do
    [one, five | _] = String.split(File.read!("/proc/loadavg"))
    "#{:erlang.system_info(:logical_processors)} cores, load average #{one} (1 min) #{five} (5 min)"
  end

  @doc "Prints a line of figures, prefixed with the suite's name."
  def say(suite, line), do: IO.puts("[soak #{suite}] #{line}")

  @doc "How each outcome was counted: `%{name => count}` as a sorted, printable line."
  def tally(counts), do: counts |> Enum.sort() |> Enum.map_join(", ", fn {k, v} -> "#{k} #{v}" end)
end

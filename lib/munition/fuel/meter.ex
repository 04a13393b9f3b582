defmodule Munition.Fuel.Meter do
  # Counted per key, in this order: `:ok`, every crash reason of the
  # vocabulary, and `:other` for any other atom a caller passes.
  @outcomes [:ok | Munition.Reason.crash_reasons()] ++ [:other]

  @moduledoc """
  Records the outcome of every call, per module hash and function, and keeps
  statistics that answer "how much fuel does this guest really use?".

  `Munition.fire/4` calls `record/5` after every call. For each
  `{module_hash, function}` the meter keeps:

    * calls and outcomes by reason:
      #{Enum.map_join(@outcomes, ", ", &"`#{inspect(&1)}`")}
      (`:ok`, each of `Munition.Reason.crash_reasons/0`, and `:other` for any
      reason the meter does not know);
    * fuel consumed by all calls and by successful calls alone (count, sum, min,
      max, mean, p50/p95/p99), and execution time in microseconds likewise;
    * a sliding window of the last 60 minutes in one-minute buckets (calls,
      outcomes, fuel and time sums and maxima per minute), so a trend is visible
      next to the totals.

  Read them with `stats/2` and `top/2`; clear them with `reset/0`.
  `Munition.Fuel.Policy` reads the successful calls' fuel for `fuel: :adaptive`.

  ## Cost and concurrency

  Recording never goes through a process. Each key owns one fixed-size array
  of unsigned 64-bit atomic counters, held natively (`munition_core::meter`)
  and laid out by this module (counts, sums, minima and maxima, histograms,
  window); a public ETS table with read concurrency maps the key to its
  counters. A call that records does one ETS lookup and one NIF call,
  which makes every update of the call without a lock (see `bench/meter.exs`
  for its cost next to a `fire/4`).

  ## Bounded memory

  Whatever the number of calls, a key costs one array of fixed size (about
  13 KiB), because percentiles come from log-scale histograms (each power
  of two split in 8 buckets) rather than kept samples: values below 16
  are exact and a percentile is at most 12.5% above the true value (it is the
  upper edge of the bucket holding that rank, clamped to the observed min and
  max: an over-estimate, the safe side for a budget). Values from
  `15 * 2^36`, just under `2^40`, up share the last bucket. The window of
  the last hour is 60 one-minute slots in the same array.

  The number of keys is capped by `config :munition, :meter, max_keys: n`
  (default `1_000`). Past the cap, the least recently recorded tenth of the
  keys is evicted by the caller that adds a new key; a call that would add a key
  while another caller is evicting and the table is already 10% over the cap is
  not recorded. `memory/0` reports what the meter holds.

  ## Accuracy

  Totals are exact. The window may miss the few calls that record at the very
  moment a minute's slot is recycled, and a call that records at the moment
  its key is evicted or the meter is reset is lost.

  ## When the meter is not running

  The meter's process (started by Munition's application) owns the table.
  Without it, for example in a script that did not start the application,
  `record/5` does nothing, `stats/2` returns `nil`, `top/2` returns `[]`, and
  `Munition.fire/4` works without history.
  """

  use GenServer

  alias Munition.Fuel.Meter.{Histogram, Window}
  alias Munition.Native

  @table __MODULE__
  @table_id {__MODULE__, :table}

  @outcome_count length(@outcomes)

  @max_u64 0xFFFF_FFFF_FFFF_FFFF

  @buckets Histogram.buckets()

  # Layout of a key's counters, 0-based as the native side indexes them: when
  # last recorded, a count per outcome, sum/min/max of fuel, of successful
  # calls' fuel and of time, three histograms (successful calls' fuel,
  # crashed calls' fuel, time), and the window. Defined here only: the native
  # side takes it as @layout when a key's counters are made, and checks it.
  @last_seen 0
  @outcome_base 1
  @fuel_sum @outcome_base + @outcome_count
  @fuel_min @fuel_sum + 1
  @fuel_max @fuel_sum + 2
  @ok_sum @fuel_sum + 3
  @ok_min @fuel_sum + 4
  @ok_max @fuel_sum + 5
  @time_sum @fuel_sum + 6
  @time_min @fuel_sum + 7
  @time_max @fuel_sum + 8
  @hist_ok @fuel_sum + 9
  @hist_crash @hist_ok + @buckets
  @hist_time @hist_crash + @buckets
  @window Window.new(@hist_time + @buckets, @outcomes)
  @size @hist_time + @buckets + Window.size(@window)

  # The first outcome, :ok, is the one the native side counts as success.
  @layout %{
    size: @size,
    last_seen: @last_seen,
    outcomes: @outcome_base,
    outcome_count: @outcome_count,
    fuel: %{sum: @fuel_sum, min: @fuel_min, max: @fuel_max},
    ok_fuel: %{sum: @ok_sum, min: @ok_min, max: @ok_max},
    time: %{sum: @time_sum, min: @time_min, max: @time_max},
    histogram: Histogram.shape(),
    hist_ok: @hist_ok,
    hist_crash: @hist_crash,
    hist_time: @hist_time,
    window: Window.layout(@window)
  }

  @default_max_keys 1_000

  # What record/5 counts; anything else it ignores.
  defguardp is_call(hash, function, outcome, fuel, time)
            when is_binary(hash) and is_binary(function) and is_atom(outcome) and is_integer(fuel) and
                   fuel >= 0 and is_integer(time) and time >= 0

  @typedoc "Count, sum, min, max, mean and percentiles of a measure; `nil`s when nothing was recorded."
  @type summary :: %{
          count: non_neg_integer(),
          sum: non_neg_integer(),
          min: non_neg_integer() | nil,
          max: non_neg_integer() | nil,
          mean: float() | nil,
          p50: non_neg_integer() | nil,
          p95: non_neg_integer() | nil,
          p99: non_neg_integer() | nil
        }

  @type outcome :: :ok | Munition.Reason.crash() | :other

  @type stats :: %{
          module_hash: String.t(),
          function: String.t(),
          calls: non_neg_integer(),
          crashes: non_neg_integer(),
          outcomes: %{outcome() => non_neg_integer()},
          fuel: summary(),
          ok_fuel: summary(),
          time_us: summary(),
          last_seen: DateTime.t(),
          window: map()
        }

  ## Process

  @doc "Starts the meter, which owns its ETS table. Munition's application starts it."
  @spec start_link(keyword()) :: GenServer.on_start()
  def start_link(opts \\ []), do: GenServer.start_link(__MODULE__, opts, name: __MODULE__)

  @impl true
  def init(_opts) do
    # Read concurrency alone: recording only reads the table (a new key, an
    # eviction or a reset write it, rarely), and lock striping for writes
    # (write_concurrency) made every lookup about 40 ns dearer.
    @table = :ets.new(@table, [:set, :public, :named_table, read_concurrency: true])
    # Recording finds the table by its id: by its name costs a lookup in the
    # table of names, about 35 ns a call. Put again by each start (a stale
    # id, of a meter that stopped, names no table: recording does nothing).
    :persistent_term.put(@table_id, :ets.whereis(@table))
    {:ok, nil}
  end

  ## Recording

  @doc """
  Records one call. Never fails and never blocks the caller; does nothing when
  the meter is not running.

  `outcome` is `:ok` or the crash reason; reasons the meter does not know count
  as `:other`. `fuel_consumed` and `execution_time_us` are non-negative
  integers; a call with anything else is ignored.

  ## Examples

      iex> Munition.Fuel.Meter.record("f00d", "run", :ok, 1_200, 35)
      :ok
  """
  @spec record(String.t(), String.t(), atom(), non_neg_integer(), non_neg_integer()) :: :ok
  def record(hash, function, outcome, fuel, time) when is_call(hash, function, outcome, fuel, time) do
    case counters_for({hash, function}, nil) do
      nil ->
        :ok

      counters ->
        Native.meter_record(counters, outcome_index(outcome), u64(fuel), u64(time))
    end
  rescue
    # No meter running (or stopping while this records): the caller's result
    # must not depend on the meter.
    ArgumentError -> :ok
  end

  def record(_hash, _function, _outcome, _fuel, _time), do: :ok

  # Recording at a given wall-clock time, so tests can drive the window.
  @doc false
  @spec record_at(term(), term(), term(), term(), term(), non_neg_integer()) :: :ok
  def record_at(hash, function, outcome, fuel, time, now_ms)
      when is_call(hash, function, outcome, fuel, time) and is_integer(now_ms) and now_ms >= 0 do
    case counters_for({hash, function}, now_ms) do
      nil ->
        :ok

      counters ->
        Native.meter_record_at(counters, outcome_index(outcome), u64(fuel), u64(time), now_ms)
    end
  rescue
    ArgumentError -> :ok
  end

  def record_at(_hash, _function, _outcome, _fuel, _time, _now_ms), do: :ok

  for {outcome, index} <- Enum.with_index(@outcomes) do
    defp outcome_index(unquote(outcome)), do: unquote(index)
  end

  defp outcome_index(_other), do: @outcome_count - 1

  # Beyond 64 bits counts as the largest 64-bit value. A guard rather than
  # min/2, a function call each that cost 10 ns on OTP 25.
  defp u64(value) when value <= @max_u64, do: value
  defp u64(_value), do: @max_u64

  # The key's counters: `lookup_element` copies out only the reference, not
  # the key (a 64-byte hash) as `lookup` would, on every call. `at_ms` is
  # when a key added here was last seen: nil for now.
  defp counters_for(key, at_ms) do
    :ets.lookup_element(:persistent_term.get(@table_id, @table), key, 2)
  rescue
    ArgumentError -> add_key(@table, key, at_ms || now_ms())
  end

  defp add_key(table, key, now_ms) do
    max_keys = max_keys()

    case :ets.info(table, :size) do
      # No meter running.
      :undefined ->
        nil

      size ->
        if size < max_keys or (evict(table, max_keys) and :ets.info(table, :size) < max_keys) or
             size < max_keys + max(div(max_keys, 10), 1) do
          insert_new_key(table, key, new_counters(now_ms))
        end
    end
  end

  defp insert_new_key(table, key, counters) do
    if :ets.insert_new(table, {key, counters}) do
      counters
    else
      # Another caller added it first: count into theirs.
      case :ets.lookup(table, key) do
        [{_key, theirs}] -> theirs
        [] -> nil
      end
    end
  end

  defp new_counters(now_ms) do
    case Native.meter_new(@layout, now_ms) do
      {:ok, counters} -> counters
      # The layout is this module's own: a refusal is a bug here.
      {:error, {_kind, message}} -> raise "the native meter refused its layout: #{message}"
    end
  end

  # Evicts the least recently recorded tenth of the keys. One caller at a time
  # (the :evicting row is the lock); returns whether this caller evicted.
  defp evict(table, max_keys) do
    if :ets.insert_new(table, {:evicting, self()}) do
      try do
        keys = :ets.select(table, [{{{:"$1", :"$2"}, :"$3"}, [], [{{{{:"$1", :"$2"}}, :"$3"}}]}])
        excess = length(keys) - max_keys + max(div(max_keys, 10), 1)

        keys
        |> Enum.map(fn {key, counters} -> {Native.meter_get(counters, @last_seen), key} end)
        |> Enum.sort()
        |> Enum.take(max(excess, 0))
        |> Enum.each(fn {_seen, key} -> :ets.delete(table, key) end)

        true
      after
        :ets.delete(table, :evicting)
      end
    else
      false
    end
  end

  defp max_keys do
    case Application.get_env(:munition, :meter, [])[:max_keys] do
      n when is_integer(n) and n > 0 -> n
      _ -> @default_max_keys
    end
  end

  defp now_ms, do: System.system_time(:millisecond)

  # The histogram's, public here before it had a module of its own.
  @doc false
  @spec bucket(non_neg_integer()) :: non_neg_integer()
  defdelegate bucket(value), to: Histogram

  @doc false
  @spec bucket_max(non_neg_integer()) :: non_neg_integer()
  defdelegate bucket_max(bucket), to: Histogram

  ## Reading

  @doc """
  Statistics of `function` of a module (its hash or the `%Munition.Module{}`),
  or `nil` when nothing is recorded for it (or the meter is not running).

  The map holds `:calls`, `:crashes`, `:outcomes` (a count for every reason),
  `:fuel` (all calls), `:ok_fuel` (successful calls only) and `:time_us`, each a
  `t:summary/0`, `:last_seen`, and `:window`: the last 60 minutes with the same
  counts and `:fuel`/`:time_us` as `%{sum, max, mean}`, plus `:per_minute`, a
  list of `%{minute: DateTime, calls, crashes, outcomes, fuel_sum, fuel_max,
  time_us_sum, time_us_max}` for the minutes that had calls, oldest first.

  ## Examples

      iex> Munition.Fuel.Meter.reset()
      iex> Munition.Fuel.Meter.record("c0ffee", "run", :ok, 100, 10)
      iex> Munition.Fuel.Meter.record("c0ffee", "run", :trap, 40, 30)
      iex> stats = Munition.Fuel.Meter.stats("c0ffee", "run")
      iex> {stats.calls, stats.crashes, stats.outcomes.trap}
      {2, 1, 1}
      iex> Map.take(stats.fuel, [:count, :sum, :min, :max, :mean])
      %{count: 2, sum: 140, min: 40, max: 100, mean: 70.0}
      iex> stats.ok_fuel.p99
      100
      iex> Munition.Fuel.Meter.stats("c0ffee", "other")
      nil
  """
  @spec stats(String.t() | Munition.Module.t(), String.t()) :: stats() | nil
  def stats(module_or_hash, function) do
    key = key!(module_or_hash, function)

    with counters when counters != nil <- lookup(key) do
      build_stats(key, counters, now_ms())
    end
  end

  @doc false
  @spec stats_at(String.t() | Munition.Module.t(), String.t(), non_neg_integer()) :: stats() | nil
  def stats_at(module_or_hash, function, now_ms) do
    key = key!(module_or_hash, function)

    with counters when counters != nil <- lookup(key) do
      build_stats(key, counters, now_ms)
    end
  end

  @doc """
  The number of successful calls of `function` of a module and the `quantile`
  (between 0 and 1) of their fuel, as `{samples, fuel}`; `{0, nil}` without
  history. Cheaper than `stats/2`: this is what `fuel: :adaptive` reads on
  every call.

  ## Examples

      iex> Munition.Fuel.Meter.reset()
      iex> for fuel <- 1..10, do: Munition.Fuel.Meter.record("beef", "run", :ok, fuel, 1)
      iex> Munition.Fuel.Meter.record("beef", "run", :fuel_exhausted, 1_000, 1)
      iex> Munition.Fuel.Meter.successful_fuel("beef", "run", 0.5)
      {10, 5}
      iex> Munition.Fuel.Meter.successful_fuel("beef", "run", 0.99)
      {10, 10}
      iex> Munition.Fuel.Meter.successful_fuel("dead", "run", 0.99)
      {0, nil}
  """
  @spec successful_fuel(String.t() | Munition.Module.t(), String.t(), float()) ::
          {non_neg_integer(), non_neg_integer() | nil}
  def successful_fuel(module_or_hash, function, quantile)
      when is_number(quantile) and quantile > 0 and quantile <= 1 do
    case lookup(key!(module_or_hash, function)) do
      nil ->
        {0, nil}

      counters ->
        case Native.meter_get(counters, @outcome_base) do
          0 ->
            {0, nil}

          n ->
            min = Native.meter_get(counters, @ok_min)
            max = Native.meter_get(counters, @ok_max)
            at = &Native.meter_get(counters, &1)
            {n, Histogram.quantile(at, @hist_ok, n, min, max, quantile)}
        end
    end
  end

  @doc """
  The `n` keys with the most fuel consumed in total (`by: :fuel`, the default),
  the most crashes (`by: :crashes`) or the most calls (`by: :calls`), as
  `stats/2` maps, largest first.

  ## Examples

      iex> Munition.Fuel.Meter.reset()
      iex> Munition.Fuel.Meter.record("aa", "hot", :ok, 9_000, 1)
      iex> Munition.Fuel.Meter.record("bb", "cold", :trap, 10, 1)
      iex> Munition.Fuel.Meter.top(1, by: :fuel) |> Enum.map(& &1.function)
      ["hot"]
      iex> Munition.Fuel.Meter.top(1, by: :crashes) |> Enum.map(& &1.function)
      ["cold"]
  """
  @spec top(non_neg_integer(), keyword()) :: [stats()]
  def top(n, opts \\ [])

  def top(n, opts) when is_integer(n) and n >= 0 do
    opts = Keyword.validate!(opts, by: :fuel)

    score =
      case opts[:by] do
        :fuel -> fn counters -> Native.meter_get(counters, @fuel_sum) end
        :crashes -> fn counters -> sum_outcomes(counters, 1) end
        :calls -> fn counters -> sum_outcomes(counters, 0) end
        other -> raise ArgumentError, "by must be :fuel, :crashes or :calls, got: #{inspect(other)}"
      end

    now = now_ms()

    entries()
    |> Enum.map(fn {key, counters} -> {score.(counters), key, counters} end)
    |> Enum.sort_by(fn {score, key, _counters} -> {score, key} end, :desc)
    |> Enum.take(n)
    |> Enum.map(fn {_score, key, counters} -> build_stats(key, counters, now) end)
  end

  def top(n, _opts), do: raise(ArgumentError, "n must be a non-negative integer, got: #{inspect(n)}")

  # Outcome counts from index `from` (0: every call, 1: every crash).
  defp sum_outcomes(counters, from),
    do: Enum.sum(for i <- from..(@outcome_count - 1), do: Native.meter_get(counters, @outcome_base + i))

  @doc """
  Forgets everything recorded. Returns `:ok`, also when the meter is not running.
  """
  @spec reset() :: :ok
  def reset do
    case :ets.whereis(@table) do
      :undefined -> :ok
      table -> :ets.delete_all_objects(table)
    end

    :ok
  rescue
    ArgumentError -> :ok
  end

  # Recursion rather than Enum.sum/1, whose spec loses the integer type; the
  # guard tells Dialyzer what the NIF stub cannot.
  defp counters_bytes([]), do: 0

  defp counters_bytes([{_key, counters} | rest]) do
    case Native.meter_bytes(counters) do
      bytes when is_integer(bytes) and bytes >= 0 -> bytes + counters_bytes(rest)
    end
  end

  @doc """
  Bytes the meter holds: its table and every key's counters. Constant for a
  fixed set of keys, whatever the number of calls.
  """
  @spec memory() :: non_neg_integer()
  def memory do
    case :ets.whereis(@table) do
      :undefined ->
        0

      table ->
        # The table can go between whereis and info (the meter stopping).
        case :ets.info(table, :memory) do
          words when is_integer(words) -> words * :erlang.system_info(:wordsize) + counters_bytes(entries())
          :undefined -> 0
        end
    end
  rescue
    ArgumentError -> 0
  end

  @doc "The number of `{module_hash, function}` keys the meter tracks."
  @spec size() :: non_neg_integer()
  def size, do: length(entries())

  defp entries do
    case :ets.whereis(@table) do
      :undefined -> []
      table -> :ets.select(table, [{{{:"$1", :"$2"}, :"$3"}, [], [{{{{:"$1", :"$2"}}, :"$3"}}]}])
    end
  rescue
    ArgumentError -> []
  end

  # As counters_for/2 finds them (`:adaptive` reads them on every call), but
  # nil for a key not there, or no meter.
  defp lookup(key) do
    :ets.lookup_element(:persistent_term.get(@table_id, @table), key, 2)
  rescue
    ArgumentError -> nil
  end

  defp key!(%Munition.Module{hash: hash}, function) when is_binary(function), do: {hash, function}
  defp key!(hash, function) when is_binary(hash) and is_binary(function), do: {hash, function}

  defp key!(module, function) when is_binary(function) do
    raise ArgumentError, "expected a module hash or a %Munition.Module{}, got: #{inspect(module)}"
  end

  defp key!(_module, function) do
    raise ArgumentError, "function must be a string, got: #{inspect(function)}"
  end

  defp build_stats({hash, function}, counters, now_ms) do
    values = counters |> Native.meter_read() |> List.to_tuple()
    at = &elem(values, &1)
    hist = fn base -> for b <- 0..(@buckets - 1), do: at.(base + b) end

    counts = for i <- 0..(@outcome_count - 1), do: at.(@outcome_base + i)
    outcomes = Enum.zip(@outcomes, counts) |> Map.new()
    calls = Enum.sum(counts)
    ok = outcomes.ok

    ok_hist = hist.(@hist_ok)
    all_hist = Enum.zip_with(ok_hist, hist.(@hist_crash), &+/2)

    %{
      module_hash: hash,
      function: function,
      calls: calls,
      crashes: calls - ok,
      outcomes: outcomes,
      fuel: summary(calls, at.(@fuel_sum), at.(@fuel_min), at.(@fuel_max), all_hist),
      ok_fuel: summary(ok, at.(@ok_sum), at.(@ok_min), at.(@ok_max), ok_hist),
      time_us: summary(calls, at.(@time_sum), at.(@time_min), at.(@time_max), hist.(@hist_time)),
      last_seen: DateTime.from_unix!(at.(@last_seen), :millisecond),
      window: Window.read(at, @window, now_ms)
    }
  end

  defp summary(0, _sum, _min, _max, _hist) do
    %{count: 0, sum: 0, min: nil, max: nil, mean: nil, p50: nil, p95: nil, p99: nil}
  end

  defp summary(count, sum, min, max, hist) do
    [p50, p95, p99] = Histogram.percentiles(hist, count, min, max, [0.5, 0.95, 0.99])
    %{count: count, sum: sum, min: min, max: max, mean: sum / count, p50: p50, p95: p95, p99: p99}
  end
end

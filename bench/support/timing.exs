defmodule Munition.Bench.Timing do
  @moduledoc false
  # Shared by the scripts in bench/ (loaded with Code.require_file): times
  # single calls in nanoseconds and reads percentiles off the sorted sample.

  @doc "Runs `fun` `warmup` times untimed, then `n` times timed; sorted nanoseconds."
  def sample(n, fun, warmup \\ 0) do
    Enum.each(1..warmup//1, fn _ -> fun.() end)

    for _ <- 1..n do
      t0 = :erlang.monotonic_time(:nanosecond)
      fun.()
      :erlang.monotonic_time(:nanosecond) - t0
    end
    |> Enum.sort()
  end

  @doc """
  Runs `fun` in a loop in `callers` processes at once for about `ms`
  milliseconds. Returns `{sorted nanoseconds of every call, calls per
  second}`; the rate counts the calls over the time from the common start to
  the end of the last one.
  """
  def concurrent(callers, ms, fun) do
    parent = self()
    go = make_ref()

    pids =
      for _ <- 1..callers do
        spawn_link(fn ->
          receive do
            {^go, deadline} -> send(parent, {self(), loop(fun, deadline, [])})
          end
        end)
      end

    t0 = :erlang.monotonic_time(:nanosecond)
    Enum.each(pids, &send(&1, {go, t0 + ms * 1_000_000}))
    results = for pid <- pids, do: receive(do: ({^pid, result} -> result))
    finished = results |> Enum.map(&elem(&1, 1)) |> Enum.max()
    times = results |> Enum.flat_map(&elem(&1, 0)) |> Enum.sort()
    {times, length(times) / ((finished - t0) / 1.0e9)}
  end

  defp loop(fun, deadline, times) do
    t0 = :erlang.monotonic_time(:nanosecond)

    if t0 >= deadline do
      {times, t0}
    else
      fun.()
      loop(fun, deadline, [:erlang.monotonic_time(:nanosecond) - t0 | times])
    end
  end

  @doc "The nearest-rank `q` percentile of a sorted sample."
  def percentile(sorted, q) do
    n = length(sorted)
    Enum.at(sorted, min(n - 1, max(ceil(q * n) - 1, 0)))
  end
end

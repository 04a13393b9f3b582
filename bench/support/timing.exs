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

  @doc "The nearest-rank `q` percentile of a sorted sample."
  def percentile(sorted, q) do
    n = length(sorted)
    Enum.at(sorted, min(n - 1, max(ceil(q * n) - 1, 0)))
  end
end

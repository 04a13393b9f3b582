defmodule Munition.Fuel.Meter.Histogram do
  @moduledoc false
  # Log-scale histograms of non-negative integers, counted in a meter key's
  # counters (see `Munition.Fuel.Meter`), and the percentiles read from them.
  #
  # A histogram is `buckets/0` consecutive counters, from a base index the
  # caller chooses. Values 0 to 15 have a bucket each; above, each power of two
  # is split in 8 buckets, so a bucket's upper edge is at most 12.5% above any
  # value it holds. The last bucket, which has no upper edge, holds every value
  # from `15 * 2^36` (the top eighth of `[2^39, 2^40)`) up. However many values
  # are counted, a histogram keeps the same counters.
  #
  # A percentile is the upper edge of the bucket holding its rank (the
  # nearest-rank method), clamped to the smallest and largest value observed:
  # an over-estimate, the safe side for a fuel budget, and exact when every
  # value is the same or below 16.
  #
  # This module owns the histograms' shape (`shape/0`), the buckets' upper
  # edges and the percentiles. Which bucket counts a value is computed
  # natively (`munition_core::meter`), where calls are counted, and only
  # there: `bucket/1` asks it. Which counters hold which histogram is
  # `Munition.Fuel.Meter`'s.

  import Bitwise

  alias Munition.Native

  @max_u64 0xFFFF_FFFF_FFFF_FFFF

  # Values 0..15 have a bucket each; above, 2^@sub_bits buckets per power of
  # two up to 2^@max_exp; the last of those also takes every larger value.
  # The native side takes the same two numbers (shape/0) and checks them.
  @sub_bits 3
  @sub bsl(1, @sub_bits)
  @max_exp 40
  @buckets @sub + (@max_exp - @sub_bits) * @sub
  @shape %{sub_bits: @sub_bits, max_exp: @max_exp}

  @typedoc "A histogram's shape, as the native side takes it."
  @type shape :: %{sub_bits: pos_integer(), max_exp: pos_integer()}

  @doc "The shape of the histograms: what the native bucket function needs to know."
  @spec shape() :: shape()
  def shape, do: @shape

  @doc "The number of counters a histogram takes."
  @spec buckets() :: pos_integer()
  def buckets, do: @buckets

  @doc """
  The bucket, from `0` to `buckets() - 1`, that counts `value` (an unsigned
  64-bit integer; anything else raises `ArgumentError`).

  ## Examples

      iex> Enum.map([0, 15, 16, 17, 18, 1_000_000], &Munition.Fuel.Meter.Histogram.bucket/1)
      [0, 15, 16, 16, 17, 143]
  """
  @spec bucket(non_neg_integer()) :: non_neg_integer()
  def bucket(value), do: Native.meter_bucket(value, @shape)

  @doc """
  The largest value `bucket` counts (for the last bucket, which has no bound,
  the largest unsigned 64-bit integer).

  ## Examples

      iex> Enum.map([15, 16, 17, 143], &Munition.Fuel.Meter.Histogram.bucket_max/1)
      [15, 17, 19, 1_048_575]
  """
  @spec bucket_max(non_neg_integer()) :: non_neg_integer()
  def bucket_max(bucket) when bucket < 2 * @sub, do: bucket
  def bucket_max(bucket) when bucket >= @buckets - 1, do: @max_u64

  def bucket_max(bucket) do
    shift = div(bucket - @sub, @sub)
    mantissa = rem(bucket - @sub, @sub) + @sub
    bsl(mantissa + 1, shift) - 1
  end

  @doc """
  The percentiles `quantiles` (ascending, each above 0 and at most 1) of
  `count` values whose bucket counts are `counts`, and whose smallest and
  largest were `min` and `max`.

  A rank beyond what `counts` hold answers `max`: counts read while callers
  add to them can lag the `count` read before them.

  ## Examples

      iex> counts = [0, 1, 0, 2] ++ List.duplicate(0, Munition.Fuel.Meter.Histogram.buckets() - 4)
      iex> Munition.Fuel.Meter.Histogram.percentiles(counts, 3, 1, 3, [0.3, 0.5, 1.0])
      [1, 3, 3]
  """
  @spec percentiles([non_neg_integer()], pos_integer(), non_neg_integer(), non_neg_integer(), [number()]) ::
          [non_neg_integer()]
  def percentiles(counts, count, min, max, quantiles) do
    ranks = Enum.map(quantiles, &rank(count, &1))

    {found, _seen, left} =
      counts
      |> Enum.with_index()
      |> Enum.reduce({[], 0, ranks}, fn
        _bucket, {_found, _seen, []} = acc ->
          acc

        {n, bucket}, {found, seen, ranks} ->
          seen = seen + n
          {hit, rest} = Enum.split_while(ranks, &(&1 <= seen))
          {found ++ List.duplicate(bucket_max(bucket), length(hit)), seen, rest}
      end)

    Enum.map(found ++ List.duplicate(max, length(left)), &clamp(&1, min, max))
  end

  @doc """
  The percentile `quantile` of the `count` values counted in the histogram
  from index `base`, whose smallest and largest were `min` and `max`, as
  `percentiles/5` answers it. `at` answers the counter at an index.

  Reads from the top bucket down, so a high quantile reads few counters.

  ## Examples

      iex> counts = {0, 1, 0, 2}
      iex> Munition.Fuel.Meter.Histogram.quantile(&elem(counts, &1), 0, 3, 1, 3, 0.5)
      3
  """
  @spec quantile(
          (non_neg_integer() -> non_neg_integer()),
          non_neg_integer(),
          pos_integer(),
          non_neg_integer(),
          non_neg_integer(),
          number()
        ) :: non_neg_integer()
  def quantile(at, base, count, min, max, quantile) do
    above = count - rank(count, quantile)
    at |> walk_down(base, bucket(max), bucket(min), above, 0) |> clamp(min, max)
  end

  # The first bucket from the top under which lie no more than `above`
  # values; the lowest bucket, if the counts end before.
  defp walk_down(at, base, bucket, lowest, above, seen) do
    seen = seen + at.(base + bucket)

    if seen > above or bucket <= lowest,
      do: bucket_max(bucket),
      else: walk_down(at, base, bucket - 1, lowest, above, seen)
  end

  defp rank(count, quantile), do: max(ceil(quantile * count), 1)

  defp clamp(value, min, max), do: value |> min(max) |> max(min)
end

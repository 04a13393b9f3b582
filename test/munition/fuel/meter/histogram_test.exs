defmodule Munition.Fuel.Meter.HistogramTest do
  use ExUnit.Case, async: true

  alias Munition.Fuel.Meter.Histogram

  doctest Histogram

  @max_u64 0xFFFF_FFFF_FFFF_FFFF
  # The smallest value of the last bucket: the top eighth of [2^39, 2^40).
  @last_from 15 * Bitwise.bsl(1, 36)

  # Values across every range the buckets cover, from a fixed seed.
  defp values do
    :rand.seed(:exsss, {7, 8, 9})
    small = Enum.to_list(0..300)
    powers = for e <- 4..45, d <- [-1, 0, 1], do: Bitwise.bsl(1, e) + d
    random = for _ <- 1..2_000, do: :rand.uniform(Bitwise.bsl(1, :rand.uniform(44)))
    small ++ powers ++ random
  end

  # What the nearest-rank method gives on the values themselves.
  defp exact(sorted, q), do: Enum.at(sorted, max(ceil(q * length(sorted)), 1) - 1)

  # The bucket counts of `values`, and a function answering the count at an
  # index as a key's counters do (the histogram from index 0).
  defp counts(values) do
    by_bucket = Enum.frequencies_by(values, &Histogram.bucket/1)
    counts = for b <- 0..(Histogram.buckets() - 1), do: Map.get(by_bucket, b, 0)
    tuple = List.to_tuple(counts)
    {&elem(tuple, &1), counts}
  end

  describe "bucket/1 and bucket_max/1" do
    test "values below 16 have a bucket each" do
      for v <- 0..15, do: assert({Histogram.bucket(v), Histogram.bucket_max(v)} == {v, v})
    end

    test "a bucket's upper edge is at most 12.5% above any value it holds, below the last bucket" do
      for v <- values(), v < @last_from do
        top = Histogram.bucket_max(Histogram.bucket(v))
        assert v <= top and top <= v * 1.125, "#{v} -> #{top}"
      end
    end

    # bucket/1 is native (munition_core::meter), bucket_max/1 Elixir: this
    # checks one against the other at every bucket's edge.
    test "buckets follow one another: each starts one above the previous one's edge" do
      for b <- 1..(Histogram.buckets() - 1) do
        assert Histogram.bucket(Histogram.bucket_max(b - 1) + 1) == b
        assert Histogram.bucket(Histogram.bucket_max(b - 1)) == b - 1
      end
    end

    test "values from 15 * 2^36 up share the last bucket, which has no bound" do
      last = Histogram.buckets() - 1

      for v <- [@last_from, Bitwise.bsl(1, 40), Bitwise.bsl(1, 50), @max_u64],
          do: assert(Histogram.bucket(v) == last)

      assert Histogram.bucket(@last_from - 1) == last - 1
      assert Histogram.bucket_max(last - 1) == @last_from - 1
      assert Histogram.bucket_max(last) == @max_u64
    end

    test "takes unsigned 64-bit integers only" do
      for bad <- [-1, @max_u64 + 1, 1.5, :one] do
        assert_raise ArgumentError, fn -> Histogram.bucket(bad) end
      end
    end

    test "the shape the native side takes gives buckets/0 buckets" do
      assert %{sub_bits: 3, max_exp: 40} = Histogram.shape()
      assert Histogram.bucket(@max_u64) == Histogram.buckets() - 1
    end
  end

  describe "percentiles/5 and quantile/6" do
    test "are the bucket edge above the exact nearest-rank percentile, within the observed range" do
      values = values()
      sorted = Enum.sort(values)
      {min, max} = {hd(sorted), List.last(sorted)}
      {at, counts} = counts(values)
      quantiles = [0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 1.0]

      found = Histogram.percentiles(counts, length(values), min, max, quantiles)

      for {q, p} <- Enum.zip(quantiles, found) do
        exact = exact(sorted, q)
        assert p == min(Histogram.bucket_max(Histogram.bucket(exact)), max), "q #{q}"
        assert Histogram.quantile(at, 0, length(values), min, max, q) == p, "q #{q}"
      end
    end

    test "are exact when every value is the same" do
      {at, counts} = counts(List.duplicate(804, 40))
      assert Histogram.percentiles(counts, 40, 804, 804, [0.5, 0.95, 0.99]) == [804, 804, 804]
      assert Histogram.quantile(at, 0, 40, 804, 804, 0.99) == 804
    end

    test "answer the maximum for ranks the counts do not reach yet" do
      # Read while a caller has counted a call but not yet its bucket.
      {at, counts} = counts([10, 20])
      assert Histogram.percentiles(counts, 3, 10, 20, [0.3, 0.5, 0.99]) == [10, 20, 20]
      assert Histogram.percentiles(counts, 5, 10, 20, [0.99]) == [20]
      assert Histogram.quantile(at, 0, 3, 10, 20, 0.3) == 10
      assert Histogram.quantile(at, 0, 5, 10, 20, 0.99) == 20
    end

    test "of one value are that value" do
      {at, counts} = counts([12_345])
      assert Histogram.percentiles(counts, 1, 12_345, 12_345, [0.01, 1.0]) == [12_345, 12_345]
      assert Histogram.quantile(at, 0, 1, 12_345, 12_345, 0.5) == 12_345
    end
  end
end

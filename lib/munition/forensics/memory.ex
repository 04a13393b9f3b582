defmodule Munition.Forensics.Memory do
  @moduledoc false
  # The codec and the scans of captured guest memory, in Rust through
  # Munition.Native: the zstd frames a dump's memories are stored in, and
  # the byte scans the analyser and the coredump writer run over them
  # (`memchr` for search, block-wise zero skipping for regions, strings and
  # diff). None of this depends on the engine that ran the guest, so it
  # lives with forensics, not behind Munition.Runtime: a dump reads the
  # same whichever engine wrote it, and whichever runtime the node runs.

  alias Munition.Native

  @typedoc "A native failure: `{:bad_data, message}` for bytes that are not a zstd frame, or too large."
  @type failure :: {:error, {atom(), term()}}

  @doc false
  # Compresses a memory for a dump: one zstd frame declaring its size.
  @spec compress(binary()) :: {:ok, binary()} | failure()
  def compress(bytes), do: Native.zstd_compress(bytes)

  @doc false
  # Decompresses what compress/1 made, refusing frames larger than `max_size`.
  @spec decompress(binary(), non_neg_integer()) :: {:ok, binary()} | failure()
  def decompress(data, max_size), do: Native.zstd_decompress(data, max_size)

  @doc false
  # The size a compressed frame declares, read without decompressing.
  @spec decompressed_size(binary()) :: {:ok, non_neg_integer()} | failure()
  def decompressed_size(data), do: Native.zstd_frame_size(data)

  @doc false
  # Offsets of up to `limit` occurrences of `pattern` in `bytes`.
  @spec search(binary(), binary(), non_neg_integer()) :: [non_neg_integer()]
  def search(bytes, pattern, limit), do: Native.memory_search(bytes, pattern, limit)

  @doc false
  # Non-zero regions of `bytes` as `{start, length}`, merging gaps under
  # `min_gap` zero bytes.
  @spec regions(binary(), non_neg_integer(), non_neg_integer()) :: [{non_neg_integer(), non_neg_integer()}]
  def regions(bytes, min_gap, limit), do: Native.memory_regions(bytes, min_gap, limit)

  @doc false
  # Ranges where two memories differ as `{start, length}`, merging gaps
  # under `min_gap`.
  @spec diff(binary(), binary(), non_neg_integer(), non_neg_integer()) ::
          [{non_neg_integer(), non_neg_integer()}]
  def diff(a, b, min_gap, limit), do: Native.memory_diff(a, b, min_gap, limit)

  @doc false
  # Printable strings of `min_len..max_len` bytes (UTF-8 when `utf8`, else
  # ASCII) with their offsets.
  @spec strings(binary(), pos_integer(), pos_integer(), boolean(), non_neg_integer()) ::
          [{non_neg_integer(), binary()}]
  def strings(bytes, min_len, max_len, utf8, limit),
    do: Native.memory_strings(bytes, min_len, max_len, utf8, limit)
end

defmodule Munition.Test.DumpBytes do
  @moduledoc false
  # An encoder of dump files written from the format's specification (the
  # moduledoc of Munition.Forensics.Dump.Format), not from its code, for the
  # codec properties: it writes what the reader must accept, and, on request,
  # what it must refuse without raising (wrong counts, unknown tags, symbol
  # names that are no atom, invalid UTF-8, NaN bits, bad sign bytes).
  #
  # A value is any Elixir term the format carries (nil, booleans, integers,
  # floats, binaries, atoms, lists, tuples, maps), or one of these, which
  # encode what no Elixir term would:
  #
  #   {:"$enc", :symbol, name}          a symbol with any name bytes
  #   {:"$enc", :raw, bytes}            bytes as they are
  #   {:"$enc", :list, count, items}    a list declaring `count` items
  #   {:"$enc", :bigint, sign, bytes}   a big integer with any sign byte
  #   {:"$enc", :float_bits, bits}      a float tag with any 64 bits

  @magic <<0x89, "MUNDUMP">>

  @doc "The magic bytes of a dump file."
  def magic, do: @magic

  @doc "The bytes of `value` (see the moduledoc)."
  @spec value(term()) :: binary()
  def value(v), do: v |> encode() |> IO.iodata_to_binary()

  defp encode(nil), do: <<0x00>>
  defp encode(false), do: <<0x01>>
  defp encode(true), do: <<0x02>>

  defp encode(i) when is_integer(i) and i >= -0x8000000000000000 and i <= 0x7FFFFFFFFFFFFFFF,
    do: <<0x03, i::little-signed-64>>

  defp encode(i) when is_integer(i) do
    mag = :binary.encode_unsigned(abs(i), :little)
    <<0x04, if(i < 0, do: 1, else: 0), byte_size(mag)::little-32, mag::binary>>
  end

  defp encode(f) when is_float(f), do: <<0x05, f::little-float-64>>
  defp encode(b) when is_binary(b), do: [<<0x06, byte_size(b)::little-32>>, b]
  defp encode({:"$enc", :symbol, name}), do: [<<0x07, byte_size(name)::little-16>>, name]
  defp encode({:"$enc", :raw, bytes}), do: bytes
  defp encode({:"$enc", :list, count, items}), do: [<<0x08, count::little-32>>, Enum.map(items, &encode/1)]

  defp encode({:"$enc", :bigint, sign, mag}),
    do: <<0x04, sign, byte_size(mag)::little-32, mag::binary>>

  defp encode({:"$enc", :float_bits, bits}), do: <<0x05, bits::little-64>>
  defp encode(a) when is_atom(a), do: encode({:"$enc", :symbol, Atom.to_string(a)})
  defp encode(l) when is_list(l), do: [<<0x08, length(l)::little-32>>, Enum.map(l, &encode/1)]

  defp encode(t) when is_tuple(t),
    do: [<<0x09, tuple_size(t)::little-32>>, t |> Tuple.to_list() |> Enum.map(&encode/1)]

  defp encode(m) when is_map(m),
    do: [<<0x0A, map_size(m)::little-32>>, Enum.map(m, fn {k, v} -> [encode(k), encode(v)] end)]

  @doc """
  A memory record. `data` is the bytes after the length (a zstd frame, or
  anything); `flag` 1 says they were captured. `:len` overrides the length
  field.
  """
  @spec memory(map()) :: binary()
  def memory(%{index: index, pages: pages, page_size: page_size, size: size, flag: flag, data: data} = m) do
    len = Map.get(m, :len, byte_size(data))

    <<index::little-32, pages::little-64, page_size::little-64, size::little-64, flag, len::little-64,
      data::binary>>
  end

  @doc """
  A whole file: `header` (already encoded), then `memories` (encoded records).
  Options: `:version` (the version this Munition writes), `:flags` (0), `:count` (the number of memories
  declared), `:checksum` (`:good` or `:bad`), `:trailing` (bytes after the
  checksum).
  """
  @spec file(binary(), [binary()], keyword()) :: binary()
  def file(header, memories, opts \\ []) do
    body =
      IO.iodata_to_binary([
        @magic,
        <<Keyword.get(opts, :version, Munition.Forensics.Dump.version())::little-16,
          Keyword.get(opts, :flags, 0)::little-16, byte_size(header)::little-32>>,
        header,
        <<Keyword.get(opts, :count, length(memories))::little-32>>,
        memories
      ])

    crc = :erlang.crc32(body)
    crc = if Keyword.get(opts, :checksum, :good) == :good, do: crc, else: Bitwise.bxor(crc, 1)
    body <> <<crc::little-32>> <> Keyword.get(opts, :trailing, "")
  end

  @doc "`bytes` (a whole file) with its checksum recomputed over what precedes it."
  @spec reseal(binary()) :: binary()
  def reseal(bytes) when byte_size(bytes) >= 4 do
    body = binary_part(bytes, 0, byte_size(bytes) - 4)
    body <> <<:erlang.crc32(body)::little-32>>
  end

  def reseal(bytes), do: bytes
end

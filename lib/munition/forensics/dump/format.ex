defmodule Munition.Forensics.Dump.Format do
  @moduledoc false
  # The bytes of a Munition.Forensics.Dump: the file format, its encoder,
  # and a decoder that checks every field it reads. The format itself, and
  # every error a reader answers, are specified in Munition.Forensics.Dump's
  # moduledoc ("The file format, version 1"), the public documentation of
  # the dumps this module reads and writes: change both together.
  #
  # This module owns the format and nothing else: `encode/1` turns a dump
  # into bytes and `decode/2` turns bytes back into a dump. Files (names,
  # permissions, atomic writes) are Munition.Forensics.Dump.Files'; the
  # public entry points are Munition.Forensics.Dump.serialize/1,
  # deserialize/2, write/2 and read/2.
  #
  # `decode/2` never raises: whatever the bytes hold, it answers `{:ok, dump}`
  # or `{:error, reason}`.

  alias Munition.Forensics.Memory

  @version 2
  # Version 1 lacks `replay`, which reads as nil.
  @readable [1, 2]

  @typedoc "Why bytes are not a dump (see Errors in the moduledoc)."
  @type error ::
          :bad_magic
          | :truncated
          | {:unsupported_version, non_neg_integer()}
          | :checksum_mismatch
          | :trailing_bytes
          | {:malformed, atom()}
          | {:too_large, non_neg_integer(), non_neg_integer()}

  @magic <<0x89, "MUNDUMP">>
  # Nesting a hostile header could ask for; real dumps need four levels.
  @max_depth 32

  # The atoms a field must hold, from the one vocabulary. Checked after
  # decoding, which maps a symbol to an atom only when that atom exists.
  @reasons Munition.Reason.crash_reasons()
  @traps Munition.Reason.trap_kinds()
  @value_types [:i32, :i64, :f32, :f64, :v128, :ref]

  # Value tags of the header encoding (see the moduledoc).
  @t_nil 0x00
  @t_false 0x01
  @t_true 0x02
  @t_int 0x03
  @t_bigint 0x04
  @t_float 0x05
  @t_bytes 0x06
  @t_atom 0x07
  @t_list 0x08
  @t_tuple 0x09
  @t_map 0x0A

  # `version`, `memories` and `captured_at` are stored apart or converted.
  @header_fields [
    :reason,
    :trap,
    :message,
    :backtrace,
    :fuel_given,
    :fuel_consumed,
    :fuel_remaining,
    :execution_time_us,
    :globals,
    :module_hash,
    :snapshot,
    :imports,
    :exports,
    :function,
    :args,
    :capabilities,
    :inert_links,
    :log,
    :stdout,
    :stderr,
    :stdout_truncated,
    :stderr_truncated,
    :wasmtime_version,
    :munition_version,
    :replay
  ]

  @doc "The format version this module writes (it reads #{inspect(@readable)})."
  @spec version() :: pos_integer()
  def version, do: @version

  @doc """
  The bytes of `dump` in the format described in the moduledoc.

  Raises `ArgumentError` if a field holds something the format cannot carry
  (a pid, a reference, a function), which no captured dump does.
  """
  @spec encode(Munition.Forensics.Dump.t()) :: binary()
  def encode(dump) do
    header =
      @header_fields
      |> Enum.map(&{Atom.to_string(&1), Map.fetch!(dump, &1)})
      |> Kernel.++([{"captured_at", captured_at_to_int(dump.captured_at)}])
      |> encode_pairs()
      |> IO.iodata_to_binary()

    body = [
      @magic,
      <<@version::little-16, 0::little-16, byte_size(header)::little-32>>,
      header,
      <<length(dump.memories)::little-32>>,
      Enum.map(dump.memories, &encode_memory/1)
    ]

    IO.iodata_to_binary([body, <<:erlang.crc32(body)::little-32>>])
  end

  @doc """
  The dump `bytes` hold, or the error of the moduledoc. Never raises.

  `max_memory_size` bounds the bytes a memory, and all memories together, may
  declare: a dump declaring more is refused before anything is decompressed.
  """
  @spec decode(binary(), non_neg_integer()) :: {:ok, Munition.Forensics.Dump.t()} | {:error, error()}
  def decode(bytes, max_memory_size) when is_binary(bytes) and is_integer(max_memory_size) do
    with {:ok, version} <- check_preamble(bytes),
         {:ok, body} <- check_checksum(bytes),
         {:ok, fields} <- decode_body(body, max_memory_size) do
      # Built at run time: the struct's module takes its version from here.
      {:ok, struct!(Munition.Forensics.Dump, Map.put(fields, :version, version))}
    end
  catch
    # Every decoding step returns tagged tuples or throws {:malformed, what};
    # catching errors too is the safety net the moduledoc promises.
    kind, reason when kind in [:error, :throw] ->
      {:error, {:malformed, malformed_detail(kind, reason)}}
  end

  defp malformed_detail(:throw, {:malformed, what}), do: what
  defp malformed_detail(_kind, _reason), do: :value

  ## Encoding

  defp encode_memory(%{index: index, pages: pages, page_size: page_size, size: size, data: data}) do
    {flag, data} = if is_binary(data), do: {1, data}, else: {0, <<>>}

    [
      <<index::little-32, pages::little-64, page_size::little-64, size::little-64, flag,
        byte_size(data)::little-64>>,
      data
    ]
  end

  defp captured_at_to_int(nil), do: nil
  defp captured_at_to_int(%DateTime{} = at), do: DateTime.to_unix(at, :microsecond)

  defp encode_value(nil), do: <<@t_nil>>
  defp encode_value(false), do: <<@t_false>>
  defp encode_value(true), do: <<@t_true>>

  defp encode_value(int) when is_integer(int) and int >= -0x8000000000000000 and int <= 0x7FFFFFFFFFFFFFFF,
    do: <<@t_int, int::little-signed-64>>

  defp encode_value(int) when is_integer(int) do
    magnitude = :binary.encode_unsigned(abs(int), :little)
    <<@t_bigint, if(int < 0, do: 1, else: 0), byte_size(magnitude)::little-32, magnitude::binary>>
  end

  defp encode_value(float) when is_float(float), do: <<@t_float, float::little-float-64>>
  defp encode_value(bytes) when is_binary(bytes), do: [<<@t_bytes, byte_size(bytes)::little-32>>, bytes]

  defp encode_value(atom) when is_atom(atom) do
    name = Atom.to_string(atom)
    [<<@t_atom, byte_size(name)::little-16>>, name]
  end

  defp encode_value(list) when is_list(list),
    do: [<<@t_list, length(list)::little-32>>, Enum.map(list, &encode_value/1)]

  defp encode_value(tuple) when is_tuple(tuple) do
    items = Tuple.to_list(tuple)
    [<<@t_tuple, length(items)::little-32>>, Enum.map(items, &encode_value/1)]
  end

  defp encode_value(map) when is_map(map) and not is_struct(map), do: encode_pairs(Enum.sort(map))

  defp encode_value(other) do
    raise ArgumentError, "a dump field holds a value the dump format cannot carry: #{inspect(other)}"
  end

  defp encode_pairs(pairs) do
    [
      <<@t_map, length(pairs)::little-32>>,
      Enum.map(pairs, fn {k, v} -> [encode_value(k), encode_value(v)] end)
    ]
  end

  ## Decoding

  defp check_preamble(bytes) do
    case bytes do
      <<@magic, version::little-16, _::binary>> when version not in @readable ->
        {:error, {:unsupported_version, version}}

      <<@magic, _version::little-16, flags::little-16, _::binary>> when flags != 0 ->
        {:error, {:malformed, :flags}}

      <<@magic, version::little-16, _::binary>> ->
        {:ok, version}

      short when byte_size(short) < byte_size(@magic) ->
        if short != "" and :binary.longest_common_prefix([short, @magic]) == byte_size(short),
          do: {:error, :truncated},
          else: {:error, :bad_magic}

      _ ->
        {:error, :bad_magic}
    end
  end

  # Walks the framing (lengths only) to tell a truncated file from a corrupt
  # one, then checks the CRC before any value is decoded.
  defp check_checksum(bytes) do
    with {:ok, end_of_body} <- frame_length(bytes) do
      case bytes do
        <<body::binary-size(end_of_body), crc::little-32>> ->
          if :erlang.crc32(body) == crc, do: {:ok, body}, else: {:error, :checksum_mismatch}

        <<_body::binary-size(end_of_body), _crc::little-32, _::binary>> ->
          {:error, :trailing_bytes}

        _ ->
          {:error, :truncated}
      end
    end
  end

  defp frame_length(bytes) do
    case bytes do
      <<_::binary-size(12), header_len::little-32, _::binary-size(header_len), count::little-32,
        rest::binary>> ->
        skip_memories(rest, count, 16 + header_len + 4)

      _ ->
        {:error, :truncated}
    end
  end

  defp skip_memories(_rest, 0, offset), do: {:ok, offset}

  defp skip_memories(rest, count, offset) do
    case rest do
      <<_::binary-size(29), len::little-64, _::binary-size(len), rest::binary>> ->
        skip_memories(rest, count - 1, offset + 37 + len)

      _ ->
        {:error, :truncated}
    end
  end

  defp decode_body(body, bound) do
    <<_::binary-size(12), header_len::little-32, header::binary-size(header_len), count::little-32,
      records::binary>> = body

    with {:ok, header} <- decode_header(header),
         {:ok, memories} <- decode_memories(records, count, bound, 0, []),
         {:ok, fields} <- fields(header) do
      {:ok, Map.put(fields, :memories, memories)}
    end
  end

  defp decode_header(header) do
    case decode_value(header, 0) do
      {%{} = map, ""} -> {:ok, map}
      {_other, ""} -> {:error, {:malformed, :header}}
      {_value, _rest} -> {:error, {:malformed, :header}}
    end
  end

  defp decode_memories(_rest, 0, _bound, _total, acc), do: {:ok, Enum.reverse(acc)}

  defp decode_memories(rest, count, bound, total, acc) do
    <<index::little-32, pages::little-64, page_size::little-64, size::little-64, flag, len::little-64,
      data::binary-size(len), rest::binary>> = rest

    total = total + size

    cond do
      size > bound ->
        {:error, {:too_large, size, bound}}

      total > bound ->
        {:error, {:too_large, total, bound}}

      flag not in [0, 1] or (flag == 0 and len != 0) ->
        {:error, {:malformed, :memory}}

      # Readers such as the coredump writer divide by and take the log of
      # the page size: a crafted zero must not reach them.
      page_size == 0 or Bitwise.band(page_size, page_size - 1) != 0 or pages * page_size != size ->
        {:error, {:malformed, :memory}}

      flag == 1 and Memory.decompressed_size(data) != {:ok, size} ->
        {:error, {:malformed, :memory}}

      true ->
        decode_memories(rest, count - 1, bound, total, [
          memory(index, pages, page_size, size, flag, data) | acc
        ])
    end
  end

  defp memory(index, pages, page_size, size, flag, data) do
    %{index: index, pages: pages, page_size: page_size, size: size, data: if(flag == 1, do: data)}
  end

  # {value, rest}; throws {:malformed, what} on bytes that do not decode.
  defp decode_value(_bytes, depth) when depth > @max_depth, do: throw({:malformed, :too_deep})

  defp decode_value(<<@t_nil, rest::binary>>, _d), do: {nil, rest}
  defp decode_value(<<@t_false, rest::binary>>, _d), do: {false, rest}
  defp decode_value(<<@t_true, rest::binary>>, _d), do: {true, rest}
  defp decode_value(<<@t_int, v::little-signed-64, rest::binary>>, _d), do: {v, rest}

  defp decode_value(<<@t_bigint, sign, len::little-32, mag::binary-size(len), rest::binary>>, _d)
       when sign in [0, 1] do
    v = :binary.decode_unsigned(mag, :little)
    {if(sign == 1, do: -v, else: v), rest}
  end

  defp decode_value(<<@t_float, v::little-float-64, rest::binary>>, _d), do: {v, rest}

  defp decode_value(<<@t_bytes, len::little-32, v::binary-size(len), rest::binary>>, _d),
    do: {v, rest}

  defp decode_value(<<@t_atom, len::little-16, name::binary-size(len), rest::binary>>, _d)
       when len <= 255 do
    unless String.valid?(name), do: throw({:malformed, :value})
    {symbol(name), rest}
  end

  defp decode_value(<<@t_list, count::little-32, rest::binary>>, d), do: decode_many(rest, count, d + 1, [])

  defp decode_value(<<@t_tuple, count::little-32, rest::binary>>, d) do
    {items, rest} = decode_many(rest, count, d + 1, [])
    {List.to_tuple(items), rest}
  end

  defp decode_value(<<@t_map, count::little-32, rest::binary>>, d) do
    {items, rest} = decode_many(rest, count * 2, d + 1, [])
    {items |> Enum.chunk_every(2) |> Map.new(fn [k, v] -> {k, v} end), rest}
  end

  defp decode_value(_bytes, _d), do: throw({:malformed, :value})

  # Never String.to_atom/1: atoms are never collected, so every file read
  # could add atoms for good, and enough crafted files would fill the table
  # and bring the VM down. A name that is not an atom yet stays a string;
  # fields/1 refuses it where the format requires an atom.
  defp symbol(name) do
    String.to_existing_atom(name)
  rescue
    ArgumentError -> name
  end

  # Reads item by item, so a count larger than the bytes can hold fails when
  # the bytes run out instead of allocating for the count.
  defp decode_many(rest, 0, _d, acc), do: {Enum.reverse(acc), rest}

  defp decode_many(rest, count, d, acc) do
    {value, rest} = decode_value(rest, d)
    decode_many(rest, count - 1, d, [value | acc])
  end

  ## Validation

  # The struct's fields the header holds, each checked for its shape, so a
  # dump that passed the checksum but was crafted cannot hand the analyser a
  # value it does not expect. A field the header lacks is left out (the
  # struct's default stands; every default has a valid shape).
  defp fields(header) do
    Enum.reduce_while(@header_fields ++ [:captured_at], {:ok, %{}}, fn field, {:ok, acc} ->
      case Map.fetch(header, Atom.to_string(field)) do
        :error ->
          {:cont, {:ok, acc}}

        {:ok, value} ->
          case field_value(field, value) do
            {:ok, value} -> {:cont, {:ok, Map.put(acc, field, value)}}
            :error -> {:halt, {:error, {:malformed, field}}}
          end
      end
    end)
  end

  defp field_value(:captured_at, nil), do: {:ok, nil}

  defp field_value(:captured_at, us) when is_integer(us) do
    case DateTime.from_unix(us, :microsecond) do
      {:ok, at} -> {:ok, at}
      _ -> :error
    end
  end

  defp field_value(field, value) do
    if valid?(field, value), do: {:ok, value}, else: :error
  end

  defp valid?(:reason, v), do: is_nil(v) or v in @reasons
  defp valid?(:trap, v), do: is_nil(v) or v in @traps

  defp valid?(field, v)
       when field in [:message, :module_hash, :function, :wasmtime_version, :munition_version],
       do: is_nil(v) or is_binary(v)

  defp valid?(field, v) when field in [:fuel_given, :fuel_consumed, :fuel_remaining, :execution_time_us],
    do: is_integer(v) and v >= 0

  defp valid?(:snapshot, v),
    do: is_nil(v) or match?(%{of: of, function: f} when is_binary(of) and is_binary(f), v)

  defp valid?(:replay, nil), do: true

  defp valid?(:replay, %{log: log, unavailable: why} = replay) do
    case {log, why} do
      {nil, why} when is_binary(why) ->
        true

      {log, nil} when is_binary(log) ->
        Enum.all?([:max_memory, :log_limit, :host_calls], &(is_integer(replay[&1]) and replay[&1] >= 0)) and
          replay[:engine] in [:wasmtime, :wasmi] and replay[:result] in [:values, :binary] and
          is_binary(replay[:alloc]) and
          Enum.all?([:stdout_limit, :stderr_limit], &(is_nil(replay[&1]) or is_integer(replay[&1])))

      _ ->
        false
    end
  end

  defp valid?(:replay, _), do: false

  defp valid?(:backtrace, v), do: list_of?(v, &frame?/1)
  defp valid?(:globals, v), do: list_of?(v, &global?/1)
  defp valid?(field, v) when field in [:imports, :exports], do: list_of?(v, &is_map/1)
  defp valid?(:args, v), do: is_list(v)
  defp valid?(:capabilities, v), do: list_of?(v, &(is_atom(&1) or is_binary(&1)))
  defp valid?(:inert_links, v), do: list_of?(v, &inert_link?/1)
  defp valid?(:log, v), do: list_of?(v, &match?({level, line} when is_integer(level) and is_binary(line), &1))
  defp valid?(field, v) when field in [:stdout, :stderr], do: is_nil(v) or is_binary(v)
  defp valid?(field, v) when field in [:stdout_truncated, :stderr_truncated], do: is_nil(v) or is_boolean(v)

  defp list_of?(v, check), do: is_list(v) and Enum.all?(v, check)

  # A symbol the reading VM has no atom for reads as a string.
  defp inert_link?(%{module: module, name: name, needs: needs, reason: reason})
       when is_binary(module) and is_binary(name),
       do: (is_atom(needs) or is_binary(needs)) and (is_atom(reason) or is_binary(reason))

  defp inert_link?(_), do: false

  defp frame?(%{func_index: i} = frame) when is_integer(i) and i >= 0 do
    (is_nil(frame[:func_name]) or is_binary(frame[:func_name])) and
      Enum.all?([:func_offset, :module_offset, :line, :column], &(is_nil(frame[&1]) or is_integer(frame[&1])))
  end

  defp frame?(_), do: false

  defp global?(%{index: i, type: t, mutable: m, value: v} = g)
       when is_integer(i) and i >= 0 and t in @value_types and is_boolean(m),
       do: global_value?(t, v) and (is_nil(g[:export]) or is_binary(g[:export]))

  defp global?(_), do: false

  defp global_value?(t, v) when t in [:i32, :i64], do: is_integer(v)
  defp global_value?(t, v) when t in [:f32, :f64], do: is_float(v) or v in [:nan, :infinity, :neg_infinity]
  defp global_value?(:v128, v), do: is_binary(v) and byte_size(v) == 16
  defp global_value?(:ref, v), do: v == :ref
end

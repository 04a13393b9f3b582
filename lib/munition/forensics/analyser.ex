defmodule Munition.Forensics.Analyser do
  @moduledoc """
  Answers "what was this guest doing when it died?" from a
  `Munition.Forensics.Dump`: searches, strings, reads and hexdumps of guest
  memory, its non-zero regions, a short human-readable summary (formatted by
  `Munition.Forensics.Report`), and the differences between two dumps of the
  same module.

  The byte scans run in Munition's native library, whichever engine ran the
  guest (`memchr` for search, block-wise zero skipping for regions, strings
  and diff), so they stay fast on large memories; regex search runs in PCRE through `:re`. The analyser
  only reads dumps: it never changes one and never runs guest code.

  Every function taking a memory takes the option `:memory`, the memory index
  (default `0`). Errors are those of `Munition.Forensics.Dump.memory/2`:
  `{:error, :no_memory}`, `{:error, :not_captured}` (a `forensics: :minimal`
  dump) or `{:error, {:bad_data, message}}` (a memory that does not
  decompress), plus `{:error, :out_of_bounds}` for reads outside memory and
  `{:error, :different_modules}` from `diff/3`.
  """

  alias Munition.Forensics.{Dump, Memory, Report}

  @type memory_error :: :no_memory | :not_captured | {:bad_data, String.t()}

  @default_limit 10_000

  @doc """
  Every offset at which `pattern` occurs in guest memory, in ascending order
  (overlapping matches included).

  `pattern` is a binary (exact bytes) or a `Regex`; a regex gives
  `{offset, matched_bytes}` pairs. Guest memory is bytes, not UTF-8 text: a
  regex with the `u` modifier is matched without it.

  ## Options

    * `:memory` - memory index. Defaults to `0`.
    * `:limit` - the most matches returned. Defaults to `10_000`.

  ## Examples

      iex> wat = ~s{(module (memory 1) (data (i32.const 64) "hunter2") (func (export "f") unreachable))}
      iex> {:crash, :trap, dump} = Munition.fire(wat, "f", [])
      iex> Munition.Forensics.Analyser.search(dump, "hunter2")
      {:ok, [64]}
      iex> Munition.Forensics.Analyser.search(dump, ~r/hunt[a-z]+\\d/)
      {:ok, [{64, "hunter2"}]}
  """
  @spec search(Dump.t(), binary() | Regex.t(), keyword()) ::
          {:ok, [non_neg_integer()] | [{non_neg_integer(), binary()}]} | {:error, memory_error()}
  def search(dump, pattern, opts \\ [])

  def search(%Dump{} = dump, pattern, opts) when is_binary(pattern) do
    opts = Keyword.validate!(opts, memory: 0, limit: @default_limit)

    with {:ok, bytes} <- Dump.memory(dump, opts[:memory]) do
      {:ok, Memory.search(bytes, pattern, limit!(opts[:limit]))}
    end
  end

  def search(%Dump{} = dump, %Regex{} = regex, opts) do
    opts = Keyword.validate!(opts, memory: 0, limit: @default_limit)
    limit = limit!(opts[:limit])
    re = byte_regex(regex)

    with {:ok, bytes} <- Dump.memory(dump, opts[:memory]) do
      {:ok, regex_scan(bytes, re, 0, limit, [])}
    end
  end

  def search(%Dump{}, pattern, _opts) do
    raise ArgumentError, "pattern must be a binary or a Regex, got: #{inspect(pattern)}"
  end

  # PCRE refuses a non-UTF-8 subject for a `u` regex, and guest memory is
  # rarely valid UTF-8 as a whole: recompile such a regex for bytes.
  defp byte_regex(%Regex{re_pattern: {:re_pattern, _groups, 1, _, _}} = regex) do
    opts =
      case regex.opts do
        opts when is_binary(opts) -> String.replace(opts, "u", "")
        opts when is_list(opts) -> opts -- [:unicode, :ucp]
      end

    Regex.compile!(regex.source, opts).re_pattern
  end

  defp byte_regex(%Regex{re_pattern: re}), do: re

  # One match at a time from where the last began, so overlapping matches are
  # found as with a binary pattern and the limit stops the scan early.
  defp regex_scan(_bytes, _re, _from, 0, acc), do: Enum.reverse(acc)

  defp regex_scan(bytes, re, from, limit, acc) when from <= byte_size(bytes) do
    case :re.run(bytes, re, [{:offset, from}, {:capture, :first, :index}]) do
      {:match, [{start, len}]} ->
        regex_scan(bytes, re, start + 1, limit - 1, [{start, binary_part(bytes, start, len)} | acc])

      _ ->
        Enum.reverse(acc)
    end
  end

  defp regex_scan(_bytes, _re, _from, _limit, acc), do: Enum.reverse(acc)

  @doc """
  Printable runs in guest memory, like the `strings` tool: `{offset, string}`
  in ascending order.

  Printable is ASCII `0x20..0x7E` and tab, and with `encoding: :utf8` also
  every well-formed UTF-8 multi-byte character that is not a control.

  ## Options

    * `:min_length` - the fewest characters a run must have. Defaults to `4`.
    * `:max_length` - runs longer than this many bytes are split. Defaults to `4096`.
    * `:encoding` - `:utf8` (default) or `:ascii`.
    * `:memory` - memory index. Defaults to `0`.
    * `:limit` - the most runs returned. Defaults to `10_000`.

  ## Examples

      iex> wat = ~S{(module (memory 1) (data (i32.const 16) "héllo wörld\\00ok") (func (export "f") unreachable))}
      iex> {:crash, :trap, dump} = Munition.fire(wat, "f", [])
      iex> Munition.Forensics.Analyser.strings(dump)
      {:ok, [{16, "héllo wörld"}]}
      iex> Munition.Forensics.Analyser.strings(dump, encoding: :ascii, min_length: 2)
      {:ok, [{19, "llo w"}, {26, "rld"}, {30, "ok"}]}
  """
  @spec strings(Dump.t(), keyword()) :: {:ok, [{non_neg_integer(), binary()}]} | {:error, memory_error()}
  def strings(%Dump{} = dump, opts \\ []) do
    opts =
      Keyword.validate!(opts,
        min_length: 4,
        max_length: 4096,
        encoding: :utf8,
        memory: 0,
        limit: @default_limit
      )

    utf8 =
      case opts[:encoding] do
        :utf8 -> true
        :ascii -> false
        other -> raise ArgumentError, "encoding must be :utf8 or :ascii, got: #{inspect(other)}"
      end

    min = limit!(opts[:min_length])
    max = limit!(opts[:max_length])

    with {:ok, bytes} <- Dump.memory(dump, opts[:memory]) do
      {:ok, Memory.strings(bytes, min, max, utf8, limit!(opts[:limit]))}
    end
  end

  @doc """
  `length` bytes of guest memory from `offset`.

  ## Options

    * `:memory` - memory index. Defaults to `0`.

  ## Examples

      iex> wat = ~s{(module (memory 1) (data (i32.const 8) "abc") (func (export "f") unreachable))}
      iex> {:crash, :trap, dump} = Munition.fire(wat, "f", [])
      iex> Munition.Forensics.Analyser.read(dump, 8, 4)
      {:ok, <<"abc", 0>>}
      iex> Munition.Forensics.Analyser.read(dump, 65_535, 2)
      {:error, :out_of_bounds}
  """
  @spec read(Dump.t(), non_neg_integer(), non_neg_integer(), keyword()) ::
          {:ok, binary()} | {:error, :out_of_bounds | memory_error()}
  def read(%Dump{} = dump, offset, length, opts \\ []) do
    opts = Keyword.validate!(opts, memory: 0)
    non_negative!(:offset, offset)
    non_negative!(:length, length)

    with {:ok, bytes} <- Dump.memory(dump, opts[:memory]) do
      if offset + length <= byte_size(bytes),
        do: {:ok, binary_part(bytes, offset, length)},
        else: {:error, :out_of_bounds}
    end
  end

  @doc """
  `length` bytes of guest memory from `offset` as a hexdump: offset, sixteen
  bytes in hex, and their printable ASCII, as `hexdump -C` prints them.

  ## Options

    * `:memory` - memory index. Defaults to `0`.

  ## Examples

      iex> wat = ~s{(module (memory 1) (data (i32.const 8) "abc") (func (export "f") unreachable))}
      iex> {:crash, :trap, dump} = Munition.fire(wat, "f", [])
      iex> {:ok, text} = Munition.Forensics.Analyser.hexdump(dump, 8, 4)
      iex> text
      "00000008  61 62 63 00                                       |abc.|\\n"
  """
  @spec hexdump(Dump.t(), non_neg_integer(), non_neg_integer(), keyword()) ::
          {:ok, String.t()} | {:error, :out_of_bounds | memory_error()}
  def hexdump(%Dump{} = dump, offset, length, opts \\ []) do
    with {:ok, bytes} <- read(dump, offset, length, opts) do
      {:ok, Report.hexdump(bytes, offset)}
    end
  end

  @doc """
  The non-zero extents of guest memory as `{offset, length}`, in ascending
  order: a map of what the guest actually used.

  ## Options

    * `:min_gap` - extents separated by fewer zero bytes than this are merged.
      Defaults to `16`.
    * `:memory` - memory index. Defaults to `0`.
    * `:limit` - the most extents returned. Defaults to `10_000`.

  ## Examples

      iex> wat = ~s{(module (memory 1) (data (i32.const 100) "abc") (data (i32.const 4096) "z") (func (export "f") unreachable))}
      iex> {:crash, :trap, dump} = Munition.fire(wat, "f", [])
      iex> Munition.Forensics.Analyser.regions(dump)
      {:ok, [{100, 3}, {4096, 1}]}
  """
  @spec regions(Dump.t(), keyword()) ::
          {:ok, [{non_neg_integer(), pos_integer()}]} | {:error, memory_error()}
  def regions(%Dump{} = dump, opts \\ []) do
    opts = Keyword.validate!(opts, min_gap: 16, memory: 0, limit: @default_limit)

    with {:ok, bytes} <- Dump.memory(dump, opts[:memory]) do
      {:ok, Memory.regions(bytes, limit!(opts[:min_gap]), limit!(opts[:limit]))}
    end
  end

  @doc """
  What differs between two dumps of the same module: for each memory index,
  the byte ranges `{offset, length}` that differ (a memory that grew differs
  over its new tail), and the globals whose values differ.

  Returns `{:ok, %{memories: [%{index: i, ranges: ranges}], globals:
  [%{index: i, export: name, a: value_a, b: value_b}]}}`, listing only what
  differs, or `{:error, :different_modules}` when the module hashes differ.

  ## Options

    * `:min_gap` - ranges separated by fewer equal bytes are merged. Defaults to `1`.
    * `:limit` - the most ranges per memory. Defaults to `10_000`.
  """
  @spec diff(Dump.t(), Dump.t(), keyword()) ::
          {:ok, %{memories: [map()], globals: [map()]}}
          | {:error, :different_modules | memory_error()}
  def diff(%Dump{} = a, %Dump{} = b, opts \\ []) do
    opts = Keyword.validate!(opts, min_gap: 1, limit: @default_limit)

    if a.module_hash != b.module_hash do
      {:error, :different_modules}
    else
      with {:ok, memories} <- diff_memories(a, b, limit!(opts[:min_gap]), limit!(opts[:limit])) do
        {:ok, %{memories: memories, globals: diff_globals(a, b)}}
      end
    end
  end

  defp diff_memories(a, b, min_gap, limit) do
    with {:ok, in_a} <- memories_by_index(a),
         {:ok, in_b} <- memories_by_index(b) do
      indexes = (Map.keys(in_a) ++ Map.keys(in_b)) |> Enum.uniq() |> Enum.sort()

      # A memory only one dump has is compared with an empty one.
      memories =
        for index <- indexes,
            bytes_a = Map.get(in_a, index, <<>>),
            bytes_b = Map.get(in_b, index, <<>>),
            ranges = Memory.diff(bytes_a, bytes_b, min_gap, limit),
            ranges != [],
            do: %{index: index, ranges: ranges}

      {:ok, memories}
    end
  end

  defp memories_by_index(dump) do
    indexes = Enum.map(dump.memories, & &1.index)

    with {:ok, bytes} <- Dump.memories_bytes(dump, indexes) do
      {:ok, indexes |> Enum.zip(bytes) |> Map.new()}
    end
  end

  defp diff_globals(a, b) do
    by_index = fn dump -> Map.new(dump.globals, &{&1.index, &1}) end
    {ga, gb} = {by_index.(a), by_index.(b)}

    (Map.keys(ga) ++ Map.keys(gb))
    |> Enum.uniq()
    |> Enum.sort()
    |> Enum.flat_map(fn index ->
      {x, y} = {ga[index], gb[index]}
      {va, vb} = {x && x.value, y && y.value}

      if va === vb,
        do: [],
        else: [%{index: index, export: (x || y).export, a: va, b: vb}]
    end)
  end

  @doc """
  A short human-readable report of `dump`: reason, trap and message, the top
  frames of the backtrace, fuel and time, globals, the memory map and the
  most notable strings (the longest printable runs). `mix munition.inspect`
  prints it; `Munition.Forensics.Report` formats it.

  ## Options

    * `:frames` - backtrace frames shown. Defaults to `10`.
    * `:strings` - strings shown. Defaults to `10`.
  """
  @spec summary(Dump.t(), keyword()) :: String.t()
  def summary(%Dump{} = dump, opts \\ []) do
    opts = Keyword.validate!(opts, frames: 10, strings: 10)
    # Each memory is decompressed once for the whole report.
    raw = Map.new(dump.memories, &{&1.index, Dump.memory(dump, &1.index)})

    # The memory map merges regions closer than 256 bytes, to stay short;
    # strings of 6 to 200 bytes are long enough to mean something and short
    # enough to print.
    regions =
      Map.new(raw, fn
        {index, {:ok, bytes}} -> {index, {:ok, Memory.regions(bytes, 256, @default_limit)}}
        {index, error} -> {index, error}
      end)

    strings =
      case raw[0] do
        {:ok, bytes} -> Memory.strings(bytes, 6, 200, true, 100_000)
        _ -> nil
      end

    Report.summary(dump, %{regions: regions, strings: strings}, opts)
  end

  # Formatting helpers that were public here; the Report's now.
  @doc false
  @spec format_hex(binary(), non_neg_integer()) :: String.t()
  defdelegate format_hex(bytes, offset), to: Report, as: :hexdump

  @doc false
  @spec describe_frame(map()) :: String.t()
  defdelegate describe_frame(frame), to: Report, as: :frame

  @doc false
  @spec human(non_neg_integer()) :: String.t()
  defdelegate human(bytes), to: Report, as: :size

  defp limit!(n) when is_integer(n) and n > 0, do: n
  defp limit!(other), do: raise(ArgumentError, "expected a positive integer, got: #{inspect(other)}")

  defp non_negative!(_name, n) when is_integer(n) and n >= 0, do: :ok

  defp non_negative!(name, other),
    do: raise(ArgumentError, "#{name} must be a non-negative integer, got: #{inspect(other)}")
end

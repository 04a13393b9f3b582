defmodule Munition.Forensics.Report do
  @moduledoc """
  The text Munition shows people about a `Munition.Forensics.Dump`: the
  summary of `Munition.Forensics.Analyser.summary/2` and
  `mix munition.inspect`, hexdumps, string listings, sizes, addresses and
  error messages.

  This module owns how those look, and only that: it formats what it is given
  and never reads memory itself (the analyser scans, then hands the results
  here), so the same facts read the same wherever they are printed.
  """

  alias Munition.Forensics.Dump

  @typedoc """
  What the summary shows of memory, found by the analyser: for each memory
  index of the dump, its non-zero regions `{offset, length}` or why its bytes
  could not be read, and the printable runs `{offset, string}` of memory 0
  (`nil` when there are no bytes to scan).
  """
  @type scan :: %{
          regions: %{non_neg_integer() => {:ok, [{non_neg_integer(), pos_integer()}]} | {:error, term()}},
          strings: [{non_neg_integer(), binary()}] | nil
        }

  # Regions listed under each memory of the summary.
  @regions_shown 8

  @doc """
  The summary of `dump`: reason, trap and message, the top frames of the
  backtrace, fuel and time, globals, the memory map from `scan`, the most
  notable strings (the longest printable runs) and the last log lines.

  ## Options

    * `:frames` - backtrace frames shown. Defaults to `10`.
    * `:strings` - strings shown. Defaults to `10`.

  ## Examples

      iex> dump = %Munition.Forensics.Dump{reason: :timeout, trap: :interrupt, function: "run", args: [1]}
      iex> text = Munition.Forensics.Report.summary(dump, %{regions: %{}, strings: nil})
      iex> text =~ "reason:       :timeout (trap: :interrupt)"
      true
      iex> text =~ "function:     run(1)"
      true
  """
  @spec summary(Dump.t(), scan(), keyword()) :: String.t()
  def summary(%Dump{} = dump, %{regions: regions, strings: strings}, opts \\ []) do
    opts = Keyword.validate!(opts, frames: 10, strings: 10)

    [
      "Munition crash dump (format #{dump.version})\n",
      line("reason", "#{inspect(dump.reason)} (trap: #{inspect(dump.trap)})"),
      line("message", dump.message),
      line("function", "#{dump.function}(#{Enum.map_join(dump.args, ", ", &inspect/1)})"),
      line("module", dump.module_hash),
      snapshot_line(dump.snapshot),
      line("captured", dump.captured_at && DateTime.to_iso8601(dump.captured_at)),
      line("versions", "munition #{dump.munition_version}, #{engine(dump.wasmtime_version)}"),
      line(
        "fuel",
        "#{dump.fuel_consumed} consumed of #{dump.fuel_given} (#{dump.fuel_remaining} left), #{dump.execution_time_us} µs"
      ),
      line("capabilities", inspect(dump.capabilities)),
      replay_line(dump.replay),
      inert_section(dump.inert_links),
      backtrace_section(dump.backtrace, opts[:frames]),
      globals_section(dump.globals),
      memory_section(dump.memories, regions),
      strings_section(strings, opts[:strings]),
      log_section(dump.log),
      output_section("stdout", dump.stdout, dump.stdout_truncated),
      output_section("stderr", dump.stderr, dump.stderr_truncated)
    ]
    |> IO.iodata_to_binary()
  end

  # A call on a snapshot: the module it was made of, and the export that
  # initialised it.
  defp snapshot_line(nil), do: []
  defp snapshot_line(%{of: of, function: function}), do: line("snapshot of", "#{of}, after #{function}")

  # Whether `mix munition.replay` can run the crash again.
  defp replay_line(nil), do: []
  defp replay_line(%{log: nil, unavailable: why}), do: line("replay", "unavailable: #{why}")

  defp replay_line(%{log: log, host_calls: host_calls}),
    do: line("replay", "#{host_calls} host calls in a log of #{size(byte_size(log))} (mix munition.replay)")

  defp line(label, value), do: "  #{String.pad_trailing(label <> ":", 14)}#{value || "-"}\n"

  defp backtrace_section([], _shown), do: "\nbacktrace: none\n"

  defp backtrace_section(frames, shown) do
    lines =
      frames
      |> Enum.take(shown)
      |> Enum.with_index()
      |> Enum.map(fn {frame, i} -> "  ##{i} #{frame(frame)}\n" end)

    more = if length(frames) > shown, do: "  … #{length(frames) - shown} more frames\n", else: []
    ["\nbacktrace (innermost first):\n", lines, more]
  end

  defp globals_section([]), do: "\nglobals: none\n"

  defp globals_section(globals) do
    lines =
      Enum.map(globals, fn g ->
        mut = if g.mutable, do: "mut ", else: ""
        export = if g[:export], do: " (export #{inspect(g.export)})", else: ""
        "  global #{g.index}: #{mut}#{g.type} = #{inspect(g.value)}#{export}\n"
      end)

    ["\nglobals:\n", lines]
  end

  defp memory_section([], _regions), do: "\nmemory: none\n"

  defp memory_section(memories, regions) do
    lines =
      Enum.map(memories, fn memory ->
        head =
          "  memory #{memory.index}: #{memory.pages} pages of #{memory.page_size} bytes (#{size(memory.size)})"

        case Map.get(regions, memory.index, {:error, :not_scanned}) do
          {:ok, regions} ->
            used = regions |> Enum.map(&elem(&1, 1)) |> Enum.sum()
            compressed = if memory.data, do: ", #{size(byte_size(memory.data))} compressed", else: ""
            shown = Enum.take(regions, @regions_shown)
            hidden = length(regions) - @regions_shown

            [
              head,
              ", #{size(used)} in #{length(regions)} non-zero regions#{compressed}\n",
              Enum.map(shown, fn {start, len} ->
                "    0x#{hex(start)}..0x#{hex(start + len)}  #{size(len)}\n"
              end),
              if(hidden > 0, do: "    … #{hidden} more regions\n", else: [])
            ]

          {:error, :not_captured} ->
            [head, ", bytes not captured (forensics: :minimal)\n"]

          {:error, reason} ->
            [head, ", unreadable: #{inspect(reason)}\n"]
        end
      end)

    ["\nmemory:\n", lines]
  end

  defp strings_section(nil, _shown), do: []
  defp strings_section([], _shown), do: "\nnotable strings: none\n"

  defp strings_section(found, shown) do
    lines =
      found
      |> Enum.sort_by(fn {offset, s} -> {-byte_size(s), offset} end)
      |> Enum.take(shown)
      |> Enum.sort()
      |> Enum.map(fn {offset, s} -> ["  ", string_line(offset, s), "\n"] end)

    ["\nnotable strings (longest #{min(shown, length(found))} of #{length(found)}):\n", lines]
  end

  # Imports linked without their capability, reaching nothing (see
  # Munition.Host.Capabilities): named with what would grant them.
  defp inert_section([]), do: []

  defp inert_section(links) do
    line(
      "inert links",
      Enum.map_join(links, ", ", fn link -> "#{link.name} (needs #{inspect(link.needs)}: #{link.reason})" end)
    )
  end

  defp log_section([]), do: []

  defp log_section(log) do
    ["\nlog (last 5):\n", log |> Enum.take(-5) |> Enum.map(fn {level, l} -> "  [#{level}] #{l}\n" end)]
  end

  # A WASI guest's output so far: the last 2 KiB, where a crash's message is.
  @output_shown 2048

  defp output_section(_name, output, _truncated) when output in [nil, ""], do: []

  defp output_section(name, output, truncated) do
    shown =
      binary_part(output, max(byte_size(output) - @output_shown, 0), min(byte_size(output), @output_shown))

    cut = if byte_size(shown) < byte_size(output), do: " (last #{@output_shown} bytes)", else: ""
    kept = if truncated, do: " (past its bound: the rest was dropped)", else: ""
    ["\n#{name}#{cut}#{kept}:\n", shown, if(String.ends_with?(shown, "\n"), do: "", else: "\n")]
  end

  @doc """
  `bytes` as `hexdump -C` prints them, the first at address `offset`: each
  line the address, sixteen bytes in hex, and their printable ASCII.

  ## Examples

      iex> Munition.Forensics.Report.hexdump("abc" <> <<0>>, 8)
      "00000008  61 62 63 00                                       |abc.|\\n"
  """
  @spec hexdump(binary(), non_neg_integer()) :: String.t()
  def hexdump(bytes, offset) do
    for {chunk, i} <- Enum.with_index(chunks(bytes, 16)), into: "" do
      hex = for <<b <- chunk>>, do: hex(b, 2)
      {left, right} = Enum.split(hex, 8)
      hex_text = String.pad_trailing(Enum.join(left, " ") <> "  " <> Enum.join(right, " "), 49)
      ascii = for <<b <- chunk>>, into: "", do: if(b in 0x20..0x7E, do: <<b>>, else: ".")
      "#{hex(offset + i * 16)}  #{hex_text} |#{ascii}|\n"
    end
  end

  # The engine that ran the guest: Wasmtime's version alone, another
  # engine's with its name (see Munition.Forensics.Capture).
  defp engine(version) when is_binary(version) do
    if String.contains?(version, " "), do: version, else: "wasmtime " <> version
  end

  defp engine(version), do: "wasmtime #{inspect(version)}"

  defp chunks(<<>>, _size), do: []
  defp chunks(bytes, size) when byte_size(bytes) <= size, do: [bytes]

  defp chunks(bytes, size) do
    <<chunk::binary-size(size), rest::binary>> = bytes
    [chunk | chunks(rest, size)]
  end

  @doc """
  A string found in memory and its offset, as listings show it.

  ## Examples

      iex> Munition.Forensics.Report.string_line(4096, "s3cr3t!!")
      ~s{0x00001000  "s3cr3t!!"}
  """
  @spec string_line(non_neg_integer(), binary()) :: String.t()
  def string_line(offset, string), do: "0x#{hex(offset)}  #{inspect(string, binaries: :as_strings)}"

  @doc """
  `n` in lowercase hex, padded with zeros to `width` digits (an address by
  default: 8).

  ## Examples

      iex> Munition.Forensics.Report.hex(4096)
      "00001000"
      iex> Munition.Forensics.Report.hex(10, 2)
      "0a"
  """
  @spec hex(non_neg_integer(), pos_integer()) :: String.t()
  def hex(n, width \\ 8),
    do: n |> Integer.to_string(16) |> String.pad_leading(width, "0") |> String.downcase()

  @doc """
  A size in bytes, in B, KiB or MiB.

  ## Examples

      iex> Munition.Forensics.Report.size(65_536)
      "64.0 KiB"
  """
  @spec size(non_neg_integer()) :: String.t()
  def size(bytes) when bytes >= 1024 * 1024, do: "#{Float.round(bytes / (1024 * 1024), 1)} MiB"
  def size(bytes) when bytes >= 1024, do: "#{Float.round(bytes / 1024, 1)} KiB"
  def size(bytes), do: "#{bytes} B"

  @doc """
  One backtrace frame: name (or `<func N>`), function index, module offset
  and source position where the dump has them.

  ## Examples

      iex> frame = %{func_index: 3, func_name: "run", module_offset: 0x4A, file: "lib.rs", line: 7}
      iex> Munition.Forensics.Report.frame(frame)
      "run [func 3] @ 0x4A (lib.rs:7)"
  """
  @spec frame(map()) :: String.t()
  def frame(frame) do
    name = frame[:func_name] || "<func #{frame.func_index}>"

    offset = if frame[:module_offset], do: " @ 0x#{Integer.to_string(frame.module_offset, 16)}", else: ""

    source =
      if frame[:file],
        do:
          " (#{frame.file}#{if frame[:line], do: ":#{frame.line}"}#{if frame[:column], do: ":#{frame.column}"})",
        else: ""

    "#{name} [func #{frame.func_index}]#{offset}#{source}"
  end

  @doc """
  What an error of reading a dump or its memory means, in words: the errors of
  `Munition.Forensics.Dump.read/2` and `Munition.Forensics.Dump.memory/2`.
  Anything else is inspected.

  ## Examples

      iex> Munition.Forensics.Report.error(:checksum_mismatch)
      "the file is corrupt (checksum mismatch)"
  """
  @spec error(term()) :: String.t()
  def error(:enoent), do: "no such file"
  def error(:eacces), do: "permission denied"
  def error(:eisdir), do: "it is a directory"
  def error(:bad_magic), do: "not a Munition dump (bad magic bytes)"
  def error(:truncated), do: "the file is truncated"
  def error(:checksum_mismatch), do: "the file is corrupt (checksum mismatch)"
  def error(:trailing_bytes), do: "the file is corrupt (bytes after the checksum)"

  def error({:unsupported_version, v}),
    do: "dump format version #{v} is not supported (this Munition reads version #{Dump.version()})"

  def error({:malformed, what}), do: "the file is corrupt (malformed #{what})"
  def error({:too_large, declared, bound}), do: "it declares #{declared} bytes, over the bound of #{bound}"
  def error(:not_captured), do: "memory bytes were not captured (forensics: :minimal)"
  def error(:no_memory), do: "the guest has no such memory"
  def error(other), do: inspect(other)
end

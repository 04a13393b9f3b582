defmodule Mix.Tasks.Munition.Inspect do
  @shortdoc "Prints what a Munition crash dump holds"

  @moduledoc """
  Prints a Munition crash dump file (see `Munition.Forensics.Dump`, written
  by `fire/4`'s `:dump_dir` or `Munition.Forensics.Dump.write/2`).

      mix munition.inspect PATH [options]

  Without options it prints the summary: reason, trap, message, backtrace,
  fuel, globals, the memory map and the most notable strings.

  ## Options

    * `--strings` - every printable run in memory with its offset
      (`--min-length N`, default 4, sets the shortest run)
    * `--search PATTERN` - every offset of `PATTERN` in memory: hex bytes when
      prefixed with `0x` (`0xdeadbeef`, spaces allowed), text otherwise
    * `--hexdump OFFSET:LEN` - a hexdump of `LEN` bytes from `OFFSET` (both
      decimal or `0x` hex)
    * `--coredump OUT` - write the dump as a standard WebAssembly coredump to `OUT`
    * `--memory N` - the memory index the options above read. Defaults to `0`.

  `--search` and `--hexdump` may be repeated: each one is done, in the order
  given. Any other option given twice is an error naming it.

  A missing, unreadable or corrupt file ends the task with an error message
  and a non-zero exit status.
  """

  use Mix.Task

  alias Munition.Forensics.{Analyser, Dump, Report}

  @switches [
    strings: :boolean,
    min_length: :integer,
    search: [:string, :keep],
    hexdump: [:string, :keep],
    coredump: :string,
    memory: :integer
  ]

  @impl Mix.Task
  def run(argv) do
    {opts, args} = Mix.Tasks.Munition.Validate.parse!(argv, @switches, usage())

    path =
      case args do
        [path] -> path
        _ -> Mix.raise("Expected exactly one dump file path\n\n#{usage()}")
      end

    # The analyser's scans run in the runtime's native library: make sure the
    # project (and so that library) is compiled and loaded.
    Mix.Task.run("compile", [])

    dump =
      case Dump.read(path) do
        {:ok, dump} -> dump
        {:error, reason} -> Mix.raise("Cannot read dump #{path}: #{Report.error(reason)}")
      end

    memory = opts[:memory] || 0
    actions = Keyword.take(opts, [:strings, :search, :hexdump, :coredump])

    if actions == [] do
      Mix.shell().info(Analyser.summary(dump))
    else
      Enum.each(actions, &action(&1, dump, memory, opts))
    end
  end

  defp usage,
    do:
      "Usage: mix munition.inspect PATH [--strings] [--search PATTERN] [--hexdump OFFSET:LEN] [--coredump OUT]"

  defp action({:strings, true}, dump, memory, opts) do
    found =
      check(Analyser.strings(dump, memory: memory, min_length: opts[:min_length] || 4, limit: 1_000_000))

    Enum.each(found, fn {offset, s} ->
      Mix.shell().info(Report.string_line(offset, s))
    end)
  end

  defp action({:strings, false}, _dump, _memory, _opts), do: :ok

  defp action({:search, pattern}, dump, memory, _opts) do
    bytes = parse_pattern(pattern)
    offsets = check(Analyser.search(dump, bytes, memory: memory, limit: 1_000_000))
    Mix.shell().info("#{length(offsets)} match(es) of #{inspect(bytes, binaries: :as_strings)}")

    # Each match with what follows it, up to a 16-byte line (less at the
    # end of memory).
    Enum.each(offsets, fn offset ->
      text =
        Enum.find_value([max(16, byte_size(bytes)), byte_size(bytes)], "0x" <> Report.hex(offset), fn len ->
          case Analyser.hexdump(dump, offset, len, memory: memory) do
            {:ok, text} -> String.trim_trailing(text)
            _ -> nil
          end
        end)

      Mix.shell().info(text)
    end)
  end

  defp action({:hexdump, spec}, dump, memory, _opts) do
    {offset, len} = parse_range(spec)

    case Analyser.hexdump(dump, offset, len, memory: memory) do
      {:ok, text} -> Mix.shell().info(String.trim_trailing(text))
      {:error, :out_of_bounds} -> Mix.raise("#{spec} is outside memory #{memory}")
      {:error, reason} -> Mix.raise("Cannot read memory #{memory}: #{Report.error(reason)}")
    end
  end

  defp action({:coredump, out}, dump, _memory, _opts) do
    bytes = check(Dump.to_coredump(dump))

    case File.write(out, bytes) do
      :ok -> Mix.shell().info("Wrote a WebAssembly coredump (#{byte_size(bytes)} bytes) to #{out}")
      {:error, reason} -> Mix.raise("Cannot write #{out}: #{:file.format_error(reason)}")
    end
  end

  defp check({:ok, value}), do: value
  defp check({:error, reason}), do: Mix.raise("Cannot read memory: #{Report.error(reason)}")

  @doc false
  @spec parse_pattern(String.t()) :: binary()
  def parse_pattern("0x" <> hex) do
    case Base.decode16(String.replace(hex, ~r/\s/, ""), case: :mixed) do
      {:ok, bytes} when bytes != "" -> bytes
      _ -> Mix.raise("--search 0x... expects an even number of hex digits, got: 0x#{hex}")
    end
  end

  def parse_pattern(""), do: Mix.raise("--search expects a non-empty pattern")
  def parse_pattern(text), do: text

  defp parse_range(spec) do
    with [offset, len] <- String.split(spec, ":"),
         {:ok, offset} <- parse_int(offset),
         {:ok, len} <- parse_int(len) do
      {offset, len}
    else
      _ -> Mix.raise("--hexdump expects OFFSET:LEN (decimal or 0x hex), got: #{spec}")
    end
  end

  defp parse_int("0x" <> hex), do: parse_int(hex, 16)
  defp parse_int(dec), do: parse_int(dec, 10)

  defp parse_int(text, base) do
    case Integer.parse(text, base) do
      {n, ""} when n >= 0 -> {:ok, n}
      _ -> :error
    end
  end
end

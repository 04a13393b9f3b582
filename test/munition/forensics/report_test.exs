defmodule Munition.Forensics.ReportTest do
  use ExUnit.Case, async: true

  alias Munition.Forensics.{Dump, Report}

  doctest Report

  @no_scan %{regions: %{}, strings: nil}

  defp memory(index, opts \\ []) do
    %{index: index, pages: 1, page_size: 65_536, size: 65_536, data: Keyword.get(opts, :data, <<0::8*100>>)}
  end

  describe "summary/3" do
    test "heads the report with the dump's context" do
      dump = %Dump{
        reason: :fuel_exhausted,
        trap: :out_of_fuel,
        message: "all fuel consumed",
        function: "run",
        args: [1, "two"],
        module_hash: "abc123",
        captured_at: ~U[2025-01-02 03:04:05.000006Z],
        munition_version: "0.1.0",
        wasmtime_version: "48.0.8",
        fuel_given: 1_000,
        fuel_consumed: 1_000,
        fuel_remaining: 0,
        execution_time_us: 42,
        capabilities: [:log]
      }

      assert Report.summary(dump, @no_scan) ==
               """
               Munition crash dump (format 2)
                 reason:       :fuel_exhausted (trap: :out_of_fuel)
                 message:      all fuel consumed
                 function:     run(1, "two")
                 module:       abc123
                 captured:     2025-01-02T03:04:05.000006Z
                 versions:     munition 0.1.0, wasmtime 48.0.8
                 fuel:         1000 consumed of 1000 (0 left), 42 µs
                 capabilities: [:log]

               backtrace: none

               globals: none

               memory: none
               """
    end

    test "names the imports linked inert, with what would grant them" do
      links = [
        %{module: "wasi_snapshot_preview1", name: "path_open", needs: :wasi_fs, reason: :no_preopen},
        %{
          module: "wasi_snapshot_preview1",
          name: "path_rename",
          needs: :wasi_fs_write,
          reason: :no_writable_preopen
        }
      ]

      text = Report.summary(%Dump{capabilities: [:wasi_stdio], inert_links: links}, @no_scan)

      assert text =~
               "  capabilities: [:wasi_stdio]\n" <>
                 "  inert links:  path_open (needs :wasi_fs: no_preopen), " <>
                 "path_rename (needs :wasi_fs_write: no_writable_preopen)\n"
    end

    test "shows the first frames and counts the others" do
      frames = for i <- 0..3, do: %{func_index: i, func_name: "f#{i}"}
      text = Report.summary(%Dump{backtrace: frames}, @no_scan, frames: 2)

      assert text =~ "\nbacktrace (innermost first):\n  #0 f0 [func 0]\n  #1 f1 [func 1]\n  … 2 more frames\n"
      refute text =~ "f2"
    end

    test "lists every global, its mutability and export" do
      globals = [
        %{index: 0, type: :i32, mutable: true, value: 7, export: nil},
        %{index: 1, type: :f64, mutable: false, value: :nan, export: "ratio"}
      ]

      assert Report.summary(%Dump{globals: globals}, @no_scan) =~
               "\nglobals:\n  global 0: mut i32 = 7\n  global 1: f64 = :nan (export \"ratio\")\n"
    end

    test "maps each memory from the scan: regions, or why there are none" do
      regions = for i <- 0..9, do: {i * 1024, 16}

      scan = %{
        regions: %{0 => {:ok, regions}, 1 => {:error, :not_captured}, 2 => {:error, {:bad_data, "no"}}},
        strings: nil
      }

      dump = %Dump{memories: [memory(0), memory(1, data: nil), memory(2)]}
      text = Report.summary(dump, scan)

      assert text =~
               "  memory 0: 1 pages of 65536 bytes (64.0 KiB), 160 B in 10 non-zero regions, 100 B compressed\n" <>
                 "    0x00000000..0x00000010  16 B\n"

      assert text =~ "    0x00001c00..0x00001c10  16 B\n    … 2 more regions\n"
      refute text =~ "0x00002000"

      assert text =~
               "  memory 1: 1 pages of 65536 bytes (64.0 KiB), bytes not captured (forensics: :minimal)\n"

      assert text =~ ~s[  memory 2: 1 pages of 65536 bytes (64.0 KiB), unreadable: {:bad_data, "no"}\n]
    end

    test "shows the longest strings in offset order, or says there are none" do
      strings = [{10, "short!"}, {40, "the longest one"}, {90, "longer one"}]
      text = Report.summary(%Dump{}, %{regions: %{}, strings: strings}, strings: 2)

      assert text =~
               ~s{\nnotable strings (longest 2 of 3):\n  0x00000028  "the longest one"\n  0x0000005a  "longer one"\n}

      assert Report.summary(%Dump{}, %{regions: %{}, strings: []}) =~ "\nnotable strings: none\n"
      refute Report.summary(%Dump{}, @no_scan) =~ "notable strings"
    end

    test "ends with the last five log lines" do
      log = for i <- 1..7, do: {1, "line #{i}"}
      text = Report.summary(%Dump{log: log}, @no_scan)
      assert String.ends_with?(text, "\nlog (last 5):\n" <> Enum.map_join(3..7, &"  [1] line #{&1}\n"))
    end
  end

  describe "hexdump/2" do
    test "prints sixteen bytes a line, split in two groups, with their ASCII" do
      bytes = "s3cr3t!!" <> <<0xDE, 0xAD, 0xBE, 0xEF, 0, 0, 0, 0>> <> <<0, 0, 0, 0>>

      assert Report.hexdump(bytes, 2040) ==
               "000007f8  73 33 63 72 33 74 21 21  de ad be ef 00 00 00 00  |s3cr3t!!........|\n" <>
                 "00000808  00 00 00 00                                       |....|\n"
    end

    test "prints nothing for no bytes" do
      assert Report.hexdump("", 0) == ""
    end
  end

  describe "hex/2, size/1, frame/1" do
    test "hex pads to the width and never truncates" do
      assert Report.hex(0) == "00000000"
      assert Report.hex(0xABCDEF012) == "abcdef012"
      assert Report.hex(255, 2) == "ff"
    end

    test "size picks the unit" do
      assert Enum.map([0, 1023, 1024, 1536, 1024 * 1024, 3 * 1024 * 1024 + 1], &Report.size/1) ==
               ["0 B", "1023 B", "1.0 KiB", "1.5 KiB", "1.0 MiB", "3.0 MiB"]
    end

    test "frame names the function, or its index when it has no name" do
      assert Report.frame(%{func_index: 4}) == "<func 4> [func 4]"

      assert Report.frame(%{func_index: 1, func_name: "f", file: "a.c", line: 3, column: 9}) ==
               "f [func 1] (a.c:3:9)"
    end
  end

  describe "error/1" do
    test "words every error of reading a dump or its memory" do
      for reason <- [
            :enoent,
            :eacces,
            :eisdir,
            :bad_magic,
            :truncated,
            :checksum_mismatch,
            :trailing_bytes,
            {:unsupported_version, 9},
            {:malformed, :header},
            {:too_large, 10, 5},
            :not_captured,
            :no_memory
          ] do
        refute Report.error(reason) == inspect(reason), inspect(reason)
      end

      assert Report.error({:unsupported_version, 9}) =~ "version 9 is not supported"
      assert Report.error({:unexpected, 1}) == "{:unexpected, 1}"
    end
  end
end

defmodule Munition.Forensics.AnalyserTest do
  use ExUnit.Case, async: true

  alias Munition.Forensics.{Analyser, Dump}

  doctest Analyser

  # "s3cr3t!!" stored at run time at the offset the caller passes, a UTF-8
  # string from a data segment, a counter in a non-exported global, and a
  # trap two frames down.
  @guest ~S"""
  (module
    (memory (export "memory") 1)
    (global $calls (mut i32) (i32.const 0))
    (data (i32.const 1024) "greeting: héllo wörld")
    (data (i32.const 2048) "\de\ad\be\ef")
    (func $stash_secret (export "run") (param $ptr i32)
      (global.set $calls (i32.add (global.get $calls) (local.get $ptr)))
      (i64.store (local.get $ptr) (i64.const 0x2121743372633373))
      (call $explode))
    (func $explode unreachable))
  """

  defp crash(ptr, opts \\ []) do
    {:crash, :trap, dump} = Munition.fire(@guest, "run", [ptr], opts)
    dump
  end

  describe "search/3" do
    test "finds the secret the guest wrote, at the offset it wrote it, and the backtrace names the writer" do
      dump = crash(40_000)

      assert Analyser.search(dump, "s3cr3t!!") == {:ok, [40_000]}
      assert Analyser.search(dump, <<0xDE, 0xAD, 0xBE, 0xEF>>) == {:ok, [2048]}
      assert Analyser.search(dump, "not there") == {:ok, []}

      assert [%{func_name: "explode"}, %{func_name: "stash_secret", func_index: 0} | _] = dump.backtrace
    end

    test "regex search returns offsets and the matched bytes" do
      dump = crash(300)
      assert Analyser.search(dump, ~r/s3c\w+!+/) == {:ok, [{300, "s3cr3t!!"}]}
      assert Analyser.search(dump, ~r/l+/, limit: 2) == {:ok, [{1037, "ll"}, {1038, "l"}]}
      # Memory is not valid UTF-8 as a whole; a `u` regex still searches it.
      assert Analyser.search(dump, ~r/S3CR3T/iu) == {:ok, [{300, "s3cr3t"}]}
      assert Analyser.search(dump, ~r/\xde\xad/) == {:ok, [{2048, <<0xDE, 0xAD>>}]}
    end

    test "limit and memory options" do
      dump = crash(0)
      assert Analyser.search(dump, <<0>>, limit: 3) == {:ok, [8, 9, 10]}
      assert Analyser.search(dump, "x", memory: 1) == {:error, :no_memory}
    end

    test "a minimal dump has no bytes to search" do
      dump = crash(0, forensics: :minimal)
      assert Analyser.search(dump, "s3cr3t") == {:error, :not_captured}
    end
  end

  describe "strings/2" do
    test "lists printable runs with offsets, UTF-8 by default and ASCII on request" do
      dump = crash(4000)
      assert {:ok, strings} = Analyser.strings(dump)
      assert {1024, "greeting: héllo wörld"} in strings
      assert {4000, "s3cr3t!!"} in strings

      assert {:ok, ascii} = Analyser.strings(dump, encoding: :ascii, min_length: 8)
      assert {1024, "greeting: h"} in ascii
      assert {4000, "s3cr3t!!"} in ascii

      assert {:ok, [{1024, _}]} = Analyser.strings(dump, min_length: 12)
    end
  end

  describe "read/4 and hexdump/4" do
    test "read the secret back, and refuse reads past the end of memory" do
      dump = crash(65_528)
      assert Analyser.read(dump, 65_528, 8) == {:ok, "s3cr3t!!"}
      assert Analyser.read(dump, 65_529, 8) == {:error, :out_of_bounds}
      assert Analyser.read(dump, 70_000, 0) == {:error, :out_of_bounds}
      assert Analyser.hexdump(dump, 65_536, 1) == {:error, :out_of_bounds}
    end

    test "hexdump prints offset, hex and ASCII columns" do
      dump = crash(2040)
      {:ok, text} = Analyser.hexdump(dump, 2040, 20)

      assert text ==
               "000007f8  73 33 63 72 33 74 21 21  de ad be ef 00 00 00 00  |s3cr3t!!........|\n" <>
                 "00000808  00 00 00 00                                       |....|\n"
    end

    test "negative offsets are the caller's mistake" do
      assert_raise ArgumentError, ~r/offset/, fn -> Analyser.read(crash(0), -1, 1) end
    end
  end

  describe "regions/2" do
    test "are the non-zero extents of memory" do
      dump = crash(30_000)
      assert Analyser.regions(dump) == {:ok, [{1024, 23}, {2048, 4}, {30_000, 8}]}
      assert Analyser.regions(dump, min_gap: 2000) == {:ok, [{1024, 1028}, {30_000, 8}]}
    end
  end

  describe "summary/2" do
    test "reports reason, trap, frames, fuel, globals, memory map and strings" do
      dump = crash(30_000)
      text = Analyser.summary(dump)

      assert text =~ "reason:       :trap (trap: :unreachable)"
      assert text =~ "function:     run(30000)"
      assert text =~ ~r/#0 explode \[func 1\] @ 0x[0-9A-F]+/
      assert text =~ ~r/#1 stash_secret \[func 0\]/
      assert text =~ "fuel:         #{dump.fuel_consumed} consumed of #{dump.fuel_given}"
      assert text =~ "global 0: mut i32 = 30000"
      assert text =~ "memory 0: 1 pages of 65536 bytes (64.0 KiB), 35 B in 3 non-zero regions"
      assert text =~ ~s{0x00000400  "greeting: héllo wörld"}
      assert text =~ ~s{0x00007530  "s3cr3t!!"}
    end

    test "says when memory was not captured, and copes with an empty dump" do
      assert crash(0, forensics: :minimal) |> Analyser.summary() =~ "bytes not captured"
      text = Analyser.summary(%Dump{reason: :timeout})
      assert text =~ "backtrace: none"
      assert text =~ "memory: none"
    end
  end

  describe "diff/3" do
    test "reports the byte ranges and globals that differ between two crashes of the same module" do
      a = crash(100)
      b = crash(5000)

      assert {:ok, %{memories: [%{index: 0, ranges: ranges}], globals: globals}} = Analyser.diff(a, b)
      assert ranges == [{100, 8}, {5000, 8}]
      assert globals == [%{index: 0, export: nil, a: 100, b: 5000}]

      assert Analyser.diff(a, a) == {:ok, %{memories: [], globals: []}}
    end

    test "compares a memory only one dump has with an empty memory" do
      a = crash(100)
      whole = [%{index: 0, ranges: [{0, 65_536}]}]
      assert {:ok, %{memories: ^whole}} = Analyser.diff(a, %{a | memories: []})
      assert {:ok, %{memories: ^whole}} = Analyser.diff(%{a | memories: []}, a)
    end

    test "a minimal dump has no bytes to compare" do
      assert Analyser.diff(crash(0), crash(0, forensics: :minimal)) == {:error, :not_captured}
      assert Analyser.diff(crash(0, forensics: :minimal), crash(0)) == {:error, :not_captured}
    end

    test "refuses dumps of different modules" do
      {:crash, :trap, other} = Munition.fire(~s{(module (func (export "f") unreachable))}, "f", [])
      assert Analyser.diff(crash(0), other) == {:error, :different_modules}
    end
  end
end

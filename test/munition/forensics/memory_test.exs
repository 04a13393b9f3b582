defmodule Munition.Forensics.MemoryTest do
  # The codec and scans of captured memory: forensics' own, the same
  # whichever engine wrote the dump (they left Munition.Runtime).
  use ExUnit.Case, async: true

  alias Munition.Forensics.Memory

  describe "codec and scans" do
    test "compress/1, decompress/2 and decompressed_size/1 round-trip, bounded" do
      bytes = :binary.copy("hello ", 1000)
      assert {:ok, compressed} = Memory.compress(bytes)
      assert byte_size(compressed) < byte_size(bytes)
      assert Memory.decompressed_size(compressed) == {:ok, 6000}
      assert Memory.decompress(compressed, 6000) == {:ok, bytes}

      assert Memory.decompress(compressed, 5999) ==
               {:error, {:bad_data, "zstd frame declares 6000 bytes, over the bound of 5999"}}

      assert Memory.decompress("not zstd", 100) == {:error, {:bad_data, "not a zstd frame"}}
      assert Memory.decompressed_size("not zstd") == {:error, {:bad_data, "not a zstd frame"}}
      assert {:ok, empty} = Memory.compress("")
      assert Memory.decompress(empty, 0) == {:ok, ""}
    end

    test "search/3 finds every occurrence, overlapping ones included, up to the limit" do
      assert Memory.search("abcabc", "bc", 10) == [1, 4]
      assert Memory.search("aaaa", "aa", 10) == [0, 1, 2]
      assert Memory.search("abcabc", "bc", 1) == [1]
      assert Memory.search("abcabc", "zz", 10) == []
      assert Memory.search("abcabc", "", 10) == []
    end

    test "regions/3 lists non-zero regions as {start, length}, merging small gaps" do
      bytes = <<0, 0, 1, 2, 0, 0, 0, 3, 0>>
      assert Memory.regions(bytes, 1, 10) == [{2, 2}, {7, 1}]
      assert Memory.regions(bytes, 4, 10) == [{2, 6}]
      assert Memory.regions(bytes, 1, 1) == [{2, 2}]
      assert Memory.regions(<<0::size(8192)-unit(8)>>, 1, 10) == []
    end

    test "diff/4 lists differing ranges as {start, length}, merging small gaps" do
      assert Memory.diff("abcdef", "abXdeY", 1, 10) == [{2, 1}, {5, 1}]
      assert Memory.diff("abcdef", "abXdeY", 3, 10) == [{2, 4}]
      assert Memory.diff("abcdef", "abXdeY", 1, 1) == [{2, 1}]
      assert Memory.diff("same", "same", 1, 10) == []
      # The tail of the longer one differs.
      assert Memory.diff("ab", "abcd", 1, 10) == [{2, 2}]
    end

    test "strings/5 finds printable runs with their offsets" do
      bytes = <<0, "hello", 0, "hi", 0, "world!", 1, "héllo", 0>>
      assert Memory.strings(bytes, 4, 64, false, 10) == [{1, "hello"}, {10, "world!"}]

      assert Memory.strings(bytes, 4, 64, true, 10) ==
               [{1, "hello"}, {10, "world!"}, {17, "héllo"}]

      assert Memory.strings(bytes, 4, 64, false, 1) == [{1, "hello"}]
      assert Memory.strings(bytes, 4, 4, false, 2) == [{1, "hell"}, {10, "worl"}]
    end
  end

  test "no runtime carries the codec or the scans any more" do
    for runtime <- [Munition.Runtime.Wasmtime, Munition.Runtime.Wasmi],
        {name, arity} <- [
          compress_memory: 1,
          decompress_memory: 2,
          decompressed_size: 1,
          search_memory: 3,
          memory_regions: 3,
          diff_memory: 4,
          memory_strings: 5
        ] do
      Code.ensure_loaded!(runtime)
      refute function_exported?(runtime, name, arity), "#{inspect(runtime)} still exports #{name}/#{arity}"
    end
  end
end

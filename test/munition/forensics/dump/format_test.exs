defmodule Munition.Forensics.Dump.FormatTest do
  use ExUnit.Case, async: true

  alias Munition.Forensics.Dump
  alias Munition.Forensics.Dump.Format

  # Writes a secret into memory at run time, keeps state in a non-exported
  # mutable global (a stack pointer), and traps two frames down.
  @guest ~S"""
  (module
    (memory (export "memory") 2)
    (global $sp (mut i32) (i32.const 65536))
    (global (export "answer") i64 (i64.const -42))
    (global $ratio (mut f64) (f64.const 0.25))
    (data (i32.const 1024) "static-greeting")
    (func $stash_secret (export "run") (param $ptr i32)
      (global.set $sp (i32.const 60000))
      (i64.store (local.get $ptr) (i64.const 0x2121743372633373))
      (call $explode))
    (func $explode unreachable))
  """

  defp crash(args \\ [4096], opts \\ []) do
    {:crash, :trap, dump} = Munition.fire(@guest, "run", args, opts)
    dump
  end

  # A dump file with a valid checksum and no memories whose header is `fields`:
  # values are written as the format says, {:symbol, name} as a symbol whether
  # or not `name` is an atom, and {:raw, bytes} as the encoded bytes given.
  def crafted(fields) do
    header = value(fields)

    body =
      <<0x89, "MUNDUMP", 1::little-16, 0::little-16, byte_size(header)::little-32>> <>
        header <> <<0::little-32>>

    body <> <<:erlang.crc32(body)::little-32>>
  end

  defp value({:raw, bytes}), do: bytes
  defp value({:symbol, name}), do: <<0x07, byte_size(name)::little-16, name::binary>>
  defp value(bytes) when is_binary(bytes), do: <<0x06, byte_size(bytes)::little-32, bytes::binary>>

  defp value(list) when is_list(list),
    do: IO.iodata_to_binary([<<0x08, length(list)::little-32>> | Enum.map(list, &value/1)])

  defp value(map) when is_map(map) do
    pairs = Enum.map(map, fn {k, v} -> [value(k), value(v)] end)
    IO.iodata_to_binary([<<0x0A, map_size(map)::little-32>> | pairs])
  end

  defp decode(bytes), do: Format.decode(bytes, Dump.max_memory_size())

  describe "encode/1 and decode/2" do
    test "a dump starts with the magic and the version Dump.version/0 reports" do
      assert <<0x89, "MUNDUMP", 2::little-16, _::binary>> = Format.encode(%Dump{})
      assert Format.version() == 2 and Dump.version() == Format.version()
    end

    test "round-trip values at the edges of the format" do
      dump = %Dump{
        crash()
        | args: [0xFFFFFFFFFFFFFFFF, -0x8000000000000001, 1.5, "bytes\0\xFF"],
          log: [{1, "line one"}, {3, <<0xFF, 0>>}],
          message: nil,
          captured_at: nil,
          globals: [
            %{index: 0, type: :v128, mutable: false, value: <<1::128>>, export: nil},
            %{index: 1, type: :f32, mutable: true, value: :nan, export: "x"},
            # Every reference type is captured as :ref.
            %{index: 2, type: :ref, mutable: false, value: :ref, export: nil}
          ]
      }

      assert {:ok, ^dump} = dump |> Format.encode() |> decode()
    end

    test "round-trip a dump without a store (no memories, no globals)" do
      dump = %Dump{reason: :timeout, trap: :interrupt, message: "deadline", function: "f"}
      assert {:ok, ^dump} = dump |> Format.encode() |> decode()
    end

    test "a value the format cannot carry is an ArgumentError" do
      assert_raise ArgumentError, ~r/cannot carry/, fn -> Format.encode(%Dump{args: [self()]}) end
    end
  end

  describe "hostile input" do
    setup do
      %{bytes: Format.encode(crash())}
    end

    test "wrong magic, wrong version, flags, empty input" do
      assert decode("") == {:error, :bad_magic}
      assert decode("PK\x03\x04 a zip file") == {:error, :bad_magic}
      assert decode(<<0x89, "MUN">>) == {:error, :truncated}
      assert decode(<<0x89, "MUNDUMP", 3::little-16, 0::32>>) == {:error, {:unsupported_version, 3}}
      assert decode(<<0x89, "MUNDUMP", 0::little-16, 0::32>>) == {:error, {:unsupported_version, 0}}

      assert decode(<<0x89, "MUNDUMP", 1::little-16, 1::little-16>>) ==
               {:error, {:malformed, :flags}}
    end

    test "every truncation is an error", %{bytes: bytes} do
      for len <- 0..(byte_size(bytes) - 1) do
        assert {:error, reason} = decode(binary_part(bytes, 0, len))
        assert reason in [:truncated, :bad_magic, :checksum_mismatch], "length #{len}: #{inspect(reason)}"
      end
    end

    test "extra bytes after the checksum are an error", %{bytes: bytes} do
      assert decode(bytes <> <<0>>) == {:error, :trailing_bytes}
    end

    test "a flipped byte anywhere is an error, never an exception", %{bytes: bytes} do
      for offset <- 0..(byte_size(bytes) - 1), mask <- [0x01, 0x80, 0xFF] do
        <<head::binary-size(offset), byte, tail::binary>> = bytes
        corrupted = <<head::binary, Bitwise.bxor(byte, mask), tail::binary>>
        assert {:error, _reason} = decode(corrupted), "offset #{offset} mask #{mask}"
      end
    end

    test "corruption with a recomputed checksum is a documented error or a dump every reader accepts",
         %{bytes: bytes} do
      body = binary_part(bytes, 0, byte_size(bytes) - 4)
      <<_::binary-size(12), header_len::little-32, _::binary>> = body
      header_end = 16 + header_len
      fields = ~w(reason trap message backtrace fuel_given fuel_consumed fuel_remaining
                  execution_time_us globals module_hash snapshot imports exports function args
                  capabilities inert_links log stdout stderr stdout_truncated stderr_truncated
                  wasmtime_version munition_version captured_at replay)a
      malformed = [:header, :value, :too_deep, :memory | fields]

      results =
        for offset <- 12..(byte_size(body) - 1), mask <- [0x01, 0x7F, 0xFF] do
          <<head::binary-size(offset), byte, tail::binary>> = body
          corrupted = <<head::binary, Bitwise.bxor(byte, mask), tail::binary>>
          file = corrupted <> <<:erlang.crc32(corrupted)::little-32>>
          where = "offset #{offset} mask #{mask}"

          case decode(file) do
            {:ok, %Dump{} = dump} ->
              # The header is lenient where the moduledoc says so (unknown
              # keys are ignored, symbols that are not atoms read as strings),
              # so a decoded header need not re-encode to the same bytes; but
              # it must be a dump that encodes, decodes to itself, and that
              # the coredump writer and the analyser take without raising.
              reserialized = Format.encode(dump)
              assert decode(reserialized) == {:ok, dump}, where
              assert {tag, _} = Dump.to_coredump(dump), where
              assert tag in [:ok, :error], where
              assert is_binary(Munition.Forensics.Analyser.summary(dump)), where

              # Memory records have no leniency: what decodes is what was there.
              if offset >= header_end, do: assert(reserialized == file, where)
              :ok

            {:error, :truncated} ->
              :error

            {:error, :trailing_bytes} ->
              :error

            {:error, {:malformed, what}} ->
              assert what in malformed, "#{where}: #{inspect(what)}"
              :error

            {:error, {:too_large, declared, bound}} ->
              assert declared > bound, where
              :error

            other ->
              flunk("#{where}: undocumented result #{inspect(other)}")
          end
        end

      # Both outcomes occur, so neither branch above is dead.
      assert Enum.uniq(Enum.sort(results)) == [:error, :ok]
    end

    test "random bytes are an error" do
      :rand.seed(:exsss, {1, 2, 3})

      for size <- Enum.to_list(0..64) ++ [1000, 10_000] do
        assert {:error, _} = decode(:rand.bytes(size))
        assert {:error, _} = decode(<<0x89, "MUNDUMP", 1::little-16, 0::16>> <> :rand.bytes(size))
      end
    end

    test "a memory declaring more than the bound is refused before decompression" do
      # The record claims 8 GiB: refused on the declared size, before the
      # frame is even looked at.
      dump = crash()
      bytes = Format.encode(dump)
      assert Format.decode(bytes, 65_536) == {:error, {:too_large, 131_072, 65_536}}

      huge = %{hd(dump.memories) | size: 8 * 1024 * 1024 * 1024, pages: 131_072}
      body = Format.encode(%{dump | memories: [huge]})
      assert {:error, {:too_large, 8_589_934_592, bound}} = decode(body)
      assert bound == Dump.max_memory_size() and bound > 4 * 1024 * 1024 * 1024
    end

    test "a memory whose zstd frame disagrees with its declared size is malformed" do
      dump = crash()
      [memory] = dump.memories
      {:ok, data} = Munition.Forensics.Memory.compress(:binary.copy(<<0>>, 100))
      lying = %{memory | data: data}

      assert decode(Format.encode(%{dump | memories: [lying]})) ==
               {:error, {:malformed, :memory}}
    end

    test "a crafted header cannot nest without bound or claim more items than its bytes hold" do
      deep = String.duplicate(<<0x08, 1::little-32>>, 100) <> <<0x00>>
      assert decode(crafted(%{"args" => {:raw, deep}})) == {:error, {:malformed, :too_deep}}

      # A list claiming four billion items in a few bytes fails on the bytes,
      # without allocating for the count.
      huge = <<0x08, 0xFFFFFFFF::little-32, 0x00>>
      assert decode(crafted(%{"args" => {:raw, huge}})) == {:error, {:malformed, :value}}

      # The framing itself is fine: an empty header map reads as an empty dump.
      assert {:ok, %Dump{reason: nil, memories: []}} = decode(crafted(%{}))
    end

    test "a symbol that is not an atom yet is read as a string, where a string may stand" do
      name = "munition_test_capability_#{System.unique_integer([:positive])}"

      assert {:ok, %Dump{capabilities: [:log, ^name], args: [^name]}} =
               decode(
                 crafted(%{"capabilities" => [{:symbol, "log"}, {:symbol, name}], "args" => [{:symbol, name}]})
               )

      assert_raise ArgumentError, fn -> String.to_existing_atom(name) end
    end

    test "inert links round-trip; a file from before them reads as none; a wrong shape is malformed" do
      links = [
        %{module: "wasi_snapshot_preview1", name: "path_open", needs: :wasi_fs, reason: :no_preopen},
        %{
          module: "wasi_snapshot_preview1",
          name: "path_rename",
          needs: :wasi_fs_write,
          reason: :no_writable_preopen
        }
      ]

      assert {:ok, %Dump{inert_links: ^links}} =
               %{crash() | inert_links: links} |> Format.encode() |> decode()

      assert {:ok, %Dump{inert_links: []}} = decode(crafted(%{}))

      # A capability or reason this VM has no atom for reads as a string.
      fresh = "munition_test_reason_#{System.unique_integer([:positive])}"
      link = %{{:symbol, "module"} => "m", {:symbol, "name"} => "f"}

      assert {:ok, %Dump{inert_links: [%{module: "m", name: "f", needs: :wasi_fs, reason: ^fresh}]}} =
               decode(
                 crafted(%{
                   "inert_links" => [
                     Map.merge(link, %{
                       {:symbol, "needs"} => {:symbol, "wasi_fs"},
                       {:symbol, "reason"} => {:symbol, fresh}
                     })
                   ]
                 })
               )

      assert decode(crafted(%{"inert_links" => [link]})) == {:error, {:malformed, :inert_links}}
      assert decode(crafted(%{"inert_links" => "path_open"})) == {:error, {:malformed, :inert_links}}
    end

    test "reason, trap and a global's type and value outside the format's atoms are malformed" do
      fresh = {:symbol, "munition_test_reason_#{System.unique_integer([:positive])}"}
      assert decode(crafted(%{"reason" => fresh})) == {:error, {:malformed, :reason}}

      # Existing atoms are not enough: they must be the ones the format lists.
      assert {:error, {:malformed, :reason}} = %Dump{reason: :erlang} |> Format.encode() |> decode()

      assert {:error, {:malformed, :trap}} = %Dump{trap: :ok} |> Format.encode() |> decode()

      global = %{index: 0, type: :i32, mutable: false, value: 1, export: nil}

      for bad <- [%{global | type: :funcref}, %{global | value: 1.5}, %{global | type: :f64, value: :ref}] do
        assert {:error, {:malformed, :globals}} = %Dump{globals: [bad]} |> Format.encode() |> decode(),
               inspect(bad)
      end
    end

    test "a memory record whose pages, page size and size disagree is malformed" do
      dump = crash([1], forensics: :minimal)
      [memory] = dump.memories

      for bad <- [
            %{memory | page_size: 0, size: 0},
            %{memory | page_size: 3, pages: 2, size: 6},
            %{memory | pages: 3}
          ] do
        assert decode(Format.encode(%{dump | memories: [bad]})) == {:error, {:malformed, :memory}},
               inspect(bad)
      end
    end

    test "a header field with the wrong shape is malformed" do
      assert {:error, {:malformed, :backtrace}} =
               %Dump{backtrace: [%{func_index: "zero"}]} |> Format.encode() |> decode()

      assert {:error, {:malformed, :fuel_given}} = %Dump{fuel_given: -1} |> Format.encode() |> decode()
    end
  end
end

defmodule Munition.Forensics.Dump.FormatAtomTableTest do
  # Counts the atoms of the whole VM: nothing else may run meanwhile.
  use ExUnit.Case, async: false

  alias Munition.Forensics.Dump
  alias Munition.Forensics.Dump.{Format, FormatTest}

  test "decoding crafted dumps never adds atoms, however many fresh symbols they carry" do
    # 50 files of 200 symbol names each that no code has made atoms of.
    files =
      for file <- 1..50 do
        names = for i <- 1..200, do: "munition_fresh_#{file}_#{i}_#{System.unique_integer([:positive])}"
        symbols = Enum.map(names, &{:symbol, &1})
        {names, FormatTest.crafted(%{"args" => symbols, "capabilities" => symbols})}
      end

    # Load and exercise every module on the path first, so that only the
    # decoding of the crafted files is counted.
    warm_up = [{:symbol, "log"}, {:symbol, "munition_warm_up_#{System.unique_integer([:positive])}"}]
    assert {:ok, _} = Format.decode(FormatTest.crafted(%{"capabilities" => warm_up}), 65_536)
    before = :erlang.system_info(:atom_count)

    for {names, bytes} <- files do
      assert {:ok, %Dump{args: ^names, capabilities: ^names}} = Format.decode(bytes, 65_536)
    end

    assert :erlang.system_info(:atom_count) == before

    for {names, _bytes} <- files, name <- names do
      assert_raise ArgumentError, fn -> String.to_existing_atom(name) end
    end
  end
end

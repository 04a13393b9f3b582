defmodule Munition.Forensics.DumpTest do
  use ExUnit.Case, async: true

  alias Munition.Forensics.Dump

  doctest Dump

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

  defp tmp_dir(name) do
    dir = Path.join(System.tmp_dir!(), "munition-dump-test-#{name}-#{System.unique_integer([:positive])}")
    File.rm_rf!(dir)
    on_exit(fn -> File.rm_rf!(dir) end)
    dir
  end

  describe "serialize/1 and deserialize/2" do
    test "round-trip every field of a real crash dump" do
      dump = crash([4096], capabilities: [:log, :time])
      assert dump.memories != [] and dump.globals != [] and dump.backtrace != []

      bytes = Dump.serialize(dump)
      assert <<0x89, "MUNDUMP", 1::little-16, 0::little-16, _::binary>> = bytes
      assert {:ok, ^dump} = Dump.deserialize(bytes)
    end

    test "round-trip a minimal dump, whose memories have no bytes" do
      dump = crash([4096], forensics: :minimal)
      assert [%{data: nil, size: 131_072}] = dump.memories
      assert {:ok, ^dump} = dump |> Dump.serialize() |> Dump.deserialize()
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
            %{index: 2, type: :funcref, mutable: false, value: :ref, export: nil}
          ]
      }

      assert {:ok, ^dump} = dump |> Dump.serialize() |> Dump.deserialize()
    end

    test "round-trip a dump without a store (no memories, no globals)" do
      dump = %Dump{reason: :timeout, trap: :interrupt, message: "deadline", function: "f"}
      assert {:ok, ^dump} = dump |> Dump.serialize() |> Dump.deserialize()
    end

    test "a value the format cannot carry is an ArgumentError" do
      assert_raise ArgumentError, ~r/cannot carry/, fn -> Dump.serialize(%Dump{args: [self()]}) end
    end
  end

  describe "hostile input" do
    setup do
      %{bytes: Dump.serialize(crash())}
    end

    test "wrong magic, wrong version, flags, empty input" do
      assert Dump.deserialize("") == {:error, :bad_magic}
      assert Dump.deserialize("PK\x03\x04 a zip file") == {:error, :bad_magic}
      assert Dump.deserialize(<<0x89, "MUN">>) == {:error, :truncated}
      assert Dump.deserialize(<<0x89, "MUNDUMP", 2::little-16, 0::32>>) == {:error, {:unsupported_version, 2}}

      assert Dump.deserialize(<<0x89, "MUNDUMP", 1::little-16, 1::little-16>>) ==
               {:error, {:malformed, :flags}}
    end

    test "every truncation is an error", %{bytes: bytes} do
      for len <- 0..(byte_size(bytes) - 1) do
        assert {:error, reason} = Dump.deserialize(binary_part(bytes, 0, len))
        assert reason in [:truncated, :bad_magic, :checksum_mismatch], "length #{len}: #{inspect(reason)}"
      end
    end

    test "extra bytes after the checksum are an error", %{bytes: bytes} do
      assert Dump.deserialize(bytes <> <<0>>) == {:error, :trailing_bytes}
    end

    test "a flipped byte anywhere is an error, never an exception", %{bytes: bytes} do
      for offset <- 0..(byte_size(bytes) - 1), mask <- [0x01, 0x80, 0xFF] do
        <<head::binary-size(offset), byte, tail::binary>> = bytes
        corrupted = <<head::binary, Bitwise.bxor(byte, mask), tail::binary>>
        assert {:error, _reason} = Dump.deserialize(corrupted), "offset #{offset} mask #{mask}"
      end
    end

    test "corruption with a recomputed checksum is still an error or a well-formed dump", %{bytes: bytes} do
      body = binary_part(bytes, 0, byte_size(bytes) - 4)

      for offset <- 12..(byte_size(body) - 1), mask <- [0x01, 0x7F, 0xFF] do
        <<head::binary-size(offset), byte, tail::binary>> = body
        corrupted = <<head::binary, Bitwise.bxor(byte, mask), tail::binary>>

        case Dump.deserialize(corrupted <> <<:erlang.crc32(corrupted)::little-32>>) do
          {:ok, %Dump{}} -> :ok
          {:error, _reason} -> :ok
        end
      end
    end

    test "random bytes are an error" do
      :rand.seed(:exsss, {1, 2, 3})

      for size <- Enum.to_list(0..64) ++ [1000, 10_000] do
        assert {:error, _} = Dump.deserialize(:rand.bytes(size))
        assert {:error, _} = Dump.deserialize(<<0x89, "MUNDUMP", 1::little-16, 0::16>> <> :rand.bytes(size))
      end
    end

    test "a memory declaring more than the bound is refused before decompression" do
      # The record claims 8 GiB: refused on the declared size, before the
      # frame is even looked at.
      dump = crash()
      bytes = Dump.serialize(dump)
      assert Dump.deserialize(bytes, max_memory_size: 65_536) == {:error, {:too_large, 131_072, 65_536}}

      huge = %{hd(dump.memories) | size: 8 * 1024 * 1024 * 1024, pages: 131_072}
      body = Dump.serialize(%{dump | memories: [huge]})
      assert {:error, {:too_large, 8_589_934_592, bound}} = Dump.deserialize(body)
      assert bound == Dump.max_memory_size() and bound > 4 * 1024 * 1024 * 1024
    end

    test "a memory whose zstd frame disagrees with its declared size is malformed" do
      dump = crash()
      [memory] = dump.memories
      lying = %{memory | data: Munition.Native.zstd_compress(:binary.copy(<<0>>, 100))}

      assert Dump.deserialize(Dump.serialize(%{dump | memories: [lying]})) ==
               {:error, {:malformed, :memory}}
    end

    test "a crafted header cannot nest without bound or flood the atom table" do
      file = fn header ->
        body =
          <<0x89, "MUNDUMP", 1::little-16, 0::little-16, byte_size(header)::little-32>> <>
            header <> <<0::little-32>>

        body <> <<:erlang.crc32(body)::little-32>>
      end

      args_map = fn value -> <<0x0A, 1::little-32, 0x06, 4::little-32, "args", value::binary>> end

      deep = String.duplicate(<<0x08, 1::little-32>>, 100) <> <<0x00>>
      assert Dump.deserialize(file.(args_map.(deep))) == {:error, {:malformed, :too_deep}}

      atoms =
        for i <- 1..300, into: <<0x08, 300::little-32>> do
          name = "munition_test_never_an_atom_#{System.unique_integer([:positive])}_#{i}"
          <<0x07, byte_size(name)::little-16, name::binary>>
        end

      assert Dump.deserialize(file.(args_map.(atoms))) == {:error, {:malformed, :too_many_atoms}}

      # A list claiming four billion items in a few bytes fails on the bytes,
      # without allocating for the count.
      huge = <<0x08, 0xFFFFFFFF::little-32, 0x00>>
      assert Dump.deserialize(file.(args_map.(huge))) == {:error, {:malformed, :value}}

      # The framing itself is fine: an empty header map reads as an empty dump.
      assert {:ok, %Dump{reason: nil, memories: []}} = Dump.deserialize(file.(<<0x0A, 0::little-32>>))
    end

    test "a header field with the wrong shape is malformed" do
      assert {:error, {:malformed, :backtrace}} =
               %Dump{backtrace: [%{func_index: "zero"}]} |> Dump.serialize() |> Dump.deserialize()

      assert {:error, {:malformed, :fuel_given}} =
               %Dump{fuel_given: -1} |> Dump.serialize() |> Dump.deserialize()
    end
  end

  describe "write/2 and read/2" do
    test "put a dump on disk and read it back" do
      dir = tmp_dir("rw")
      File.mkdir_p!(dir)
      path = Path.join(dir, "crash.munition-dump")
      dump = crash()
      assert Dump.write(dump, path) == :ok
      assert Dump.read(path) == {:ok, dump}
      assert File.ls!(dir) == ["crash.munition-dump"]
    end

    test "a missing or corrupt file is an error" do
      dir = tmp_dir("bad")
      File.mkdir_p!(dir)
      assert Dump.read(Path.join(dir, "nope")) == {:error, :enoent}
      File.write!(Path.join(dir, "junk"), "junk")
      assert Dump.read(Path.join(dir, "junk")) == {:error, :bad_magic}
    end
  end

  describe "write_to_dir/2 and fire/4's :dump_dir" do
    test "every crash gets its own file, named so that sorting by name sorts by capture time" do
      dir = tmp_dir("audit")

      dumps =
        for ptr <- [0, 8, 16] do
          dump = crash([ptr], dump_dir: dir)
          Process.sleep(2)
          dump
        end

      files = dir |> File.ls!() |> Enum.sort()
      assert length(files) == 3
      assert Enum.all?(files, &(&1 =~ ~r/^\d{8}T\d{6}\.\d{6}Z-trap-[0-9a-f]{8}\.munition-dump$/))

      read = Enum.map(files, &elem(Dump.read(Path.join(dir, &1)), 1))
      assert read == dumps
      assert Enum.map(read, & &1.args) == [[0], [8], [16]]
    end

    test "the same dump written twice gets two files" do
      dir = tmp_dir("twice")
      dump = crash()
      assert {:ok, a} = Dump.write_to_dir(dump, dir)
      assert {:ok, b} = Dump.write_to_dir(dump, dir)
      assert a != b
      assert {:ok, ^dump} = Dump.read(b)
    end
  end
end

defmodule Munition.Forensics.DumpDirConfigTest do
  # Sets the application environment, which is global.
  use ExUnit.Case, async: false

  alias Munition.Forensics.Dump

  test "config :munition, :dump_dir makes fire/4 keep every crash's dump" do
    dir = Path.join(System.tmp_dir!(), "munition-dump-config-#{System.unique_integer([:positive])}")
    Application.put_env(:munition, :dump_dir, dir)

    on_exit(fn ->
      Application.delete_env(:munition, :dump_dir)
      File.rm_rf!(dir)
    end)

    {:crash, :trap, dump} = Munition.fire(~s{(module (func $oops (export "f") unreachable))}, "f", [])
    assert [file] = File.ls!(dir)
    assert {:ok, ^dump} = Dump.read(Path.join(dir, file))
    assert [%{func_name: "oops"}] = dump.backtrace
  end

  test "config :munition, :dump_max_memory_size bounds what a reader accepts" do
    {:crash, :trap, dump} = Munition.fire(~s{(module (memory 2) (func (export "f") unreachable))}, "f", [])
    bytes = Dump.serialize(dump)
    Application.put_env(:munition, :dump_max_memory_size, 65_536)
    on_exit(fn -> Application.delete_env(:munition, :dump_max_memory_size) end)
    assert Dump.deserialize(bytes) == {:error, {:too_large, 131_072, 65_536}}
  end
end

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
    dir = Munition.Tmp.path("dump-test-#{name}")

    File.rm_rf!(dir)
    on_exit(fn -> File.rm_rf!(dir) end)
    dir
  end

  describe "serialize/1 and deserialize/2" do
    test "round-trip every field of a real crash dump" do
      dump = crash([4096], capabilities: [:log, :time])
      assert dump.memories != [] and dump.globals != [] and dump.backtrace != []

      bytes = Dump.serialize(dump)
      assert <<0x89, "MUNDUMP", 2::little-16, 0::little-16, _::binary>> = bytes
      assert {:ok, ^dump} = Dump.deserialize(bytes)
    end

    test "round-trip a minimal dump, whose memories have no bytes" do
      dump = crash([4096], forensics: :minimal)
      assert [%{data: nil, size: 131_072}] = dump.memories
      assert {:ok, ^dump} = dump |> Dump.serialize() |> Dump.deserialize()
    end
  end

  describe "memories_bytes/2" do
    test "decompresses every memory, in the order asked for" do
      dump = crash([64])
      {:ok, memory} = Dump.memory(dump, 0)
      assert binary_part(memory, 64, 8) == "s3cr3t!!"
      assert Dump.memories_bytes(dump) == {:ok, [memory]}
      assert Dump.memories_bytes(dump, [0, 0]) == {:ok, [memory, memory]}
      assert Dump.memories_bytes(dump, []) == {:ok, []}
    end

    test "answers the first error of memory/2" do
      assert Dump.memories_bytes(crash(), [0, 7]) == {:error, :no_memory}
      assert Dump.memories_bytes(crash([1], forensics: :minimal)) == {:error, :not_captured}
      assert Dump.memories_bytes(%Dump{}) == {:ok, []}
    end

    test "indexes that are not a list are an ArgumentError" do
      assert_raise ArgumentError, ~r/got: 0/, fn -> Dump.memories_bytes(%Dump{}, 0) end
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
    test "every crash of fire/4 with :dump_dir gets its own file, named by its capture time" do
      dir = tmp_dir("audit")
      dumps = for ptr <- [0, 8, 16], do: crash([ptr], dump_dir: dir)

      files = dir |> File.ls!() |> Enum.sort()
      assert length(files) == 3
      assert Enum.all?(files, &(&1 =~ ~r/^\d{8}T\d{6}\.\d{6}Z-trap-[0-9a-f]{8}\.munition-dump$/))

      read = Enum.map(files, &elem(Dump.read(Path.join(dir, &1)), 1))
      assert Enum.sort_by(read, & &1.args) == dumps

      # Each name starts with its dump's capture time (that names sort as
      # times do is the next test's).
      for {file, dump} <- Enum.zip(files, read) do
        assert String.starts_with?(file, Calendar.strftime(dump.captured_at, "%Y%m%dT%H%M%S.%fZ-"))
      end
    end

    test "names sort as capture times do" do
      dir = tmp_dir("order")
      dump = crash()

      times = [
        ~U[2025-01-02 03:04:05.000001Z],
        ~U[2025-01-02 03:04:05.000010Z],
        ~U[2025-01-02 03:04:06.000000Z],
        ~U[2026-01-01 00:00:00.000000Z]
      ]

      for i <- [2, 0, 3, 1], do: {:ok, _} = Dump.write_to_dir(%{dump | captured_at: Enum.at(times, i)}, dir)

      read = dir |> File.ls!() |> Enum.sort() |> Enum.map(&elem(Dump.read(Path.join(dir, &1)), 1))
      assert Enum.map(read, & &1.captured_at) == times
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

  # A dump holds the guest's whole memory: only its owner may read it.
  describe "permissions" do
    test "write/2 makes a file of mode 0600" do
      dir = tmp_dir("mode")
      File.mkdir_p!(dir)
      path = Path.join(dir, "crash.munition-dump")
      assert Dump.write(crash(), path) == :ok
      assert mode(path) == 0o600
    end

    test "write_to_dir/2 makes files of mode 0600 and the directories it creates 0700" do
      parent = tmp_dir("nested")
      dir = Path.join([parent, "a", "b"])
      assert {:ok, path} = Dump.write_to_dir(crash(), dir)
      assert mode(path) == 0o600
      assert mode(dir) == 0o700
      assert mode(Path.join(parent, "a")) == 0o700
      assert mode(parent) == 0o700
    end

    test "write_to_dir/2 leaves the mode of a directory that existed" do
      dir = tmp_dir("existing")
      File.mkdir_p!(dir)
      File.chmod!(dir, 0o751)
      assert {:ok, path} = Dump.write_to_dir(crash(), dir)
      assert mode(path) == 0o600
      assert mode(dir) == 0o751
    end
  end

  defp mode(path), do: Bitwise.band(File.stat!(path).mode, 0o777)
end

defmodule Munition.Forensics.DumpDirConfigTest do
  # Sets the application environment, which is global.
  use ExUnit.Case, async: false

  alias Munition.Forensics.Dump

  test "config :munition, :dump_dir makes fire/4 keep every crash's dump" do
    dir = Munition.Tmp.path("dump-config")

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

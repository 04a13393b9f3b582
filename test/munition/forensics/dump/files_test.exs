defmodule Munition.Forensics.Dump.FilesTest do
  use ExUnit.Case, async: true

  alias Munition.Forensics.Dump
  alias Munition.Forensics.Dump.Files

  defp tmp_dir(name) do
    dir = Munition.Tmp.path("files-test-#{name}")

    File.rm_rf!(dir)
    on_exit(fn -> File.rm_rf!(dir) end)
    dir
  end

  defp mode(path), do: Bitwise.band(File.stat!(path).mode, 0o777)

  # A name function that answers `names` in turn, so a test knows every name
  # it will be asked for.
  defp names(names) do
    {:ok, agent} = Agent.start_link(fn -> names end)
    fn -> Agent.get_and_update(agent, fn [name | rest] -> {name, rest} end) end
  end

  describe "write/2" do
    test "writes the bytes to a file of mode 0600 and leaves nothing else behind" do
      dir = tmp_dir("write")
      File.mkdir_p!(dir)
      path = Path.join(dir, "one")

      assert Files.write(["some ", "bytes"], path) == :ok
      assert File.read!(path) == "some bytes"
      assert mode(path) == 0o600
      assert File.ls!(dir) == ["one"]
    end

    test "replaces an existing file, and the replacement is mode 0600" do
      dir = tmp_dir("replace")
      File.mkdir_p!(dir)
      path = Path.join(dir, "one")
      File.write!(path, "old")
      File.chmod!(path, 0o644)

      assert Files.write("new", path) == :ok
      assert File.read!(path) == "new"
      assert mode(path) == 0o600
    end

    test "a directory that does not exist is an error, and nothing is created" do
      dir = tmp_dir("missing")
      assert Files.write("bytes", Path.join(dir, "one")) == {:error, :enoent}
      refute File.exists?(dir)
    end

    test "a path that cannot be renamed over leaves nothing behind" do
      dir = tmp_dir("eisdir")
      File.mkdir_p!(Path.join(dir, "taken/inside"))

      assert {:error, _} = Files.write("bytes", Path.join(dir, "taken"))
      assert File.ls!(dir) == ["taken"]
    end
  end

  describe "write_new/3" do
    test "creates the directory and its missing parents with mode 0700" do
      parent = tmp_dir("new")
      dir = Path.join([parent, "a", "b"])

      assert {:ok, path} = Files.write_new("bytes", dir, fn -> "x.munition-dump" end)
      assert path == Path.join(dir, "x.munition-dump")
      assert File.read!(path) == "bytes"
      assert mode(path) == 0o600
      assert Enum.map([parent, Path.join(parent, "a"), dir], &mode/1) == [0o700, 0o700, 0o700]
    end

    test "leaves the mode of a directory that existed" do
      dir = tmp_dir("existing")
      File.mkdir_p!(Path.join(dir, "sub"))
      File.chmod!(dir, 0o755)
      File.chmod!(Path.join(dir, "sub"), 0o711)

      assert {:ok, path} = Files.write_new("bytes", Path.join([dir, "sub", "new"]), fn -> "x" end)
      assert mode(path) == 0o600
      assert mode(Path.join([dir, "sub", "new"])) == 0o700
      assert mode(Path.join(dir, "sub")) == 0o711
      assert mode(dir) == 0o755
    end

    test "keeps a file that has the name, and asks for another" do
      dir = tmp_dir("clash")
      File.mkdir_p!(dir)
      File.write!(Path.join(dir, "taken"), "first")

      assert {:ok, path} = Files.write_new("second", dir, names(["taken", "free"]))
      assert path == Path.join(dir, "free")
      assert File.read!(Path.join(dir, "taken")) == "first"
      assert File.read!(path) == "second"
    end

    test "a directory path that is a file is an error" do
      dir = tmp_dir("file")
      File.mkdir_p!(dir)
      file = Path.join(dir, "plain")
      File.write!(file, "")

      assert Files.write_new("bytes", file, fn -> "x" end) == {:error, :eexist}
      assert {:error, :enotdir} = Files.write_new("bytes", Path.join(file, "below"), fn -> "x" end)
    end
  end

  describe "with a umask that grants everyone everything" do
    # The umask belongs to the OS process and the VM cannot change its own:
    # the writes run in a second VM started with umask 000, where the modes
    # Erlang creates files and directories with would be 0666 and 0777.
    test "files are still 0600 and created directories 0700" do
      parent = tmp_dir("umask")
      File.mkdir_p!(parent)
      File.chmod!(parent, 0o777)
      dir = Path.join([parent, "a", "b"])

      script = """
      [dir, parent] = System.argv()
      {:ok, _} = Munition.Forensics.Dump.Files.write_new("bytes", dir, fn -> "new" end)
      :ok = Munition.Forensics.Dump.Files.write("bytes", Path.join(parent, "direct"))
      File.write!(Path.join(parent, "control"), "")
      File.mkdir!(Path.join(parent, "control-dir"))
      """

      {output, status} =
        System.cmd(
          "sh",
          ["-c", ~s{umask 000 && exec "$0" -pa "$1" -e "$2" -- "$3" "$4"}] ++
            [System.find_executable("elixir"), Application.app_dir(:munition, "ebin"), script, dir, parent],
          stderr_to_stdout: true
        )

      assert status == 0, output

      # The control shows the umask took effect in the second VM.
      assert mode(Path.join(parent, "control")) == 0o666
      assert mode(Path.join(parent, "control-dir")) == 0o777

      assert mode(Path.join(dir, "new")) == 0o600
      assert mode(Path.join(parent, "direct")) == 0o600
      assert mode(dir) == 0o700
      assert mode(Path.join(parent, "a")) == 0o700
      assert mode(parent) == 0o777
    end
  end

  describe "read/2" do
    test "reads a file up to the bound, and refuses a larger one without reading it" do
      dir = tmp_dir("read")
      File.mkdir_p!(dir)
      path = Path.join(dir, "ten")
      File.write!(path, "0123456789")

      assert Files.read(path, 10) == {:ok, "0123456789"}
      assert Files.read(path, 9) == {:error, {:too_large, 10, 9}}
      assert Files.read(Path.join(dir, "nope"), 10) == {:error, :enoent}
    end
  end

  describe "name/1" do
    test "is the capture time to the microsecond, the reason and a random part" do
      dump = %Dump{reason: :fuel_exhausted, captured_at: ~U[2025-01-02 03:04:05.000123Z]}
      assert Files.name(dump) =~ ~r/^20250102T030405\.000123Z-fuel_exhausted-[0-9a-f]{8}\.munition-dump$/
    end

    test "without a reason or a capture time, says unknown and uses the current time" do
      assert Files.name(%Dump{}) =~ ~r/^\d{8}T\d{6}\.\d{6}Z-unknown-[0-9a-f]{8}\.munition-dump$/
    end

    test "sorts as capture times do" do
      times = [
        ~U[1999-12-31 23:59:59.999999Z],
        ~U[2025-01-02 03:04:05.000009Z],
        ~U[2025-01-02 03:04:05.000010Z],
        ~U[2025-01-02 03:04:06Z]
      ]

      names = Enum.map(times, &Files.name(%Dump{reason: :trap, captured_at: &1}))
      assert Enum.sort(names) == names
    end
  end
end

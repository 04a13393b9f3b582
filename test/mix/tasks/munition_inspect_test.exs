defmodule Mix.Tasks.Munition.InspectTest do
  # Mix.shell is global to the VM.
  use ExUnit.Case, async: false

  import ExUnit.CaptureIO

  alias Munition.Forensics.Dump

  @guest ~S"""
  (module
    (memory (export "memory") 1)
    (global $sp (mut i32) (i32.const 65536))
    (data (i32.const 512) "api_key=sk-live-0123456789")
    (func $leak_key (export "run") (param $ptr i32)
      (i64.store (local.get $ptr) (i64.const 0x2121743372633373))
      (call $explode))
    (func $explode unreachable))
  """

  setup do
    dir = Munition.Tmp.path("inspect-test")

    File.mkdir_p!(dir)
    on_exit(fn -> File.rm_rf!(dir) end)

    {:crash, :trap, dump} = Munition.fire(@guest, "run", [4096])
    path = Path.join(dir, "crash.munition-dump")
    :ok = Dump.write(dump, path)
    %{dir: dir, path: path, dump: dump}
  end

  defp inspect_dump(args) do
    Mix.Task.reenable("munition.inspect")
    capture_io(fn -> Mix.Task.run("munition.inspect", args) end)
  end

  test "prints the summary: reason, backtrace, fuel, globals, memory map, strings", %{path: path} do
    out = inspect_dump([path])
    assert out =~ "reason:       :trap (trap: :unreachable)"
    assert out =~ ~r/#0 explode \[func 1\]/
    assert out =~ ~r/#1 leak_key \[func 0\]/
    assert out =~ "fuel:"
    assert out =~ "global 0: mut i32 = 65536"
    assert out =~ "memory 0: 1 pages of 65536 bytes"
    assert out =~ ~s{0x00000200  "api_key=sk-live-0123456789"}
  end

  test "--strings lists every printable run", %{path: path} do
    out = inspect_dump([path, "--strings"])
    assert out == ~s{0x00000200  "api_key=sk-live-0123456789"\n0x00001000  "s3cr3t!!"\n}
    assert inspect_dump([path, "--strings", "--min-length", "9"]) =~ "api_key"
    refute inspect_dump([path, "--strings", "--min-length", "9"]) =~ "s3cr3t"
  end

  test "--search finds text and hex patterns", %{path: path} do
    out = inspect_dump([path, "--search", "s3cr3t"])
    assert out =~ ~s{1 match(es) of "s3cr3t"}
    assert out =~ "00001000  73 33 63 72 33 74"

    assert inspect_dump([path, "--search", "0x 73 33 63 72"]) =~ "00001000  73 33 63 72"
    assert inspect_dump([path, "--search", "absent"]) =~ "0 match(es)"
  end

  test "repeated --search and --hexdump are each done, in order; other options once", %{path: path} do
    out = inspect_dump([path, "--search", "s3cr3t", "--hexdump", "0x200:8", "--search", "api_key"])

    assert [_, searched, dumped, searched_again] =
             Regex.split(~r/(?=1 match\(es\) of|00000200  61 70 69 5f 6b 65 79 3d   )/, out)

    assert searched =~ ~s{1 match(es) of "s3cr3t"}
    assert dumped =~ "|api_key=|"
    assert searched_again =~ ~s{1 match(es) of "api_key"}

    assert_raise Mix.Error, ~r/^--memory was given more than once/, fn ->
      inspect_dump([path, "--memory", "0", "--memory", "1", "--strings"])
    end

    assert_raise Mix.Error, ~r/^--min-length was given more than once/, fn ->
      inspect_dump([path, "--strings", "--min-length", "4", "--min-length", "9"])
    end
  end

  test "--hexdump prints a range", %{path: path} do
    assert inspect_dump([path, "--hexdump", "0x200:8"]) ==
             "00000200  61 70 69 5f 6b 65 79 3d                           |api_key=|\n"

    assert_raise Mix.Error, ~r/outside memory 0/, fn -> inspect_dump([path, "--hexdump", "65530:10"]) end
    assert_raise Mix.Error, ~r/OFFSET:LEN/, fn -> inspect_dump([path, "--hexdump", "12"]) end
  end

  test "--coredump writes a standard coredump", %{dir: dir, path: path} do
    out_path = Path.join(dir, "crash.core.wasm")
    assert inspect_dump([path, "--coredump", out_path]) =~ "Wrote a WebAssembly coredump"
    assert {:ok, _module} = Munition.compile(File.read!(out_path))
  end

  test "missing, corrupt and foreign files are clear errors", %{dir: dir, path: path} do
    assert_raise Mix.Error, ~r/no such file/, fn -> inspect_dump([Path.join(dir, "nope")]) end

    bytes = File.read!(path)
    corrupt = Path.join(dir, "corrupt")

    File.write!(
      corrupt,
      binary_part(bytes, 0, 40) <> <<0xFF>> <> binary_part(bytes, 41, byte_size(bytes) - 41)
    )

    assert_raise Mix.Error, ~r/checksum mismatch/, fn -> inspect_dump([corrupt]) end

    truncated = Path.join(dir, "truncated")
    File.write!(truncated, binary_part(bytes, 0, 100))
    assert_raise Mix.Error, ~r/truncated/, fn -> inspect_dump([truncated]) end

    foreign = Path.join(dir, "foreign")
    File.write!(foreign, "hello")
    assert_raise Mix.Error, ~r/not a Munition dump/, fn -> inspect_dump([foreign]) end

    assert_raise Mix.Error, ~r/exactly one dump file/, fn -> inspect_dump([]) end
    assert_raise Mix.Error, ~r/Invalid option/, fn -> inspect_dump([path, "--bogus"]) end
  end
end

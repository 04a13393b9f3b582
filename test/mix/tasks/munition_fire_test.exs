defmodule Mix.Tasks.Munition.FireTest do
  # Mix.shell is global to the VM.
  use ExUnit.Case, async: false

  import ExUnit.CaptureIO

  @guest ~S"""
  (module
    (import "munition" "log" (func $log (param i32 i32 i32)))
    (memory (export "memory") 1)
    (data (i32.const 0) "hello from the guest")
    (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add)
    (func (export "half") (param f64) (result f64) local.get 0 f64.const 2 f64.div)
    (func (export "greet") (result i32 i32) (call $log (i32.const 1) (i32.const 0) (i32.const 20)) i32.const 0 i32.const 5)
    (func (export "alloc") (param i32) (result i32) i32.const 1024)
    (func (export "len") (param i32 i32) (result i32) local.get 1)
    (func (export "spin") (loop br 0))
    (func (export "boom") unreachable))
  """

  setup do
    path = Munition.Tmp.path("fire-test", ".wat")

    File.write!(path, @guest)
    on_exit(fn -> File.rm(path) end)
    %{path: path}
  end

  defp fire(args) do
    Mix.Task.reenable("munition.fire")
    capture_io(fn -> Mix.Task.run("munition.fire", args) end)
  end

  test "prints the result and its metadata", %{path: path} do
    out = fire([path, "add", "2", "0x28", "--cap", "log"])
    assert out =~ "result: 42"
    assert out =~ ~r/fuel:   \d+ consumed, \d+ left/
    assert out =~ "module: "
  end

  test "floats, binary arguments and binary results, with the guest's log", %{path: path} do
    assert fire([path, "half", "3.0", "--cap", "log"]) =~ "result: 1.5"
    assert fire([path, "len", "some bytes", "--cap", "log"]) =~ "result: 10"

    out = fire([path, "greet", "--cap", "log", "--binary"])
    assert out =~ ~s{result: "hello"}
    assert out =~ "log 1: hello from the guest"
  end

  test "a crash prints the dump's summary and exits non-zero", %{path: path} do
    out =
      capture_io(fn ->
        assert_raise Mix.Error, ~r/crashed: :trap \(trap: :unreachable\)/, fn ->
          Mix.Task.reenable("munition.fire")
          Mix.Task.run("munition.fire", [path, "boom", "--cap", "log"])
        end
      end)

    assert out =~ "reason:       :trap (trap: :unreachable)"

    capture_io(fn ->
      assert_raise Mix.Error, ~r/:fuel_exhausted/, fn ->
        fire([path, "spin", "--cap", "log", "--fuel", "1000"])
      end
    end)
  end

  test "what cannot run exits non-zero with the reason", %{path: path} do
    assert_raise Mix.Error, ~r/capability_denied/, fn -> fire([path, "add", "1", "2"]) end
    assert_raise Mix.Error, ~r/function_not_found/, fn -> fire([path, "nope", "--cap", "log"]) end
    assert_raise Mix.Error, ~r/Unknown capability: nope/, fn -> fire([path, "add", "--cap", "nope"]) end
    assert_raise Mix.Error, ~r/--fuel takes/, fn -> fire([path, "add", "--fuel", "lots"]) end
    assert_raise Mix.Error, ~r/Expected a module path/, fn -> fire([path]) end
    assert_raise Mix.Error, ~r/Cannot read/, fn -> fire(["/nonexistent/x.wasm", "f"]) end
  end
end

defmodule Mix.Tasks.Munition.FireCommandTest do
  # Mix.shell is global to the VM.
  use ExUnit.Case, async: false

  import ExUnit.CaptureIO

  # A WASI command: writes its GREETING variable's length... simpler: writes
  # "hi\n" to stdout, then exits with the code given as its first byte of stdin.
  @command ~S"""
  (module
    (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
    (memory (export "memory") 1)
    (data (i32.const 16) "hi\n")
    (func (export "_start")
      (i32.store (i32.const 0) (i32.const 16)) (i32.store (i32.const 4) (i32.const 3))
      (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
      (i32.store (i32.const 0) (i32.const 32)) (i32.store (i32.const 4) (i32.const 1))
      (drop (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
      (if (i32.load (i32.const 8)) (then (call $proc_exit (i32.sub (i32.load8_u (i32.const 32)) (i32.const 48)))))))
  """

  setup do
    dir = Munition.Tmp.path("fire-command")

    File.mkdir_p!(dir)
    on_exit(fn -> File.rm_rf!(dir) end)
    path = Path.join(dir, "cmd.wat")
    File.write!(path, @command)
    %{dir: dir, path: path}
  end

  defp fire(args) do
    Mix.Task.reenable("munition.fire")
    capture_io(fn -> Mix.Task.run("munition.fire", args) end)
  end

  test "_start runs the module as a command: its stdout and exit code 0", %{path: path} do
    out = fire([path, "_start", "--cap", "wasi"])
    assert out =~ "--- stdout ---\nhi\n"
    assert out =~ "exit code: 0"
  end

  test "a non-zero exit code is the task's exit status; stdin comes from --stdin", %{dir: dir, path: path} do
    stdin = Path.join(dir, "stdin")
    File.write!(stdin, "3")

    out =
      capture_io(fn ->
        Mix.Task.reenable("munition.fire")

        assert catch_exit(Mix.Task.run("munition.fire", [path, "_start", "--cap", "wasi", "--stdin", stdin])) ==
                 {:shutdown, 3}
      end)

    assert out =~ "exit code: 3"
  end

  test "the file functions --cap wasi links inert are named after the metadata", %{dir: dir} do
    path = Path.join(dir, "files.wat")

    File.write!(path, ~S"""
    (module
      (import "wasi_snapshot_preview1" "path_open" (func (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "path_unlink_file" (func (param i32 i32 i32) (result i32)))
      (func (export "_start")))
    """)

    assert fire([path, "_start", "--cap", "wasi"]) =~
             "\ninert:  path_open (needs :wasi_fs: no_preopen), " <>
               "path_unlink_file (needs :wasi_fs_write: no_writable_preopen)"

    refute fire([path, "_start", "--cap", "wasi,wasi_fs,wasi_fs_write"]) =~ "inert:"
  end

  test "repeated --cap add up: --cap wasi --cap wasi_fs grants both", %{path: path} do
    out = fire([path, "_start", "--cap", "wasi_fs", "--cap", "wasi"])
    assert out =~ "exit code: 0"

    out = fire([path, "_start", "--cap", "wasi", "--cap", "wasi_fs"])
    assert out =~ "--- stdout ---\nhi\n"
  end

  test "an option that takes one value, given twice, is an error naming it", %{path: path} do
    for {switch, values} <- [
          {"--fuel", ["1000", "2000"]},
          {"--timeout", ["100", "200"]},
          {"--max-memory", ["65536", "131072"]},
          {"--stdin", [path, path]}
        ] do
      argv = [path, "_start", "--cap", "wasi"] ++ Enum.flat_map(values, &[switch, &1])

      assert_raise Mix.Error, ~r/^#{switch} was given more than once; it takes one value/, fn ->
        fire(argv)
      end
    end
  end

  test "a command without the capabilities it imports is refused", %{path: path} do
    assert_raise Mix.Error, ~r/capability_denied.*fd_write.*needs: :wasi_stdio/s, fn ->
      fire([path, "_start"])
    end

    assert_raise Mix.Error, ~r/--env takes KEY=VALUE/, fn ->
      fire([path, "_start", "--cap", "wasi", "--env", "NOPE"])
    end
  end
end

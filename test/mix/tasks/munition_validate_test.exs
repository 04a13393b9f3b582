defmodule Mix.Tasks.Munition.ValidateTest do
  # Mix.shell is global to the VM.
  use ExUnit.Case, async: false

  import ExUnit.CaptureIO

  @guest ~S"""
  (module
    (import "munition" "get_time_ms" (func (result i64)))
    (import "env" "mystery" (func (param i32)))
    (memory (export "memory") 2 10)
    (func (export "run") (param i32 i64) (result f32) f32.const 1))
  """

  setup do
    path = Munition.Tmp.path("validate-test", ".wat")

    File.write!(path, @guest)
    on_exit(fn -> File.rm(path) end)
    %{path: path}
  end

  defp validate(args) do
    Mix.Task.reenable("munition.validate")
    capture_io(fn -> Mix.Task.run("munition.validate", args) end)
  end

  test "lists imports with the capability each needs, exports with signatures, memories, and what is refused",
       %{path: path} do
    out =
      capture_io(fn ->
        assert_raise Mix.Error, ~r/1 import\(s\) would be refused/, fn ->
          Mix.Task.reenable("munition.validate")
          Mix.Task.run("munition.validate", [path, "--cap", "time"])
        end
      end)

    assert out =~ "munition.get_time_ms  func () -> (i64)  needs: :time"
    assert out =~ "env.mystery  func (i32) -> ()  needs: - (no capability grants it)"
    assert out =~ "run  func (i32, i64) -> (f32)"
    assert out =~ "memory 0: 2 pages min, 10 max"
    assert out =~ "refused with capabilities [:time]:\n  env.mystery"
  end

  test "repeated --cap add up", %{path: path} do
    out =
      capture_io(fn ->
        assert_raise Mix.Error, ~r/1 import\(s\) would be refused/, fn ->
          Mix.Task.reenable("munition.validate")
          Mix.Task.run("munition.validate", [path, "--cap", "log", "--cap", "time,random"])
        end
      end)

    assert out =~ "refused with capabilities [:log, :random, :time]:"
    assert out =~ "env.mystery"

    assert_raise Mix.Error, ~r/Unknown capability: nope/, fn ->
      validate([path, "--cap", "log", "--cap", "nope"])
    end
  end

  test "exits zero when nothing would be refused" do
    path = Munition.Tmp.path("validate-ok", ".wat")

    File.write!(path, ~s{(module (import "munition" "log" (func (param i32 i32 i32))) (func (export "f")))})
    on_exit(fn -> File.rm(path) end)
    assert validate([path, "--cap", "basic"]) =~ "nothing refused with capabilities [:abort, :log, :time]"
  end

  test "an invalid module exits non-zero" do
    path = Munition.Tmp.path("validate-bad", ".wasm")

    File.write!(path, <<0, 97, 115, 109, 1, 0, 0, 0, 99>>)
    on_exit(fn -> File.rm(path) end)
    assert_raise Mix.Error, ~r/does not compile: \{:invalid_module/, fn -> validate([path]) end
  end
end

defmodule Mix.Tasks.Munition.ValidateWASITest do
  use ExUnit.Case, async: false

  import ExUnit.CaptureIO

  test "WASI imports name the capability that grants each; --cap wasi links the file functions inert" do
    path = Munition.Tmp.path("validate-wasi", ".wat")

    File.write!(path, ~S"""
    (module (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "path_open" (func (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "path_unlink_file" (func (param i32 i32 i32) (result i32)))
      (memory (export "memory") 1) (func (export "_start")))
    """)

    on_exit(fn -> File.rm(path) end)

    Mix.Task.reenable("munition.validate")
    out = capture_io(fn -> Mix.Task.run("munition.validate", [path, "--cap", "wasi"]) end)

    assert out =~ "wasi_snapshot_preview1.fd_write  func (i32, i32, i32, i32) -> (i32)  needs: :wasi_stdio"
    assert out =~ "nothing refused with capabilities"

    assert out =~
             "linked inert, reaching nothing (see Munition.Host.Capabilities):\n" <>
               "  wasi_snapshot_preview1.path_open  needs: :wasi_fs (no_preopen)\n" <>
               "  wasi_snapshot_preview1.path_unlink_file  needs: :wasi_fs_write (no_writable_preopen)"

    # Without :wasi_stdio nothing is inert.
    out =
      capture_io(fn ->
        assert_raise Mix.Error, ~r/2 import\(s\) would be refused/, fn ->
          Mix.Task.reenable("munition.validate")
          Mix.Task.run("munition.validate", [path, "--cap", "wasi_fs"])
        end
      end)

    assert out =~
             "refused with capabilities [:wasi_fs]:\n  wasi_snapshot_preview1.fd_write  needs: :wasi_stdio"

    assert out =~ "wasi_snapshot_preview1.path_unlink_file  needs: :wasi_fs_write"
  end

  @component ~S"""
  (component
    (import "my:host/api" (instance $h (export "twice" (func (param "x" u32) (result u32)))))
    (import "wasi:cli/exit@0.2.0" (instance $e (export "exit" (func (param "status" (result))))))
    (core func $twice (canon lower (func $h "twice")))
    (core module $m
      (import "host" "twice" (func $t (param i32) (result i32)))
      (func (export "quad") (param i32) (result i32) (call $t (call $t (local.get 0)))))
    (core instance $hi (export "twice" (func $twice)))
    (core instance $i (instantiate $m (with "host" (instance $hi))))
    (func (export "quad") (param "x" u32) (result u32) (canon lift (core func $i "quad")))
  )
  """

  test "a component's WIT world: its imports with what grants each, its exports typed, and what is refused" do
    path = Munition.Tmp.path("validate-component", ".wat")

    File.write!(path, @component)
    on_exit(fn -> File.rm(path) end)

    out =
      capture_io(fn ->
        assert_raise Mix.Error, ~r/1 import\(s\) would be refused/, fn ->
          Mix.Task.reenable("munition.validate")
          Mix.Task.run("munition.validate", [path, "--cap", "wasi"])
        end
      end)

    assert out =~ "component "
    assert out =~ "my:host/api.twice: func(x: u32) -> u32  needs: a host function of yours"
    assert out =~ "wasi:cli/exit@0.2.0.exit: func(status: result)  needs: :wasi_exit"
    assert out =~ "quad: func(x: u32) -> u32"
    assert out =~ "refused with capabilities"
    assert out =~ "  my:host/api.twice  needs: - (no capability grants it)"
  end
end

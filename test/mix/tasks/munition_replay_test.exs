defmodule Mix.Tasks.Munition.ReplayTest do
  # Mix.shell is global to the VM.
  use ExUnit.Case, async: false

  import ExUnit.CaptureIO

  alias Munition.Forensics.Dump

  # Draws a random number, logs a line, prints to stdout and stderr, fills
  # memory in a loop, then traps.
  @guest ~S"""
  (module
    (import "munition" "get_random" (func $random (result i64)))
    (import "munition" "log" (func $log (param i32 i32 i32)))
    (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
    (memory (export "memory") 1)
    (data (i32.const 16) "printed by the guest\n")
    (data (i32.const 48) "complained")
    (global $seed (export "seed") (mut i64) (i64.const 0))
    (func (export "run") (local $i i32)
      (global.set $seed (call $random))
      (call $log (i32.const 1) (i32.const 16) (i32.const 20))
      (i32.store (i32.const 0) (i32.const 16))
      (i32.store (i32.const 4) (i32.const 21))
      (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
      (i32.store (i32.const 0) (i32.const 48))
      (i32.store (i32.const 4) (i32.const 10))
      (drop (call $write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 8)))
      (loop $l
        (i32.store (i32.add (i32.const 1024) (i32.mul (local.get $i) (i32.const 4))) (i32.add (local.get $i) (i32.const 1)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $l (i32.lt_u (local.get $i) (i32.const 10000))))
      unreachable))
  """

  setup do
    dir = Munition.Tmp.path("replay-test")

    File.mkdir_p!(dir)
    on_exit(fn -> File.rm_rf!(dir) end)

    {:crash, :trap, dump} = Munition.fire(@guest, "run", [], capabilities: [:random, :log, :wasi])
    path = Path.join(dir, "crash.munition-dump")
    :ok = Dump.write(dump, path)
    wat = Path.join(dir, "guest.wat")
    File.write!(wat, @guest)
    %{dir: dir, path: path, dump: dump, wat: wat}
  end

  defp replay(args) do
    Mix.Task.reenable("munition.replay")
    capture_io(fn -> Mix.Task.run("munition.replay", args) end)
  end

  test "prints the replayed end: reason, trap, fuel, host calls, output", %{path: path, wat: wat, dump: dump} do
    out = replay([path, wat])
    assert out =~ "Replayed to the recorded end."
    assert out =~ "reason:     :trap (trap: :unreachable)"
    assert out =~ "function:   run()"
    assert out =~ "fuel:       #{dump.fuel_consumed} consumed of #{dump.fuel_given}"
    assert out =~ "host calls: 4 answered from the log"
    assert out =~ "--- stdout ---\nprinted by the guest\n"
    assert out =~ "--- stderr ---\ncomplained\n"
  end

  test "takes a binary module too; a call with no host call replays with none", %{dir: dir} do
    # (module (func (export "f") unreachable))
    bytes =
      <<0, "asm", 1::little-32, 1, 4, 1, 0x60, 0, 0, 3, 2, 1, 0, 7, 5, 1, 1, "f", 0, 0, 10, 5, 1, 3, 0, 0,
        0x0B>>

    wasm = Path.join(dir, "trap.wasm")
    File.write!(wasm, bytes)
    {:crash, :trap, dump} = Munition.fire(bytes, "f", [])
    assert dump.replay.log == ""
    path = Path.join(dir, "trap.munition-dump")
    :ok = Dump.write(dump, path)
    out = replay([path, wasm])
    assert out =~ "Replayed to the recorded end."
    assert out =~ "host calls: 0 answered from the log"
    refute out =~ "stdout"
  end

  test "--until writes the state at that point and prints the actual count", %{
    path: path,
    wat: wat,
    dump: dump
  } do
    until = div(dump.fuel_consumed, 2)
    out = replay([path, wat, "--until", "#{until}"])

    assert [_, actual] =
             Regex.run(
               ~r/Stopped at fuel (\d+) \(asked: #{until}; the call crashed at #{dump.fuel_consumed}\)/,
               out
             )

    actual = String.to_integer(actual)
    assert actual <= until
    written = "#{path}.at-#{actual}.munition-dump"
    assert out =~ "Wrote the state there to #{written}"
    assert {:ok, stopped} = Dump.read(written)
    assert stopped.fuel_consumed == actual
    assert stopped.stdout == dump.stdout
    assert Dump.memories_bytes(stopped) != Dump.memories_bytes(dump)
    # It is no crash to replay, and says so.
    assert_raise Mix.Error,
                 ~r/^This dump cannot be replayed: the state of a replay stopped at fuel #{actual}/,
                 fn ->
                   replay([written, path |> Path.dirname() |> Path.join("guest.wat")])
                 end
  end

  test "--until past the crash replays to the crash and writes nothing", %{
    path: path,
    wat: wat,
    dump: dump,
    dir: dir
  } do
    out = replay([path, wat, "--until", "#{dump.fuel_consumed + 1}"])
    assert out =~ "Replayed to the recorded end."
    assert File.ls!(dir) |> Enum.sort() == ["crash.munition-dump", "guest.wat"]
  end

  test "--out names the file", %{path: path, wat: wat, dir: dir} do
    out_path = Path.join(dir, "early.munition-dump")
    out = replay([path, wat, "--until", "100", "--out", out_path])
    assert out =~ "Wrote the state there to #{out_path}"
    assert {:ok, %Dump{fuel_consumed: fuel}} = Dump.read(out_path)
    assert fuel <= 100
  end

  test "another module: the divergence, and a non-zero exit", %{path: path, dir: dir} do
    other = Path.join(dir, "other.wat")
    File.write!(other, String.replace(@guest, "complained", "moaned!!!!"))

    assert_raise Mix.Error, ~r/^The replay diverged at the module: the dump's call ran module/, fn ->
      replay([path, other])
    end
  end

  test "a log cut short: the divergence names the host call", %{path: path, wat: wat, dump: dump} do
    log = dump.replay.log
    :ok = Dump.write(put_in(dump.replay.log, binary_part(log, 0, byte_size(log) - 1)), path)

    assert_raise Mix.Error, ~r/^The replay diverged at host call 4: host call 4: the log is cut short/, fn ->
      replay([path, wat])
    end
  end

  test "a dump without a log is unavailable", %{path: path, wat: wat, dump: dump} do
    :ok = Dump.write(%{dump | replay: nil}, path)

    assert_raise Mix.Error, ~r/^This dump cannot be replayed: the dump has no replay log/, fn ->
      replay([path, wat])
    end
  end

  test "a replay past --timeout says so", %{dir: dir} do
    wat = ~s{(module (func (export "spin") (loop br 0)))}
    {:crash, :fuel_exhausted, dump} = Munition.fire(wat, "spin", [], fuel: 500_000_000)
    path = Path.join(dir, "spin.munition-dump")
    :ok = Dump.write(dump, path)
    File.write!(Path.join(dir, "spin.wat"), wat)

    assert_raise Mix.Error, ~r/^The replay timed out \(--timeout\): the replay did not finish/, fn ->
      replay([path, Path.join(dir, "spin.wat"), "--timeout", "1"])
    end
  end

  test "wrong use is an error naming it", %{path: path, wat: wat} do
    assert_raise Mix.Error, ~r/^Expected a dump file and a wasm module/, fn -> replay([path]) end

    assert_raise Mix.Error, ~r/^--out names the dump --until writes/, fn ->
      replay([path, wat, "--out", "x"])
    end

    assert_raise Mix.Error, ~r/^--until was given more than once/, fn ->
      replay([path, wat, "--until", "1", "--until", "2"])
    end

    assert_raise Mix.Error, ~r/^Cannot read dump nowhere: /, fn -> replay(["nowhere", wat]) end
    assert_raise Mix.Error, ~r/^Cannot read nowhere.wat/, fn -> replay([path, "nowhere.wat"]) end
  end

  test "the dump says how many host calls its log holds", %{dump: dump} do
    assert dump.replay.host_calls == 4
  end
end

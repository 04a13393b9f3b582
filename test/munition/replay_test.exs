defmodule Munition.ReplayTest do
  # Munition.replay/3 (lib/munition/replay.ex): a crash run again from its
  # dump answers every host call from the log the call recorded, so it ends
  # the same (reason, trap, fuel, globals, memory, log, output) without
  # reaching anything outside the guest; a replay that cannot follow its log
  # says where.
  use ExUnit.Case, async: true

  alias Munition.Forensics.Dump
  alias Munition.Host.Context

  @wasmi Munition.Runtime.Wasmi

  # Everything a replayed crash must share with the crash it replays.
  defp assert_same_crash(replayed, dump) do
    for field <-
          [:reason, :trap, :message, :fuel_consumed, :fuel_given, :globals, :log] ++
            [:stdout, :stderr, :stdout_truncated, :stderr_truncated, :function, :args, :module_hash] do
      assert Map.fetch!(replayed, field) == Map.fetch!(dump, field), "#{field} differs"
    end

    assert Dump.memories_bytes(replayed) == Dump.memories_bytes(dump)
    # The replay's dump carries the log it followed: it replays again.
    assert replayed.replay == dump.replay
  end

  defp tmp_dir(tag) do
    dir = Munition.Tmp.path("replay-#{tag}")

    File.rm_rf!(dir)
    File.mkdir_p!(dir)
    on_exit(fn -> File.rm_rf!(dir) end)
    dir
  end

  ## Guests

  # Calls env.roll(ptr) n times, ptr stepping by 16: each call returns a
  # number added into global `sum` and writes 8 bytes at ptr; then reads
  # the last bytes written into global `last` and traps.
  @rolls """
  (module
    (import "env" "roll" (func $roll (param i32) (result i64)))
    (memory (export "memory") 1)
    (global $sum (export "sum") (mut i64) (i64.const 0))
    (global $last (mut i64) (i64.const 0))
    (func (export "run") (param $n i32) (local $i i32)
      (loop $l
        (global.set $sum (i64.add (global.get $sum) (call $roll (i32.mul (local.get $i) (i32.const 16)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $l (i32.lt_u (local.get $i) (local.get $n))))
      (global.set $last (i64.load (i32.mul (i32.sub (local.get $n) (i32.const 1)) (i32.const 16))))
      unreachable))
  """

  # A host function that counts its calls, answers a random number and
  # writes 8 random bytes where the guest says.
  defp roll(counter) do
    {"env", "roll", {[:i32], [:i64]}, :dice,
     fn ctx, ptr ->
       :counters.add(counter, 1, 1)
       :ok = Context.write(ctx, ptr, :crypto.strong_rand_bytes(8))
       :rand.uniform(1_000_000_000)
     end}
  end

  # Every built-in but abort: the clocks and get_random into globals,
  # random_bytes into memory, a log line; then a trap.
  @builtins """
  (module
    (import "munition" "get_time_ms" (func $time (result i64)))
    (import "munition" "get_monotonic_ns" (func $mono (result i64)))
    (import "munition" "get_random" (func $random (result i64)))
    (import "munition" "random_bytes" (func $bytes (param i32 i32)))
    (import "munition" "log" (func $log (param i32 i32 i32)))
    (memory (export "memory") 1)
    (data (i32.const 0) "a line for the log")
    (global $t (export "t") (mut i64) (i64.const 0))
    (global $m (export "m") (mut i64) (i64.const 0))
    (global $r (export "r") (mut i64) (i64.const 0))
    (func (export "run")
      (global.set $t (call $time))
      (global.set $m (call $mono))
      (global.set $r (call $random))
      (call $bytes (i32.const 1024) (i32.const 64))
      (call $log (i32.const 2) (i32.const 0) (i32.const 18))
      (global.set $m (i64.sub (call $mono) (global.get $m)))
      unreachable))
  """
  @builtin_caps [:time, :random, :log]

  # WASI preview 1: the clocks, random_get, stdin, args, environ, stdout
  # and stderr; then a trap. Memory: 0..8 an iovec, 8 a count, 16.. the
  # clocks, 64.. pointers, 1024.. random bytes, 2048.. stdin, 3072.. args,
  # 4096.. environ.
  @wasi """
  (module
    (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
    (import "wasi_snapshot_preview1" "random_get" (func $random (param i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes (param i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "args_get" (func $args (param i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "environ_sizes_get" (func $env_sizes (param i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "environ_get" (func $env (param i32 i32) (result i32)))
    (memory (export "memory") 1)
    (global $status (export "status") (mut i32) (i32.const 0))
    (func $out (param $fd i32) (param $ptr i32) (param $len i32)
      (i32.store (i32.const 0) (local.get $ptr))
      (i32.store (i32.const 4) (local.get $len))
      (global.set $status (i32.add (global.get $status)
        (call $write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8)))))
    (func (export "run")
      (drop (call $clock (i32.const 0) (i64.const 0) (i32.const 16)))
      (drop (call $clock (i32.const 1) (i64.const 0) (i32.const 24)))
      (drop (call $random (i32.const 1024) (i32.const 32)))
      (call $out (i32.const 1) (i32.const 1024) (i32.const 32))
      (call $out (i32.const 1) (i32.const 16) (i32.const 16))
      (i32.store (i32.const 0) (i32.const 2048))
      (i32.store (i32.const 4) (i32.const 512))
      (drop (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
      (call $out (i32.const 2) (i32.const 2048) (i32.load (i32.const 8)))
      (drop (call $args_sizes (i32.const 32) (i32.const 36)))
      (drop (call $args (i32.const 64) (i32.const 3072)))
      (call $out (i32.const 1) (i32.const 3072) (i32.load (i32.const 36)))
      (drop (call $env_sizes (i32.const 40) (i32.const 44)))
      (drop (call $env (i32.const 128) (i32.const 4096)))
      (call $out (i32.const 1) (i32.const 4096) (i32.load (i32.const 44)))
      unreachable))
  """
  @wasi_opts [
    capabilities: [:wasi],
    wasi: [stdin: "the input", args: ["prog", "--flag"], env: [{"KEY", "value"}]]
  ]

  # Opens hello.txt under the preopen (fd 3), reads it into memory at 2048
  # and to stdout; then a trap.
  @file_reader """
  (module
    (import "wasi_snapshot_preview1" "path_open"
      (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
    (memory (export "memory") 1)
    (data (i32.const 1024) "hello.txt")
    (global $errno (export "errno") (mut i32) (i32.const -1))
    (func (export "run")
      (global.set $errno (call $open (i32.const 3) (i32.const 1) (i32.const 1024) (i32.const 9)
        (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 24)))
      (i32.store (i32.const 0) (i32.const 2048))
      (i32.store (i32.const 4) (i32.const 1024))
      (drop (call $read (i32.load (i32.const 24)) (i32.const 0) (i32.const 1) (i32.const 8)))
      (i32.store (i32.const 4) (i32.load (i32.const 8)))
      (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
      unreachable))
  """

  # Writes i + 1 at 4 * i for i below 20 000, with a random number first
  # (so the log has an entry); then a trap.
  @writer """
  (module
    (import "munition" "get_random" (func $random (result i64)))
    (memory (export "memory") 1)
    (global $seed (export "seed") (mut i64) (i64.const 0))
    (func (export "run") (local $i i32)
      (global.set $seed (call $random))
      (loop $l
        (i32.store (i32.mul (local.get $i) (i32.const 4)) (i32.add (local.get $i) (i32.const 1)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $l (i32.lt_u (local.get $i) (i32.const 16000))))
      unreachable))
  """

  # Reads the clock, then spins: `spin` forever, `count` calling
  # get_random every 10 000 turns.
  @spinner """
  (module
    (import "munition" "get_random" (func $random (result i64)))
    (import "munition" "get_time_ms" (func $time (result i64)))
    (memory (export "memory") 1)
    (global $t (export "t") (mut i64) (i64.const 0))
    (global $acc (export "acc") (mut i64) (i64.const 0))
    (func (export "spin")
      (global.set $t (call $time))
      (loop $l (global.set $acc (i64.add (global.get $acc) (i64.const 1))) (br $l)))
    (func (export "count") (local $i i32)
      (global.set $t (call $time))
      (loop $l
        (global.set $acc (i64.xor (global.get $acc) (call $random)))
        (local.set $i (i32.const 0))
        (loop $inner
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $inner (i32.lt_u (local.get $i) (i32.const 10000))))
        (br $l))))
  """

  describe "an Elixir host function" do
    test "is not called by a replay, which writes what it wrote and returns what it returned" do
      counter = :counters.new(1, [])
      opts = [host_functions: [roll(counter)], capabilities: [:dice]]
      assert {:crash, :trap, dump} = Munition.fire(@rolls, "run", [5], opts)
      assert :counters.get(counter, 1) == 5
      assert %{log: log, unavailable: nil, engine: :wasmtime} = dump.replay
      assert byte_size(log) > 0

      assert {:crash, :trap, replayed} = Munition.replay(dump, @rolls)
      assert_same_crash(replayed, dump)
      assert replayed.trap == :unreachable
      assert :counters.get(counter, 1) == 5

      # A second fire rolls other numbers: the replay's are the log's.
      assert {:crash, :trap, again} = Munition.fire(@rolls, "run", [5], opts)
      assert :counters.get(counter, 1) == 10
      assert again.globals != dump.globals
      assert {:crash, :trap, replayed_again} = Munition.replay(replayed, @rolls)
      assert replayed_again.globals == dump.globals
      assert :counters.get(counter, 1) == 10
    end

    test "that fails the call replays to the same :host_error without being called" do
      counter = :counters.new(1, [])

      failing =
        {"env", "roll", {[:i32], [:i64]}, :dice,
         fn ctx, ptr ->
           :counters.add(counter, 1, 1)
           if :counters.get(counter, 1) == 3, do: raise("the third roll fails")
           :ok = Context.write(ctx, ptr, :crypto.strong_rand_bytes(8))
           :rand.uniform(1_000)
         end}

      opts = [host_functions: [failing], capabilities: [:dice]]
      assert {:crash, :host_error, dump} = Munition.fire(@rolls, "run", [5], opts)
      assert dump.message =~ "the third roll fails"
      assert {:crash, :host_error, replayed} = Munition.replay(dump, @rolls)
      assert_same_crash(replayed, dump)
      assert :counters.get(counter, 1) == 3
    end

    test "that returns floats replays their bits" do
      wat = """
      (module
        (import "env" "f" (func $f (param f64) (result f32 f64)))
        (global $a (export "a") (mut f32) (f32.const 0))
        (global $b (export "b") (mut f64) (f64.const 0))
        (func (export "run") (call $f (f64.const 1.5)) (global.set $b) (global.set $a) unreachable))
      """

      float =
        {"env", "f", {[:f64], [:f32, :f64]}, :floats,
         fn _ctx, x -> [x * :rand.uniform(), :rand.uniform()] end}

      assert {:crash, :trap, dump} =
               Munition.fire(wat, "run", [], host_functions: [float], capabilities: [:floats])

      assert {:crash, :trap, replayed} = Munition.replay(dump, wat)
      assert_same_crash(replayed, dump)
    end

    test "still running at the deadline replays to the same :timeout, without being called" do
      wat = """
      (module
        (import "munition" "random_bytes" (func $bytes (param i32 i32)))
        (import "env" "wait" (func $wait (result i32)))
        (memory (export "memory") 1)
        (global $g (export "g") (mut i32) (i32.const 0))
        (func (export "run") (call $bytes (i32.const 0) (i32.const 16)) (global.set $g (call $wait)) unreachable))
      """

      parent = self()
      # Never answers: the call's deadline ends it.
      wait =
        {"env", "wait", {[], [:i32]}, :wait,
         fn _ctx -> send(parent, :called) && receive(do: (:never -> 1)) end}

      {:ok, module} = Munition.compile(wat)
      opts = [host_functions: [wait], capabilities: [:random, :wait], timeout: 200]
      assert {:crash, :timeout, dump} = Munition.fire(module, "run", [], opts)
      assert_receive :called
      assert dump.message =~ "did not return before the deadline"
      assert {:crash, :timeout, replayed} = Munition.replay(dump, wat)
      assert_same_crash(replayed, dump)
      refute_received :called
    end
  end

  describe "built-ins" do
    test "time, random and log replay to the same globals, memory and log" do
      assert {:crash, :trap, dump} = Munition.fire(@builtins, "run", [], capabilities: @builtin_caps)
      assert [{2, "a line for the log"}] = dump.log
      assert {:crash, :trap, replayed} = Munition.replay(dump, @builtins)
      assert_same_crash(replayed, dump)

      # Another fire reads other random bytes: the replay gave the log's.
      assert {:crash, :trap, other} = Munition.fire(@builtins, "run", [], capabilities: @builtin_caps)
      assert Dump.memories_bytes(other) != Dump.memories_bytes(dump)
    end

    test "running out of fuel inside a built-in replays" do
      wat = """
      (module
        (import "munition" "random_bytes" (func $bytes (param i32 i32)))
        (memory (export "memory") 2)
        (func (export "run") (call $bytes (i32.const 0) (i32.const 100000)) unreachable))
      """

      assert {:crash, :fuel_exhausted, dump} =
               Munition.fire(wat, "run", [], capabilities: [:random], fuel: 5_000)

      assert {:crash, :fuel_exhausted, replayed} = Munition.replay(dump, wat)
      assert_same_crash(replayed, dump)
    end

    test "a pooled call replays" do
      name = :"replay_test_pool_#{System.unique_integer([:positive])}"
      start_supervised!({Munition.Pool, name: name, wasm: @builtins, capabilities: @builtin_caps})
      assert {:crash, :trap, dump} = Munition.fire_pooled(name, "run", [])
      assert {:crash, :trap, replayed} = Munition.replay(dump, @builtins)
      assert_same_crash(replayed, dump)
    end

    test "a call on a snapshot replays on the snapshot" do
      wat = """
      (module
        (import "munition" "get_random" (func $random (result i64)))
        (memory (export "memory") 1)
        (global $s (export "s") (mut i64) (i64.const 0))
        (func (export "init") (global.set $s (i64.const 42)))
        (func (export "run") (i64.store (i32.const 8) (call $random)) unreachable))
      """

      assert {:ok, snapshot, _} = Munition.snapshot(wat, "init", [], capabilities: [:random])
      assert {:crash, :trap, dump} = Munition.fire(snapshot, "run", [], capabilities: [:random])
      assert [%{value: 42}] = dump.globals
      assert {:crash, :trap, replayed} = Munition.replay(dump, snapshot)
      assert_same_crash(replayed, dump)
      assert {:error, {:replay_diverged, %{at: :module}}} = Munition.replay(dump, wat)
    end

    test "a dump written to a file and read back replays the same" do
      assert {:crash, :trap, dump} = Munition.fire(@builtins, "run", [], capabilities: @builtin_caps)
      path = Path.join(tmp_dir("file"), "crash.munition-dump")
      assert :ok = Dump.write(dump, path)
      assert {:ok, read} = Dump.read(path)
      assert read.replay == dump.replay
      assert {:crash, :trap, replayed} = Munition.replay(read, @builtins)
      assert_same_crash(replayed, dump)
    end

    test "replay takes the module compiled, and refuses anything but a dump or a fuel count" do
      assert {:crash, :trap, dump} = Munition.fire(@builtins, "run", [], capabilities: @builtin_caps)
      {:ok, module} = Munition.compile(@builtins)
      assert {:crash, :trap, replayed} = Munition.replay(dump, module)
      assert_same_crash(replayed, dump)

      assert_raise ArgumentError, ~r/dump must be a Munition.Forensics.Dump/, fn ->
        Munition.replay(%{}, @builtins)
      end

      assert_raise ArgumentError, ~r/until must be a fuel count/, fn ->
        Munition.replay(dump, @builtins, until: -1)
      end
    end
  end

  describe "WASI" do
    test "clocks, random, stdin, args, environ and output replay to the same stdout and stderr" do
      assert {:crash, :trap, dump} = Munition.fire(@wasi, "run", [], @wasi_opts)
      assert dump.stderr == "the input"
      assert String.ends_with?(dump.stdout, "prog\0--flag\0KEY=value\0")
      assert [%{value: 0}] = dump.globals

      assert {:crash, :trap, replayed} = Munition.replay(dump, @wasi)
      assert_same_crash(replayed, dump)

      assert {:crash, :trap, other} = Munition.fire(@wasi, "run", [], @wasi_opts)
      assert other.stdout != dump.stdout
    end

    test "output past its limit replays truncated the same" do
      opts = Keyword.update!(@wasi_opts, :wasi, &Keyword.put(&1, :stdout_limit, 20))
      assert {:crash, :trap, dump} = Munition.fire(@wasi, "run", [], opts)
      assert dump.stdout_truncated and byte_size(dump.stdout) == 20
      assert {:crash, :trap, replayed} = Munition.replay(dump, @wasi)
      assert_same_crash(replayed, dump)
    end

    test "a sleep (poll_oneoff) replays at once with its recorded result" do
      wat = """
      (module
        (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
        (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
        (memory (export "memory") 1)
        (global $errno (export "errno") (mut i32) (i32.const -1))
        (func (export "run")
          (i64.store (i32.const 256) (i64.const 7))
          (i32.store8 (i32.const 264) (i32.const 0))
          (i32.store (i32.const 272) (i32.const 1))
          (i64.store (i32.const 280) (i64.const 1000000))
          (i64.store (i32.const 288) (i64.const 0))
          (i32.store16 (i32.const 296) (i32.const 0))
          (global.set $errno (call $poll (i32.const 256) (i32.const 512) (i32.const 1) (i32.const 20)))
          (drop (call $clock (i32.const 1) (i64.const 0) (i32.const 16)))
          unreachable))
      """

      assert {:crash, :trap, dump} = Munition.fire(wat, "run", [], capabilities: [:wasi])
      assert [%{value: 0}] = dump.globals
      assert {:crash, :trap, replayed} = Munition.replay(dump, wat)
      assert_same_crash(replayed, dump)

      # Wasmi resumes a sleeping guest in a later slice: the sleep is
      # recorded where it ends.
      assert {:crash, :trap, dump} = Munition.fire(wat, "run", [], capabilities: [:wasi], runtime: @wasmi)
      assert [%{value: 0}] = dump.globals
      assert {:crash, :trap, replayed} = Munition.replay(dump, wat)
      assert_same_crash(replayed, dump)
    end

    test "a file read from a preopen replays the same after the file changed, and after it is gone" do
      dir = tmp_dir("preopen")
      file = Path.join(dir, "hello.txt")
      File.write!(file, "what the file said")
      opts = [capabilities: [:wasi, :wasi_fs], wasi: [preopens: [{"/data", dir}]]]
      assert {:crash, :trap, dump} = Munition.fire(@file_reader, "run", [], opts)
      assert dump.stdout == "what the file said"
      assert [%{value: 0}] = dump.globals

      File.write!(file, "something else entirely")
      assert {:crash, :trap, replayed} = Munition.replay(dump, @file_reader)
      assert_same_crash(replayed, dump)

      File.rm!(file)
      assert {:crash, :trap, replayed} = Munition.replay(dump, @file_reader)
      assert_same_crash(replayed, dump)
      # Fired again, the guest finds no file.
      assert {:crash, :trap, %{globals: [%{value: errno}], stdout: ""}} =
               Munition.fire(@file_reader, "run", [], opts)

      assert errno != 0
    end
  end

  # Lists the preopen (descriptor 3) into memory with fd_readdir, then traps.
  @lister """
  (module
    (import "wasi_snapshot_preview1" "fd_readdir"
      (func $readdir (param i32 i32 i32 i64 i32) (result i32)))
    (memory (export "memory") 1)
    (global $errno (export "errno") (mut i32) (i32.const -1))
    (func (export "run")
      (global.set $errno (call $readdir (i32.const 3) (i32.const 1024) (i32.const 2048) (i64.const 0) (i32.const 16)))
      unreachable))
  """

  test "a directory listing replays the same after the directory changed, on both engines" do
    for runtime <- [Munition.Runtime.Wasmtime, @wasmi] do
      dir = tmp_dir("listing")
      for name <- ~w(alpha.txt beta.txt), do: File.write!(Path.join(dir, name), name)
      opts = [capabilities: [:wasi, :wasi_fs], wasi: [preopens: [{"/data", dir}]], runtime: runtime]
      assert {:crash, :trap, dump} = Munition.fire(@lister, "run", [], opts)
      assert [%{value: 0}] = dump.globals
      {:ok, memory} = Munition.Forensics.Dump.memory(dump)
      assert :binary.match(memory, "alpha.txt") != :nomatch

      File.rm!(Path.join(dir, "alpha.txt"))
      File.write!(Path.join(dir, "gamma.txt"), "gamma")
      assert {:crash, :trap, replayed} = Munition.replay(dump, @lister)
      assert_same_crash(replayed, dump)
      # Fired again, the guest lists what is there now.
      assert {:crash, :trap, again} = Munition.fire(@lister, "run", [], opts)
      {:ok, now} = Munition.Forensics.Dump.memory(again)
      assert :binary.match(now, "gamma.txt") != :nomatch
    end
  end

  describe "divergence" do
    setup do
      {:crash, :trap, dump} = Munition.fire(@builtins, "run", [], capabilities: @builtin_caps)
      %{dump: dump}
    end

    test "another module diverges at :module", %{dump: dump} do
      other = String.replace(@builtins, "a line for the log", "another line here!")

      assert {:error, {:replay_diverged, %{at: :module, why: why}}} = Munition.replay(dump, other)
      assert why =~ dump.module_hash
    end

    test "a log cut short diverges at the host call it cuts", %{dump: dump} do
      log = dump.replay.log
      cut = put_in(dump.replay.log, binary_part(log, 0, byte_size(log) - 3))

      assert {:error, {:replay_diverged, %{at: {:host_call, 6}, why: why}}} = Munition.replay(cut, @builtins)
      assert why =~ "cut short"

      # Cut after the first entry: the second host call is past its end.
      first = first_entry_size(log)
      cut = put_in(dump.replay.log, binary_part(log, 0, first))

      assert {:error, {:replay_diverged, %{at: {:host_call, 2}, why: why}}} = Munition.replay(cut, @builtins)
      assert why =~ "the log ends after 1 host calls"
    end

    test "a log whose fuel count is altered diverges at that host call", %{dump: dump} do
      log = dump.replay.log
      first = first_entry_size(log)
      <<entry::binary-size(first), import::little-32, before::little-64, rest::binary>> = log

      altered =
        put_in(dump.replay.log, <<entry::binary, import::little-32, before + 1::little-64, rest::binary>>)

      assert {:error, {:replay_diverged, %{at: {:host_call, 2}, why: why}}} =
               Munition.replay(altered, @builtins)

      assert why =~ "the log has #{before + 1}"
    end

    test "a log with another import diverges at that host call", %{dump: dump} do
      <<_import::little-32, rest::binary>> = dump.replay.log
      altered = put_in(dump.replay.log, <<1::little-32, rest::binary>>)

      assert {:error, {:replay_diverged, %{at: {:host_call, 1}, why: why}}} =
               Munition.replay(altered, @builtins)

      assert why =~ "the guest called import 0, the log has import 1"
    end

    test "a log with host calls left over diverges at :end", %{dump: dump} do
      log = dump.replay.log
      first = first_entry_size(log)
      longer = put_in(dump.replay.log, log <> binary_part(log, 0, first))

      assert {:error, {:replay_diverged, %{at: :end, why: why}}} = Munition.replay(longer, @builtins)
      assert why =~ "the log has more"
    end
  end

  # The size of the first entry of a log whose first host call returned one
  # value and wrote nothing, with no effects (a clock read): see
  # munition_core::journal.
  defp first_entry_size(<<_import::32, _before::64, _after::64, 0, 1, _tag, _bits::64, 0::32, 0, _::binary>>),
    do: 4 + 8 + 8 + 1 + 1 + 9 + 4 + 1

  describe ":until" do
    test "stops before the crash, with the memory of that point" do
      assert {:crash, :trap, dump} = Munition.fire(@writer, "run", [], capabilities: [:random])
      until = div(dump.fuel_consumed, 2)

      assert {:stopped, stopped} = Munition.replay(dump, @writer, until: until)
      assert stopped.fuel_consumed <= until
      assert stopped.globals == dump.globals
      {:ok, [memory]} = Dump.memories_bytes(stopped)
      {:ok, [crashed]} = Dump.memories_bytes(dump)
      assert memory != crashed
      # Written up to some i, not past it.
      assert <<1::little-32, 2::little-32, _::binary>> = memory
      assert binary_part(memory, 4 * 15_999, 4) == <<0::32>>
      assert binary_part(crashed, 4 * 15_999, 4) == <<16_000::little-32>>

      # The state part-way is no crash to replay: it says so.
      assert %{log: nil, unavailable: why} = stopped.replay
      assert why =~ "stopped at fuel #{stopped.fuel_consumed} (until: #{until})"
      assert {:error, {:replay_unavailable, ^why}} = Munition.replay(stopped, @writer)
      assert {:ok, ^stopped} = stopped |> Dump.serialize() |> Dump.deserialize()
    end

    test "stopped before the first host call, none is answered" do
      assert {:crash, :trap, dump} = Munition.fire(@writer, "run", [], capabilities: [:random])
      assert {:stopped, stopped} = Munition.replay(dump, @writer, until: 1)
      assert stopped.fuel_consumed <= 1
      assert [%{value: 0}] = stopped.globals
    end

    test "short of a host call in straight-line code, stops at that host call" do
      assert {:crash, :trap, dump} = Munition.fire(@builtins, "run", [], capabilities: @builtin_caps)
      # The third host call (get_random): the first two are clock reads of
      # one entry size each.
      first = first_entry_size(dump.replay.log)
      <<_::binary-size(2 * first), _import::32, before::little-64, _::binary>> = dump.replay.log
      # Wasmtime checks fuel entering a function or a loop: the guest runs on
      # past its budget to the host call, where its fuel left reads 0.
      assert {:stopped, stopped} = Munition.replay(dump, @builtins, until: before - 1)
      assert stopped.fuel_consumed <= before - 1
      assert [%{export: "t", value: t}, %{export: "m"}, %{export: "r", value: 0}] = stopped.globals
      assert [%{value: ^t} | _] = dump.globals
    end

    test "a crash with no fuel consumed replays to the crash with until: 0" do
      wat = ~s{(module (func (export "run") (drop (i64.div_s (i64.const 1) (i64.const 0)))))}
      assert {:crash, :trap, dump} = Munition.fire(wat, "run", [])
      assert dump.fuel_consumed == 0
      assert {:crash, :trap, replayed} = Munition.replay(dump, wat, until: 0)
      assert_same_crash(replayed, dump)
    end

    test "at or past the crash's fuel replays to the crash" do
      assert {:crash, :trap, dump} = Munition.fire(@writer, "run", [], capabilities: [:random])

      for until <- [dump.fuel_consumed, dump.fuel_consumed + 1, 10 * dump.fuel_consumed] do
        assert {:crash, :trap, replayed} = Munition.replay(dump, @writer, until: until)
        assert replayed.fuel_consumed == dump.fuel_consumed
        assert Dump.memories_bytes(replayed) == Dump.memories_bytes(dump)
      end
    end
  end

  describe "how the call ended" do
    test "a call stopped at its deadline replays to :timeout at the same fuel" do
      # Compiled first: the deadline is for running.
      {:ok, spinner} = Munition.compile(@spinner)
      opts = [capabilities: [:time, :random], timeout: 20, fuel: 1_000_000_000_000]
      assert {:crash, :timeout, dump} = Munition.fire(spinner, "spin", [], opts)
      assert {:crash, :timeout, replayed} = Munition.replay(dump, @spinner)
      assert_same_crash(replayed, dump)
    end

    test "a call stopped at its deadline between host calls replays the same" do
      {:ok, spinner} = Munition.compile(@spinner)
      opts = [capabilities: [:time, :random], timeout: 20, fuel: 1_000_000_000_000]
      assert {:crash, :timeout, dump} = Munition.fire(spinner, "count", [], opts)
      assert {:crash, :timeout, replayed} = Munition.replay(dump, @spinner)
      assert_same_crash(replayed, dump)
    end

    test "a replay that runs out of its own time is a :timeout error, not a divergence" do
      {:ok, spinner} = Munition.compile(@spinner)
      opts = [capabilities: [:time, :random], fuel: 500_000_000, timeout: 60_000]
      assert {:crash, :fuel_exhausted, dump} = Munition.fire(spinner, "spin", [], opts)
      # Half a billion units of fuel in a millisecond: no engine does that.
      assert {:error, {:timeout, why}} = Munition.replay(dump, spinner, timeout: 1)
      assert why =~ "the replay did not finish within its timeout: it had replayed 1 host calls"
    end

    test "fuel exhaustion replays" do
      opts = [capabilities: [:time, :random], fuel: 1_000_000]
      assert {:crash, :fuel_exhausted, dump} = Munition.fire(@spinner, "count", [], opts)
      assert {:crash, :fuel_exhausted, replayed} = Munition.replay(dump, @spinner)
      assert_same_crash(replayed, dump)
    end

    test "host calls of a start function and of a reactor's _initialize replay, on both engines" do
      start = """
      (module
        (import "munition" "get_random" (func $random (result i64)))
        (memory (export "memory") 1)
        (global $g (export "g") (mut i64) (i64.const 0))
        (func $start (global.set $g (call $random)) (i64.store (i32.const 0) (global.get $g)) unreachable)
        (start $start)
        (func (export "run")))
      """

      reactor = """
      (module
        (import "munition" "get_random" (func $random (result i64)))
        (memory (export "memory") 1)
        (global $g (export "g") (mut i64) (i64.const 0))
        (global $h (export "h") (mut i64) (i64.const 0))
        (func (export "_initialize") (global.set $g (call $random)))
        (func (export "run") (global.set $h (call $random)) unreachable))
      """

      for wat <- [start, reactor], runtime <- [Munition.Runtime.Wasmtime, @wasmi] do
        assert {:crash, :trap, dump} =
                 Munition.fire(wat, "run", [], capabilities: [:random], runtime: runtime)

        assert {:crash, :trap, replayed} = Munition.replay(dump, wat)
        assert_same_crash(replayed, dump)
      end
    end

    test "a call with binary arguments and results replays its allocation" do
      wat = """
      (module
        (import "munition" "get_random" (func $random (result i64)))
        (memory (export "memory") 1)
        (global $bump (mut i32) (i32.const 4096))
        (func (export "alloc") (param $len i32) (result i32) (local $p i32)
          (local.set $p (global.get $bump))
          (global.set $bump (i32.add (global.get $bump) (local.get $len)))
          (local.get $p))
        (func (export "run") (param $ptr i32) (param $len i32) (result i64)
          (i64.store (local.get $ptr) (call $random))
          unreachable))
      """

      opts = [capabilities: [:random], result: :binary]
      assert {:crash, :trap, dump} = Munition.fire(wat, "run", ["some bytes in"], opts)
      assert {:crash, :trap, replayed} = Munition.replay(dump, wat)
      assert_same_crash(replayed, dump)
    end
  end

  describe "Munition.Runtime.Wasmi" do
    test "replays built-ins" do
      opts = [capabilities: @builtin_caps, runtime: @wasmi]
      assert {:crash, :trap, dump} = Munition.fire(@builtins, "run", [], opts)
      assert dump.replay.engine == :wasmi
      assert {:crash, :trap, replayed} = Munition.replay(dump, @builtins)
      assert_same_crash(replayed, dump)
    end

    test "replays WASI" do
      assert {:crash, :trap, dump} = Munition.fire(@wasi, "run", [], [runtime: @wasmi] ++ @wasi_opts)
      assert dump.stderr == "the input"
      assert {:crash, :trap, replayed} = Munition.replay(dump, @wasi)
      assert_same_crash(replayed, dump)
    end

    test "replays fuel exhaustion" do
      opts = [capabilities: [:time, :random], fuel: 1_000_000, runtime: @wasmi]
      assert {:crash, :fuel_exhausted, dump} = Munition.fire(@spinner, "count", [], opts)
      assert {:crash, :fuel_exhausted, replayed} = Munition.replay(dump, @spinner)
      assert_same_crash(replayed, dump)
    end

    test "a call with an Elixir host function replays, and the function is not called" do
      # Wasmi resumes the guest with the function's results in a later
      # slice: the call is recorded where it ends.
      counter = :counters.new(1, [])
      opts = [host_functions: [roll(counter)], capabilities: [:dice], runtime: @wasmi]
      assert {:crash, :trap, dump} = Munition.fire(@rolls, "run", [3], opts)
      assert :counters.get(counter, 1) == 3
      assert {:crash, :trap, replayed} = Munition.replay(dump, @rolls)
      assert_same_crash(replayed, dump)
      assert :counters.get(counter, 1) == 3
    end

    test "a call stopped at its deadline is unavailable" do
      {:ok, spinner} = Munition.compile(@spinner, runtime: @wasmi)
      opts = [capabilities: [:time, :random], timeout: 20, fuel: 1_000_000_000_000, runtime: @wasmi]
      assert {:crash, :timeout, dump} = Munition.fire(spinner, "spin", [], opts)
      assert {:error, {:replay_unavailable, why}} = Munition.replay(dump, @spinner)
      assert why =~ "deadline"
    end

    test "a module compiled by the other engine is refused" do
      assert {:crash, :trap, dump} = Munition.fire(@builtins, "run", [], capabilities: @builtin_caps)
      {:ok, module} = Munition.compile(@builtins, runtime: @wasmi)
      assert {:error, {:replay_unavailable, why}} = Munition.replay(dump, module)
      assert why =~ "Munition.Runtime.Wasmi"
    end
  end

  describe "unavailable" do
    test "a component call cannot be replayed" do
      component = """
      (component
        (core module $m (func (export "boom") unreachable))
        (core instance $i (instantiate $m))
        (func (export "boom") (canon lift (core func $i "boom"))))
      """

      assert {:crash, :trap, dump} = Munition.fire(component, "boom", [])
      assert %{log: nil, unavailable: why} = dump.replay
      assert why =~ "components"
      assert {:error, {:replay_unavailable, ^why}} = Munition.replay(dump, component)
    end

    test "a dump of format version 1 reads, with no replay, and is unavailable" do
      assert {:crash, :trap, dump} = Munition.fire(@builtins, "run", [], capabilities: @builtin_caps)
      bytes = version_1(Dump.serialize(%{dump | replay: nil}))
      assert {:ok, old} = Dump.deserialize(bytes)
      assert old.version == 1
      assert old.replay == nil
      assert old.globals == dump.globals
      assert {:error, {:replay_unavailable, why}} = Munition.replay(old, @builtins)
      assert why =~ "version 1"
    end
  end

  # A file of version 1 from one of version 2 whose replay is nil: the
  # header without its "replay" key (version 1 had none), the version 1,
  # the checksum recomputed.
  defp version_1(<<magic::binary-8, 2::little-16, flags::little-16, len::little-32, rest::binary>>) do
    <<header::binary-size(len), tail::binary>> = rest
    <<0x0A, count::little-32, pairs::binary>> = header
    key = <<0x06, 6::little-32, "replay", 0x00>>
    {at, _} = :binary.match(pairs, key)

    pairs =
      binary_part(pairs, 0, at) <>
        binary_part(pairs, at + byte_size(key), byte_size(pairs) - at - byte_size(key))

    header = <<0x0A, count - 1::little-32, pairs::binary>>
    body = binary_part(tail, 0, byte_size(tail) - 4)

    Munition.Test.DumpBytes.reseal(
      <<magic::binary, 1::little-16, flags::little-16, byte_size(header)::little-32, header::binary,
        body::binary, 0::32>>
    )
  end
end

defmodule Munition.ReplayLogLimitTest do
  # Changes the application environment: not async.
  use ExUnit.Case, async: false

  import Munition.AppEnv, only: [put_env: 2]

  @guest """
  (module
    (import "munition" "get_random" (func $random (result i64)))
    (global $acc (mut i64) (i64.const 0))
    (func (export "run") (local $i i32)
      (loop $l
        (global.set $acc (i64.xor (global.get $acc) (call $random)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $l (i32.lt_u (local.get $i) (i32.const 100))))
      unreachable))
  """

  test "a log past :replay_log_limit makes the call unavailable, naming the bound" do
    put_env(:replay_log_limit, 200)
    assert {:crash, :trap, dump} = Munition.fire(@guest, "run", [], capabilities: [:random])
    assert %{log: nil, unavailable: why} = dump.replay
    assert why =~ "bound of 200 bytes"
    assert {:error, {:replay_unavailable, ^why}} = Munition.replay(dump, @guest)
  end

  test "a log within the bound replays" do
    put_env(:replay_log_limit, 100_000)
    assert {:crash, :trap, dump} = Munition.fire(@guest, "run", [], capabilities: [:random])
    assert is_binary(dump.replay.log)
    assert {:crash, :trap, replayed} = Munition.replay(dump, @guest)
    assert replayed.globals == dump.globals
  end
end

defmodule Munition.SnapshotTest do
  # Munition.snapshot/4 (lib/munition/snapshot.ex) on small WAT guests; the
  # QuickJS reactor's snapshots are in test/guests/quickjs_snapshot_test.exs.
  use ExUnit.Case, async: true

  alias Munition.Forensics.Dump

  # A counter: `init(n)` sets it, `next()` adds one and returns it. A call
  # that saw another's state would count past n + 1.
  @counter ~s{(module (global $n (mut i32) (i32.const 0))
    (memory (export "memory") 1)
    (func (export "init") (param i32)
      (global.set $n (local.get 0))
      (i32.store (i32.const 64) (i32.mul (local.get 0) (i32.const 2)))
      (drop (memory.grow (i32.const 1)))
      (i32.store (i32.const 70000) (i32.const 7)))
    (func (export "next") (result i32)
      (global.set $n (i32.add (global.get $n) (i32.const 1))) (global.get $n))
    (func (export "stored") (result i32) (i32.load (i32.const 64)))
    (func (export "pages") (result i32) (memory.size))
    (func (export "far") (result i32) (i32.load (i32.const 70000)))
    (func (export "boom") unreachable))}

  # The counter as a component: one core instance, its functions lifted.
  @component ~s{(component
    (core module $m (global $n (mut i32) (i32.const 0))
      (memory (export "memory") 1)
      (func (export "init") (param i32)
        (global.set $n (local.get 0))
        (i32.store (i32.const 64) (i32.mul (local.get 0) (i32.const 2))))
      (func (export "next") (result i32)
        (global.set $n (i32.add (global.get $n) (i32.const 1))) (global.get $n))
      (func (export "stored") (result i32) (i32.load (i32.const 64)))
      (func (export "spin") (result i32) (loop (br 0)) (i32.const 0))
      (func (export "boom") unreachable))
    (core instance $i (instantiate $m))
    (func (export "init") (param "n" s32) (canon lift (core func $i "init")))
    (func (export "next") (result s32) (canon lift (core func $i "next")))
    (func (export "stored") (result s32) (canon lift (core func $i "stored")))
    (func (export "spin") (result s32) (canon lift (core func $i "spin")))
    (func (export "boom") (canon lift (core func $i "boom"))))}

  defp hash(bytes), do: :sha256 |> :crypto.hash(bytes) |> Base.encode16(case: :lower)

  describe "snapshot/4" do
    test "every call starts from the snapshot's globals and memory, never from an earlier call's" do
      assert {:ok, snapshot, meta} = Munition.snapshot(@counter, "init", [41])
      assert meta.result == nil
      assert meta.fuel_consumed > 0
      assert meta.module_hash == hash(@counter)

      assert {:ok, 42, _} = Munition.fire(snapshot, "next", [])
      assert {:ok, 42, _} = Munition.fire(snapshot, "next", [])
      assert {:ok, 82, _} = Munition.fire(snapshot, "stored", [])
      assert {:ok, 2, _} = Munition.fire(snapshot, "pages", [])
      assert {:ok, 7, _} = Munition.fire(snapshot, "far", [])
      # The original module is untouched.
      assert {:ok, 1, _} = Munition.fire(@counter, "next", [])
    end

    test "the snapshot is a module like any: hashed, cached, its bytes compiled again to the same module" do
      assert {:ok, snapshot, _} = Munition.snapshot(@counter, "init", [41])
      assert %{of: of, function: "init", bytes: bytes} = snapshot.snapshot
      assert of == hash(@counter)
      assert snapshot.hash == hash(bytes)
      assert snapshot.reactor == false
      assert inspect(snapshot) =~ ~s{snapshot of "#{String.slice(of, 0, 12)}…"}

      # Stored and loaded again: the same hash, the same provenance.
      assert {:ok, again} = Munition.compile(bytes)
      assert again.hash == snapshot.hash
      assert again.snapshot == snapshot.snapshot
      assert {:ok, 42, _} = Munition.fire(bytes, "next", [])

      # Every export is kept, the initialisation's too.
      assert Enum.map(snapshot.exports, & &1.name) == ~w(memory init next stored pages far boom)
    end

    test "a deterministic initialisation makes the same snapshot, byte for byte" do
      assert {:ok, a, _} = Munition.snapshot(@counter, "init", [41])
      assert {:ok, b, _} = Munition.snapshot(@counter, "init", [41])
      assert {:ok, c, _} = Munition.snapshot(@counter, "init", [40])
      assert a.hash == b.hash
      assert a.hash != c.hash
    end

    test "a snapshot can be initialised further: the second names the first" do
      assert {:ok, first, _} = Munition.snapshot(@counter, "init", [10])
      assert {:ok, second, _} = Munition.snapshot(first, "next", [])
      assert second.snapshot.of == first.hash
      assert second.snapshot.function == "next"
      assert {:ok, 12, _} = Munition.fire(second, "next", [])
    end

    test "a memory of scattered bytes is snapshotted within the default compile limits" do
      # 15,000 runs of one byte, too far apart for Wizer to merge: its
      # segments are merged down to 1,000, under the data_segments limit.
      wat =
        ~s{(module (memory (export "memory") 2)
        (func (export "init") (local $i i32)
          (loop $l
            (i32.store8 (i32.mul (local.get $i) (i32.const 8)) (i32.add (local.get $i) (i32.const 1)))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br_if $l (i32.lt_u (local.get $i) (i32.const 15000)))))
        (func (export "at") (param i32) (result i32) (i32.load8_u (i32.mul (local.get 0) (i32.const 8))))
        (func (export "between") (param i32) (result i32) (i32.load8_u (i32.add (i32.mul (local.get 0) (i32.const 8)) (i32.const 3)))))}

      assert {:ok, snapshot, _} = Munition.snapshot(wat, "init", [])
      assert {:ok, 1, _} = Munition.fire(snapshot, "at", [0])
      assert {:ok, 0x98, _} = Munition.fire(snapshot, "at", [14999])
      assert {:ok, 0, _} = Munition.fire(snapshot, "between", [7000])
      assert {:ok, 0, _} = Munition.fire(snapshot, "at", [15000])
    end

    test "a reactor's _initialize runs once, before the snapshot, and never on calls of it" do
      reactor = ~s{(module (global $runs (mut i32) (i32.const 0))
        (func (export "_initialize") (global.set $runs (i32.add (global.get $runs) (i32.const 1))))
        (func (export "setup"))
        (func (export "runs") (result i32) (global.get $runs)))}

      # fire/4 runs _initialize before every call of a reactor.
      assert {:ok, 1, _} = Munition.fire(reactor, "runs", [])

      assert {:ok, snapshot, _} = Munition.snapshot(reactor, "setup", [])
      refute snapshot.reactor
      refute Munition.Module.export(snapshot, "_initialize")
      assert {:ok, 1, _} = Munition.fire(snapshot, "runs", [])
    end

    test "binary arguments reach the initialisation through the binary ABI" do
      wat =
        ~s{(module (memory (export "memory") 1) (global $len (mut i32) (i32.const 0))
        (func (export "alloc") (param i32) (result i32) (i32.const 1024))
        (func (export "init") (param i32 i32) (global.set $len (local.get 1)))
        (func (export "len") (result i32) (global.get $len))
        (func (export "byte") (param i32) (result i32) (i32.load8_u (i32.add (i32.const 1024) (local.get 0)))))}

      assert {:ok, snapshot, _} = Munition.snapshot(wat, "init", ["hello"])
      assert {:ok, 5, _} = Munition.fire(snapshot, "len", [])
      assert {:ok, ?e, _} = Munition.fire(snapshot, "byte", [1])
    end

    test "a call on a snapshot that crashes has a dump naming the snapshot and what it was made of" do
      assert {:ok, snapshot, _} = Munition.snapshot(@counter, "init", [41])
      assert {:crash, :trap, dump} = Munition.fire(snapshot, "boom", [])
      assert dump.module_hash == snapshot.hash
      assert dump.snapshot == %{of: hash(@counter), function: "init"}

      assert {:ok, read} = dump |> Dump.serialize() |> Dump.deserialize()
      assert read.snapshot == dump.snapshot

      assert Munition.Forensics.Report.summary(dump, %{regions: %{}, strings: []}) =~
               "snapshot of:  #{hash(@counter)}, after init"

      # Other calls' dumps name none.
      assert {:crash, :trap, %Dump{snapshot: nil}} = Munition.fire(@counter, "boom", [])
    end

    test "pools serve snapshots" do
      assert {:ok, snapshot, _} = Munition.snapshot(@counter, "init", [41])
      name = :snapshot_test_pool
      assert {:ok, pid} = Munition.Pool.start_link(name: name, wasm: snapshot)
      assert {:ok, 42, _} = Munition.fire_pooled(name, "next", [])
      assert {:ok, 42, _} = Munition.fire_pooled(name, "next", [])
      GenServer.stop(pid)
    end

    # A pool started (or switched) with a snapshot's stored bytes knows what
    # it is, as fire/4 given those bytes does: the provenance is in them.
    test "a pool of a snapshot's bytes names the snapshot in its dumps, as fire/4 of them does" do
      assert {:ok, snapshot, _} = Munition.snapshot(@counter, "init", [41])
      provenance = %{of: hash(@counter), function: "init"}
      bytes = snapshot.snapshot.bytes

      assert {:crash, :trap, %Dump{snapshot: ^provenance}} = Munition.fire(bytes, "boom", [])

      name = :snapshot_test_pool_of_bytes
      assert {:ok, pid} = Munition.Pool.start_link(name: name, wasm: bytes)
      assert {:ok, %Munition.Module{snapshot: %{of: of, function: "init"}}} = Munition.Pool.module(name)
      assert of == hash(@counter)
      assert {:ok, 42, _} = Munition.fire_pooled(name, "next", [])
      assert {:crash, :trap, dump} = Munition.fire_pooled(name, "boom", [])
      assert dump.module_hash == snapshot.hash
      assert dump.snapshot == provenance

      # Switched to a snapshot's bytes: the same. And back to plain bytes: none.
      assert {:ok, other, _} = Munition.snapshot(@counter, "init", [9])
      assert {:ok, %Munition.Module{snapshot: %{}}} = Munition.Pool.swap(name, other.snapshot.bytes)
      assert {:ok, 10, _} = Munition.fire_pooled(name, "next", [])
      assert {:crash, :trap, %Dump{snapshot: ^provenance}} = Munition.fire_pooled(name, "boom", [])

      assert {:ok, %Munition.Module{snapshot: nil}} = Munition.Pool.swap(name, @counter)
      assert {:crash, :trap, %Dump{snapshot: nil}} = Munition.fire_pooled(name, "boom", [])
      GenServer.stop(pid)
    end
  end

  describe "snapshot/4: bounded as fire/4" do
    test "an endless initialisation ends at its fuel with its dump, naming the module" do
      wat = ~s{(module (func (export "init") (loop (br 0))))}
      assert {:crash, :fuel_exhausted, dump} = Munition.snapshot(wat, "init", [], fuel: 100_000)
      assert dump.trap == :out_of_fuel
      assert dump.module_hash == hash(wat)
      assert dump.function == "init"
      assert Enum.map(dump.exports, & &1.name) == ["init"]
    end

    test "an initialisation past its deadline is stopped by the engine" do
      wat = ~s{(module (func (export "init") (loop (br 0))))}

      assert {:crash, :timeout, %Dump{trap: :interrupt}} =
               Munition.snapshot(wat, "init", [], fuel: 1_000_000_000_000, timeout: 50)
    end

    test "a function that does not exist" do
      assert {:error, {:function_not_found, "nope"}} = Munition.snapshot(@counter, "nope", [])
    end

    test "an import whose capability is not granted is refused before anything runs" do
      wat = ~s{(module (import "munition" "get_time_ms" (func $t (result i64)))
        (func (export "init") (drop (call $t))))}

      assert {:error, {:capability_denied, [%{name: "get_time_ms", needs: :time}]}} =
               Munition.snapshot(wat, "init", [])
    end
  end

  describe "snapshot/4: what cannot be captured" do
    test "a read of the clock during the initialisation, unless baked" do
      wat = ~s{(module (import "munition" "get_time_ms" (func $t (result i64)))
        (global $at (mut i64) (i64.const 0))
        (func (export "init") (global.set $at (call $t)))
        (func (export "idle"))
        (func (export "at") (result i64) (global.get $at)))}

      assert {:error, {:not_capturable, message}} = Munition.snapshot(wat, "init", [], capabilities: [:time])
      assert message =~ "the clock (munition.get_time_ms)"
      assert message =~ "bake: [:clock]"

      assert {:ok, snapshot, _} = Munition.snapshot(wat, "init", [], capabilities: [:time], bake: [:clock])
      assert {:ok, at, _} = Munition.fire(snapshot, "at", [], capabilities: [:time])
      assert at > 0

      # Imported and granted, but not read: nothing to bake.
      assert {:ok, _, _} = Munition.snapshot(wat, "idle", [], capabilities: [:time])
    end

    test "random bytes read by WASI's random_get, unless baked" do
      wat = ~s{(module (import "wasi_snapshot_preview1" "random_get" (func $r (param i32 i32) (result i32)))
        (memory (export "memory") 1)
        (func (export "init") (drop (call $r (i32.const 0) (i32.const 16)))))}

      assert {:error, {:not_capturable, message}} = Munition.snapshot(wat, "init", [], capabilities: [:wasi])
      assert message =~ "random bytes (wasi_snapshot_preview1.random_get)"
      assert {:ok, _, _} = Munition.snapshot(wat, "init", [], capabilities: [:wasi], bake: [:random])
    end

    test "the environment and the arguments, unless baked" do
      wat = ~s{(module
        (import "wasi_snapshot_preview1" "environ_sizes_get" (func $e (param i32 i32) (result i32)))
        (import "wasi_snapshot_preview1" "args_sizes_get" (func $a (param i32 i32) (result i32)))
        (memory (export "memory") 1)
        (func (export "env") (drop (call $e (i32.const 0) (i32.const 4))))
        (func (export "args") (drop (call $a (i32.const 0) (i32.const 4)))))}

      opts = [capabilities: [:wasi], wasi: [env: %{"A" => "1"}, args: ["x"]]]

      assert {:error, {:not_capturable, "the initialisation read its environment" <> _}} =
               Munition.snapshot(wat, "env", [], opts)

      assert {:error, {:not_capturable, "the initialisation read its arguments" <> _}} =
               Munition.snapshot(wat, "args", [], opts)

      assert {:ok, _, _} = Munition.snapshot(wat, "env", [], [bake: [:env]] ++ opts)
      assert {:ok, _, _} = Munition.snapshot(wat, "args", [], [bake: [:args]] ++ opts)
    end

    @tag :tmp_dir
    test "preopened directories", %{tmp_dir: dir} do
      assert {:error, {:not_capturable, message}} =
               Munition.snapshot(@counter, "init", [1],
                 capabilities: [:wasi, :wasi_fs],
                 wasi: [preopens: [{"/data", dir}]]
               )

      assert message =~ "preopened directories (/data)"
    end

    test "an initialisation that exits" do
      wat = ~s{(module (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
        (func (export "init") (call $exit (i32.const 3))))}

      assert {:error, {:not_capturable, "the initialisation called proc_exit(3)" <> _}} =
               Munition.snapshot(wat, "init", [], capabilities: [:wasi])
    end

    test "modules whose state Wizer cannot capture" do
      imported_memory = ~s{(module (import "env" "memory" (memory 1)) (func (export "init")))}
      assert {:error, {:not_capturable, message}} = Munition.snapshot(imported_memory, "init", [])
      assert message =~ "imported memories are not supported"

      table_grow = ~s{(module (table 1 funcref)
        (func (export "init") (drop (table.grow (ref.null func) (i32.const 1)))))}

      assert {:error, {:not_capturable, message}} = Munition.snapshot(table_grow, "init", [])
      assert message =~ "table.grow"

      # A component Wizer cannot take apart: a module instantiated twice.
      twice =
        ~s{(component (core module $m) (core instance (instantiate $m)) (core instance (instantiate $m)))}

      assert {:error,
              {:not_capturable,
               "wasmtime-wizer cannot snapshot it: modules may be instantiated at most once" <> _}} =
               Munition.snapshot(twice, "init", [])

      assert {:error, {:invalid_module, _}} = Munition.snapshot(<<0, "asm", 9>>, "init", [])
    end

    test "a component: every call starts from the snapshot's core instance, never from an earlier call's" do
      assert {:ok, snapshot, meta} = Munition.snapshot(@component, "init", [41])
      assert meta.module_hash == hash(@component)
      assert snapshot.kind == :component
      assert %{of: of, function: "init"} = snapshot.snapshot
      assert of == hash(@component)
      assert Enum.map(snapshot.exports, & &1.name) == ~w(init next stored spin boom)

      assert {:ok, 42, _} = Munition.fire(snapshot, "next", [])
      assert {:ok, 42, _} = Munition.fire(snapshot, "next", [])
      assert {:ok, 82, _} = Munition.fire(snapshot, "stored", [])
      assert {:ok, 1, _} = Munition.fire(@component, "next", [])

      # Its bytes compile to the same snapshot; a dump names what it was made of.
      assert {:ok, again} = Munition.compile(snapshot.snapshot.bytes)
      assert again.hash == snapshot.hash and again.snapshot == snapshot.snapshot
      assert {:crash, :trap, dump} = Munition.fire(again, "boom", [])
      assert %{of: ^of, function: "init"} = dump.snapshot

      # Deterministic: the same snapshot, byte for byte.
      assert {:ok, same, _} = Munition.snapshot(@component, "init", [41])
      assert same.hash == snapshot.hash
    end

    test "a component whose initialisation keeps a WASI 0.2 resource open is refused" do
      # `init` takes stdout's stream and keeps its handle in a global: the
      # stream is in the store's table, which a fresh instance lacks.
      keeps_stdout = ~s{(component $C
        (import "wasi:io/streams@0.2.0" (instance $streams (export "output-stream" (type (sub resource)))))
        (alias export $streams "output-stream" (type $os))
        (import "wasi:cli/stdout@0.2.0" (instance $stdout
          (alias outer $C $os (type $os2))
          (export "output-stream" (type $os3 (eq $os2)))
          (export "get-stdout" (func (result (own $os3))))))
        (core func $get (canon lower (func $stdout "get-stdout")))
        (core module $m (import "" "get" (func $get (result i32)))
          (global $h (mut i32) (i32.const 0))
          (func (export "init") (global.set $h (call $get))))
        (core instance $i (instantiate $m (with "" (instance (export "get" (func $get))))))
        (func (export "init") (canon lift (core func $i "init"))))}

      assert {:error, {:not_capturable, "the initialisation left 1 WASI 0.2 resource(s) open" <> _}} =
               Munition.snapshot(keeps_stdout, "init", [], capabilities: [:wasi])
    end

    test "a component's initialisation ends bounded, with its dump" do
      assert {:crash, :fuel_exhausted, %Dump{function: "spin"}} =
               Munition.snapshot(@component, "spin", [], fuel: 100_000)
    end

    test "Wasmi takes no snapshots" do
      assert {:error, {:unsupported, _}} =
               Munition.snapshot(@counter, "init", [1], runtime: Munition.Runtime.Wasmi)
    end

    test "wrong use raises" do
      {:ok, module} = Munition.compile(@counter)
      assert_raise ArgumentError, ~r/compiled code only/, fn -> Munition.snapshot(module, "init", [1]) end

      assert_raise ArgumentError, ~r/bake takes/, fn ->
        Munition.snapshot(@counter, "init", [1], bake: [:files])
      end

      assert_raise ArgumentError, ~r/this node/, fn ->
        Munition.snapshot(@counter, "init", [1], node: :elsewhere@nowhere)
      end
    end
  end
end

defmodule Munition.SnapshotStoresTest do
  # Reads the engine's count of live stores, which every call changes: not
  # async, so no other test's guests run meanwhile (Munition.SnapshotTest is
  # async).
  use ExUnit.Case, async: false

  @counter ~s{(module (global $n (mut i32) (i32.const 0))
    (func (export "init") (param i32) (global.set $n (local.get 0)))
    (func (export "boom") unreachable))}

  test "snapshot/4 leaves no store behind" do
    before = Munition.Runtime.Wasmtime.live_count()
    for _ <- 1..5, do: {:ok, _, _} = Munition.snapshot(@counter, "init", [1])
    {:crash, :trap, _} = Munition.snapshot(@counter, "boom", [])
    assert Munition.Runtime.Wasmtime.live_count() == before
  end
end

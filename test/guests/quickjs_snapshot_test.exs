Code.require_file("guests.exs", __DIR__)

defmodule Munition.Guests.QuickJSSnapshotTest do
  # Snapshots (Munition.snapshot/4) of the QuickJS-ng reactor built from
  # source (examples/guests/interpreters, `make interpreters`): its `init`
  # evaluates a script that sets up state, the snapshot keeps it, and each
  # call evaluates in a fresh instance of the snapshot. Lua, the issue's
  # other interpreter, is not built: Debian's wasi-libc has no setjmp.
  #
  # Not async, and each snapshot made once up front with bounds of its own:
  # compiling QuickJS (instrumented, then the snapshot) takes seconds of
  # both cores.
  use ExUnit.Case, async: false

  import Munition.Guests, only: [read!: 1]

  @wait 300_000
  # A rules table of 200 rows built by the initialisation, and a lookup.
  @rules """
  globalThis.rules = [];
  for (let i = 0; i < 200; i++) rules.push({id: i, country: 'C' + (i % 20), limit: i * 10});
  globalThis.byCountry = {};
  for (const r of rules) (byCountry[r.country] ||= []).push(r);
  print('indexed', rules.length);
  """
  @init_opts [
    capabilities: [:wasi],
    wasi: [clock: :deterministic],
    bake: [:clock],
    fuel: 2_000_000_000,
    timeout: @wait,
    compile_timeout: @wait
  ]

  setup_all do
    reactor = read!("interpreters/quickjs_reactor")
    {:ok, snapshot, meta} = Munition.snapshot(reactor, "init", [@rules], @init_opts)
    %{reactor: reactor, snapshot: snapshot, meta: meta}
  end

  defp eval(wasm, source, opts \\ []),
    do:
      Munition.fire(wasm, "eval", [source], [result: :binary, capabilities: [:wasi], timeout: @wait] ++ opts)

  test "the initialisation ran once: its output is the snapshot's, the calls see its state", %{
    snapshot: snapshot,
    meta: meta
  } do
    assert meta.stdout == "indexed 200\n"
    assert meta.result == 0
    refute snapshot.reactor

    assert {:ok, "10", %{stdout: ""}} = eval(snapshot, "String(byCountry.C7.length)")
    assert {:ok, "1270", _} = eval(snapshot, "String(byCountry.C7[6].limit)")
  end

  test "a call on the snapshot skips QuickJS's start-up", %{reactor: reactor, snapshot: snapshot} do
    assert {:ok, "2", cold} = eval(reactor, "String(1 + 1)")
    assert {:ok, "2", warm} = eval(snapshot, "String(1 + 1)")
    # Start-up is most of a cold call's fuel (1.76 M for print(1 + 1)).
    assert cold.fuel_consumed > 10 * warm.fuel_consumed
  end

  test "no call sees another's state", %{snapshot: snapshot} do
    script = "rules.push({id: -1}); globalThis.n = (globalThis.n || 0) + 1; `${n} ${rules.length}`"
    assert {:ok, "1 201", _} = eval(snapshot, script)
    assert {:ok, "1 201", _} = eval(snapshot, script)
  end

  test "an endless initialisation ends at its fuel, with its dump", %{reactor: reactor} do
    opts = Keyword.merge(@init_opts, fuel: 50_000_000)
    assert {:crash, :fuel_exhausted, dump} = Munition.snapshot(reactor, "init", ["for (;;) {}"], opts)
    assert dump.trap == :out_of_fuel
    assert dump.function == "init"
  end

  test "a denied capability is refused at snapshot time", %{reactor: reactor} do
    opts = Keyword.merge(@init_opts, capabilities: [:wasi_stdio])

    assert {:error,
            {:capability_denied,
             [%{module: "wasi_snapshot_preview1", name: "clock_time_get", needs: :wasi_clock}]}} =
             Munition.snapshot(reactor, "init", [@rules], opts)
  end

  test "QuickJS reads the clock as it starts: refused unless baked", %{reactor: reactor} do
    opts = Keyword.delete(@init_opts, :bake)

    assert {:error,
            {:not_capturable,
             "the initialisation read the clock (wasi_snapshot_preview1.clock_time_get)" <> _}} =
             Munition.snapshot(reactor, "init", ["1"], opts)
  end

  test "with a deterministic clock, the same initialisation makes the same snapshot", %{
    reactor: reactor,
    snapshot: snapshot
  } do
    assert {:ok, again, _} = Munition.snapshot(reactor, "init", [@rules], @init_opts)
    assert again.hash == snapshot.hash
    assert again.snapshot.bytes == snapshot.snapshot.bytes
  end

  test "pools serve the snapshot", %{snapshot: snapshot} do
    {:ok, pid} = Munition.Pool.start_link(name: :quickjs_snapshot_test, wasm: snapshot, capabilities: [:wasi])

    script = "globalThis.n = (globalThis.n || 0) + 1; `${n} ${rules.length}`"

    for _ <- 1..3 do
      assert {:ok, "1 200", _} =
               Munition.fire_pooled(:quickjs_snapshot_test, "eval", [script], result: :binary, timeout: @wait)
    end

    GenServer.stop(pid)
  end
end

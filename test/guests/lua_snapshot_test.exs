Code.require_file("guests.exs", __DIR__)

defmodule Munition.Guests.LuaSnapshotTest do
  # Snapshots (Munition.snapshot/4) of the Lua 5.4 reactor built from the
  # lua-src crate's sources (examples/guests/interpreters/lua.c,
  # `make interpreters`): its `init` runs a chunk that sets up globals, the
  # snapshot keeps them, and each call runs in a fresh instance of the
  # snapshot. Every Lua error is a trap there (wasi-libc has no longjmp):
  # tested too.
  use ExUnit.Case, async: false

  import Munition.Guests, only: [read!: 1]

  @wait 300_000
  # A rules table of 200 rows built by the initialisation, and an index.
  @rules """
  rules = {}
  for i = 0, 199 do rules[#rules + 1] = {id = i, country = "C" .. (i % 20), limit = i * 10} end
  by_country = {}
  for _, r in ipairs(rules) do
    by_country[r.country] = by_country[r.country] or {}
    table.insert(by_country[r.country], r)
  end
  print("indexed", #rules)
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
    reactor = read!("interpreters/lua_reactor")
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
    assert meta.stdout == "indexed\t200\n"
    assert meta.result == 0
    refute snapshot.reactor

    assert {:ok, "10", %{stdout: ""}} = eval(snapshot, "return #by_country.C7")
    assert {:ok, "1270", _} = eval(snapshot, "return by_country.C7[7].limit")
  end

  test "a call on the snapshot skips Lua's start-up", %{reactor: reactor, snapshot: snapshot} do
    assert {:ok, "2", cold} = eval(reactor, "return 1 + 1")
    assert {:ok, "2", warm} = eval(snapshot, "return 1 + 1")
    # Opening the state and its libraries is most of a cold call's fuel.
    assert cold.fuel_consumed > 5 * warm.fuel_consumed
  end

  test "no call sees another's state", %{snapshot: snapshot} do
    script = "rules[#rules + 1] = {id = -1}; n = (n or 0) + 1; return n .. ' ' .. #rules"
    assert {:ok, "1 201", _} = eval(snapshot, script)
    assert {:ok, "1 201", _} = eval(snapshot, script)
  end

  test "a Lua error is a trap, its message in the dump's stderr", %{snapshot: snapshot} do
    assert {:crash, :trap, dump} = eval(snapshot, "error('no such rule')")
    assert dump.stderr == "eval:1: no such rule\n"
    # pcall cannot catch it: the error ends the call.
    assert {:crash, :trap, %{stderr: "caught?\n"}} = eval(snapshot, "return pcall(error, 'caught?')")
    assert {:crash, :trap, %{stderr: "eval:1: " <> _}} = eval(snapshot, "return (")
  end

  test "an endless initialisation ends at its fuel, with its dump", %{reactor: reactor} do
    opts = Keyword.merge(@init_opts, fuel: 50_000_000)
    assert {:crash, :fuel_exhausted, dump} = Munition.snapshot(reactor, "init", ["while true do end"], opts)
    assert dump.trap == :out_of_fuel
    assert dump.function == "init"
  end

  test "a denied capability is refused at snapshot time", %{reactor: reactor} do
    opts = Keyword.merge(@init_opts, capabilities: [:wasi_stdio])

    assert {:error, {:capability_denied, [%{module: "wasi_snapshot_preview1", needs: :wasi_clock} | _]}} =
             Munition.snapshot(reactor, "init", [@rules], opts)
  end

  test "Lua reads the clock as it starts (its hash seed): refused unless baked", %{reactor: reactor} do
    opts = Keyword.delete(@init_opts, :bake)

    assert {:error,
            {:not_capturable,
             "the initialisation read the clock (wasi_snapshot_preview1.clock_time_get)" <> _}} =
             Munition.snapshot(reactor, "init", ["x = 1"], opts)
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
    {:ok, pid} = Munition.Pool.start_link(name: :lua_snapshot_test, wasm: snapshot, capabilities: [:wasi])

    script = "n = (n or 0) + 1; return n .. ' ' .. #rules"

    for _ <- 1..3 do
      assert {:ok, "1 200", _} =
               Munition.fire_pooled(:lua_snapshot_test, "eval", [script], result: :binary, timeout: @wait)
    end

    GenServer.stop(pid)
  end
end

Code.require_file("guests.exs", __DIR__)

defmodule Munition.Guests.ComponentSnapshotTest do
  # Snapshots (Munition.snapshot/4) of the component plugins of
  # examples/guests/components (tools/build_components.sh): the C plugin
  # (wit-bindgen and the WASI adapter) and the JavaScript one
  # (componentize-js), whose first call on a fresh instance pays for
  # StarlingMonkey's lazy start-up. A call of the caller's choosing is the
  # initialisation; every call on the snapshot starts where it ended.
  #
  # Not async, each snapshot made once up front with bounds of its own:
  # compiling the JavaScript plugin (instrumented, then the snapshot) takes
  # seconds of both cores, as in components_test.exs.
  use ExUnit.Case, async: false

  import Munition.Guests, only: [read!: 1]

  @host "munition:plugin/host@0.1.0"
  @wait 600_000
  # What StarlingMonkey reads as it starts (the clock, random bytes for
  # Math.random, its environment) every call on the snapshot shares.
  @bake [:clock, :random, :env, :args]

  defp log_to(pid),
    do: {@host, "log", :wit, :plugin_log, fn _ctx, message -> send(pid, {:logged, message}) end}

  defp opts(extra \\ []) do
    Keyword.merge(
      [
        capabilities: [:wasi, :plugin_log],
        host_functions: [log_to(self())],
        fuel: 2_000_000_000,
        timeout: @wait,
        compile_timeout: @wait
      ],
      extra
    )
  end

  setup_all do
    plugins =
      for plugin <- ~w(plugin_c plugin_js), into: %{} do
        bytes = read!("components/#{plugin}")
        {:ok, snapshot, meta} = Munition.snapshot(bytes, "check", [1200, "DE"], opts(bake: @bake))
        {plugin, %{bytes: bytes, snapshot: snapshot, meta: meta}}
      end

    %{plugins: plugins}
  end

  defp fuel({:ok, _value, meta}), do: meta.fuel_consumed

  test "a call on the snapshot answers as on a fresh instance, without the start-up", %{plugins: plugins} do
    for {plugin, %{snapshot: snapshot, meta: meta}} <- plugins do
      assert meta.result == true, plugin
      assert snapshot.kind == :component
      assert %{function: "check"} = snapshot.snapshot
      assert Enum.map(snapshot.exports, & &1.name) == ~w(check classify tags total spin fail)

      assert {:ok, true, _} = Munition.fire(snapshot, "check", [1200, "DE"], opts())
      assert {:ok, false, _} = Munition.fire(snapshot, "check", [1200, "FR"], opts())

      assert {:ok, {"deny", "5000 is over the limit"}, _} =
               Munition.fire(snapshot, "classify", [%{amount: 5000, country: "FR"}], opts())

      assert {:ok, {:ok, 3}, _} = Munition.fire(snapshot, "total", [[1, 2]], opts())
    end

    # The initialisation was `check` on a fresh instance (the instrumented
    # component runs the same code): C's costs little either way, the
    # JavaScript plugin's lazy start-up (534,467 fuel on a fresh instance
    # when this was written, 73,573 on the snapshot) is gone.
    for {plugin, factor} <- [{"plugin_c", 1}, {"plugin_js", 4}] do
      %{snapshot: snapshot, meta: meta} = plugins[plugin]

      assert fuel(Munition.fire(snapshot, "check", [1200, "DE"], opts())) * factor < meta.fuel_consumed,
             plugin
    end
  end

  test "no call sees another's: each starts from the snapshot, burning the same fuel", %{plugins: plugins} do
    for {plugin, %{snapshot: snapshot}} <- plugins do
      burnt = for _ <- 1..3, do: fuel(Munition.fire(snapshot, "check", [1200, "DE"], opts()))
      assert [_] = Enum.uniq(burnt), plugin
    end
  end

  test "a deterministic initialisation makes the same snapshot", %{plugins: plugins} do
    %{bytes: bytes, snapshot: snapshot} = plugins["plugin_c"]
    assert {:ok, again, _} = Munition.snapshot(bytes, "check", [1200, "DE"], opts(bake: @bake))
    assert again.hash == snapshot.hash
  end

  test "a failing or endless initialisation ends with its dump", %{plugins: plugins} do
    %{bytes: bytes} = plugins["plugin_c"]

    assert {:crash, :trap, %{function: "fail"}} = Munition.snapshot(bytes, "fail", ["no"], opts())

    assert {:crash, :fuel_exhausted, %{function: "spin", fuel_consumed: 50_000_000}} =
             Munition.snapshot(bytes, "spin", [], opts(fuel: 50_000_000))
  end

  test "what the JavaScript plugin imports to read the clock is refused unless baked", %{plugins: plugins} do
    %{bytes: bytes} = plugins["plugin_js"]

    assert {:error, {:not_capturable, "the component imports wasi:clocks/monotonic-clock@" <> _}} =
             Munition.snapshot(bytes, "check", [1200, "DE"], opts())
  end

  test "a denied capability is refused at snapshot time, and a pool serves the snapshot", %{plugins: plugins} do
    %{bytes: bytes, snapshot: snapshot} = plugins["plugin_c"]

    assert {:error, {:capability_denied, [%{module: @host, name: "log"}]}} =
             Munition.snapshot(bytes, "check", [1200, "DE"], capabilities: [:wasi])

    {:ok, pid} =
      Munition.Pool.start_link(
        name: :component_snapshot_test,
        wasm: snapshot,
        capabilities: [:wasi, :plugin_log],
        host_functions: [log_to(self())]
      )

    assert {:ok, {:ok, 3}, _} = Munition.fire_pooled(:component_snapshot_test, "total", [[1, 2]])
    GenServer.stop(pid)
  end
end

# Benchmark of snapshots (not a test): a call on a snapshot
# (`Munition.snapshot/4`) against initialising then calling, in one run,
# with raw Wasmtime doing the same beside them.
#
#     MIX_ENV=test mix run bench/snapshot.exs     (`make bench` runs it too)
#     PARTS=component MIX_ENV=test mix run bench/snapshot.exs   (or PARTS=interpreters)
#
# Guests: the QuickJS-ng reactor (_build/guests/interpreters/quickjs_reactor.wasm,
# `make interpreters`), every call a fresh instance:
#
#   * "hello": `print('hello')`, from QuickJS's start-up (the reactor, as
#     fire/4 runs it: `_initialize`, then `eval`, which starts QuickJS) and
#     from a snapshot taken after start-up (`init` of an empty script);
#   * Lua "hello": the same with the Lua 5.4 reactor
#     (_build/guests/interpreters/lua_reactor.wasm);
#   * a rules engine: a script building a 5,000-row index, then one lookup;
#     from nothing (index and lookup in one `eval`, every call) and from a
#     snapshot taken after the index was built (the lookup alone).
#
# The raw side is native/munition_bench's `compute` mode (see
# bench/compute.exs) on the same bytes: the reactor, and the snapshot's own
# wasm (`snapshot.snapshot.bytes`), with the instrumentation Munition asks
# of Wasmtime ("fuel": its one instrument) and Munition's way of running guests
# ("munition": on a fiber, yielding every 100,000 units of fuel).
#
# and the JavaScript component plugin (_build/guests/components/plugin_js.wasm,
# `make components`): `check(1200, "DE")` on a fresh instance (its first call
# pays for StarlingMonkey's lazy start-up) and on its snapshot taken after
# that call; raw Wasmtime is munition_bench's `components` mode on the
# plugin's bytes and on the snapshot's ("default": Wasmtime's defaults;
# "munition": Munition's instrumentation, on a fiber).
#
# `fire_pooled/4` is the same call through a `Munition.Pool` of the
# snapshot, which checks options and links imports once.
#
# Columns: median and p99 of one call, its fuel, and the median over raw
# Wasmtime "fuel" on the same bytes ("x raw"). The memory lines say
# what a call in flight holds: the growth of the VM's memory with 16
# rules-engine calls spinning at once, per call, from nothing (each built
# its index) and on the snapshot (the pooling allocator maps its memory
# copy-on-write from the module's image, so a page is the call's own only
# once it writes it): its own pages (RssAnon) and all it maps (VmRSS); and what a call on a snapshot starts with: the linear
# memory its module declares, and the bytes of the snapshot.

Code.require_file("support/timing.exs", __DIR__)
Code.require_file("support/raw_wasmtime.exs", __DIR__)

defmodule Bench.Snapshot do
  alias Munition.Bench.{RawWasmtime, Timing}

  @root Path.expand("..", __DIR__)
  @fuel 1_000_000_000_000
  @label 46
  @call [result: :binary, capabilities: [:wasi], fuel: @fuel, timeout: 120_000]
  @init [
    capabilities: [:wasi],
    wasi: [clock: :deterministic],
    bake: [:clock],
    fuel: @fuel,
    timeout: 300_000,
    compile_timeout: 300_000
  ]

  @index """
  const countries = ["DE", "FR", "US", "JP"];
  globalThis.rows = [];
  for (let i = 0; i < 5000; i++) rows.push({id: i, country: countries[i % 4], limit: (i * 37) % 1000});
  globalThis.index = new Map();
  for (const row of rows) {
    const key = row.country + ":" + row.limit;
    if (!index.has(key)) index.set(key, []);
    index.get(key).push(row.id);
  }
  """
  @lookup ~s{String(index.get("DE:0").length)}

  def run do
    bench = RawWasmtime.build!()
    parts = String.split(System.get_env("PARTS", "interpreters,component"), ",")
    IO.puts(String.pad_trailing("", @label) <> Enum.map_join(["median", "p99", "fuel", "x raw"], &pad/1))
    if "interpreters" in parts, do: interpreters(bench)
    if "component" in parts, do: component(bench)
  end

  defp interpreters(bench) do
    reactor = guest!("interpreters/quickjs_reactor")
    {:ok, module} = Munition.compile(reactor, timeout: 300_000)

    {hello, taken} = timed(fn -> Munition.snapshot(reactor, "init", [""], @init) end)
    {:ok, hello, _} = hello
    IO.puts("\nQuickJS \"hello\" (snapshot taken in #{ms(taken)}, compiling included)")
    compare(bench, "print('hello')", {reactor, module}, {hello, "print('hello')"}, 50)

    lua = guest!("interpreters/lua_reactor")
    {:ok, lua_module} = Munition.compile(lua, timeout: 300_000)
    {lua_hello, taken} = timed(fn -> Munition.snapshot(lua, "init", [""], @init) end)
    {:ok, lua_hello, _} = lua_hello
    IO.puts("\nLua \"hello\" (snapshot taken in #{ms(taken)}, compiling included)")
    compare(bench, "print('hello')", {lua, lua_module}, {lua_hello, "print('hello')"}, 50)

    {rules, taken} = timed(fn -> Munition.snapshot(reactor, "init", [@index], @init) end)
    {:ok, rules, _} = rules
    IO.puts("\nRules engine: 5,000-row index, one lookup (snapshot taken in #{ms(taken)})")
    figures = compare(bench, @index <> @lookup, {reactor, module}, {rules, @lookup}, 10)
    fresh = figures[:fresh].median
    snap = figures[:snapshot].median

    IO.puts(
      "  a call on the snapshot is #{:erlang.float_to_binary(fresh / snap, decimals: 0)}x faster than from nothing"
    )

    # Calls in flight: each spins in QuickJS until its deadline, its
    # instance alive, while the VM's resident memory is read.
    spin = "for (;;) {}"
    {fresh_own, fresh_mapped} = in_flight(module, @index <> spin, 16)
    {snapshot_own, snapshot_mapped} = in_flight(rules, spin, 16)

    IO.puts(
      "  memory of a call in flight, each of 16 at once: from nothing #{fresh_own} KiB own " <>
        "(#{fresh_mapped} KiB resident), on the snapshot #{snapshot_own} KiB own (#{snapshot_mapped} KiB resident)"
    )

    for {name, snapshot} <- [{"hello", hello}, {"rules", rules}] do
      memory = snapshot.memories |> Enum.map(&(&1.min_pages * &1.page_size)) |> Enum.sum()

      IO.puts(
        "  memory, #{name} snapshot: #{div(memory, 1024)} KiB of linear memory declared, " <>
          "#{div(byte_size(snapshot.snapshot.bytes), 1024)} KiB of wasm"
      )
    end
  end

  # Munition and raw Wasmtime, from nothing (`source` on the reactor) and
  # from the snapshot (`snap_source` on it).
  defp compare(bench, source, {reactor, module}, {snapshot, snap_source}, samples) do
    raw_fresh = raw(bench, reactor, source, samples)
    raw_snapshot = raw(bench, snapshot.snapshot.bytes, snap_source, samples * 2)
    fresh = munition(module, source, samples)
    snap = munition(snapshot, snap_source, samples * 2)
    pooled = pooled(snapshot, snap_source, samples * 2)

    row("  Munition fire/4, from nothing", fresh, raw_fresh["fuel"])
    row("  raw wasmtime, fuel, from nothing", raw_fresh["fuel"], raw_fresh["fuel"])
    row("  raw wasmtime, munition, from nothing", raw_fresh["munition"], raw_fresh["fuel"])
    row("  Munition fire/4, on the snapshot", snap, raw_snapshot["fuel"])
    row("  Munition fire_pooled/4, on the snapshot", pooled, raw_snapshot["fuel"])

    row(
      "  raw wasmtime, fuel, on the snapshot",
      raw_snapshot["fuel"],
      raw_snapshot["fuel"]
    )

    row("  raw wasmtime, munition, on the snapshot", raw_snapshot["munition"], raw_snapshot["fuel"])
    %{fresh: fresh, snapshot: snap}
  end

  @host "munition:plugin/host@0.1.0"
  @component_call [
    capabilities: [:wasi, :plugin_log],
    host_functions: [{@host, "log", :wit, :plugin_log, &__MODULE__.log/2}],
    fuel: @fuel,
    timeout: 120_000,
    compile_timeout: 300_000
  ]

  @doc false
  def log(_ctx, _message), do: :ok

  # The JavaScript component plugin (componentize-js): `check(1200, "DE")`
  # on a fresh instance of the plugin, which pays for StarlingMonkey's lazy
  # start-up, and on a fresh instance of its snapshot taken after that same
  # call; raw Wasmtime the same on both (native/munition_bench's
  # `components` mode: `default` is Wasmtime's defaults, `munition` its
  # instrumentation and fiber).
  defp component(bench) do
    path = Path.join(@root, "_build/guests/components/plugin_js.wasm")

    if File.exists?(path) do
      plugin = File.read!(path)
      {:ok, module} = Munition.compile(plugin, compile_timeout: 300_000)
      bake = [bake: [:clock, :random, :env, :args]]

      {snapshot, taken} =
        timed(fn -> Munition.snapshot(plugin, "check", [1200, "DE"], @component_call ++ bake) end)

      {:ok, snapshot, _} = snapshot

      IO.puts(
        "\nJavaScript component, check(1200, \"DE\") (snapshot taken in #{ms(taken)}, compiling included)"
      )

      raw_fresh = raw_component(bench, plugin, 100)
      raw_snapshot = raw_component(bench, snapshot.snapshot.bytes, 200)
      fresh = component_call(fn -> Munition.fire(module, "check", [1200, "DE"], @component_call) end, 100)
      snap = component_call(fn -> Munition.fire(snapshot, "check", [1200, "DE"], @component_call) end, 200)

      {:ok, pool} =
        Munition.Pool.start_link(
          [name: :bench_component_snapshot, wasm: snapshot] ++
            Keyword.delete(@component_call, :compile_timeout)
        )

      pooled =
        component_call(
          fn -> Munition.fire_pooled(:bench_component_snapshot, "check", [1200, "DE"], timeout: 120_000) end,
          200
        )

      GenServer.stop(pool)

      row("  Munition fire/4, fresh instance", fresh, raw_fresh["munition"])
      row("  raw wasmtime, default, fresh instance", raw_fresh["default"], raw_fresh["munition"])
      row("  raw wasmtime, munition, fresh instance", raw_fresh["munition"], raw_fresh["munition"])
      row("  Munition fire/4, on the snapshot", snap, raw_snapshot["munition"])
      row("  Munition fire_pooled/4, on the snapshot", pooled, raw_snapshot["munition"])
      row("  raw wasmtime, default, on the snapshot", raw_snapshot["default"], raw_snapshot["munition"])
      row("  raw wasmtime, munition, on the snapshot", raw_snapshot["munition"], raw_snapshot["munition"])
    else
      IO.puts("\nJavaScript component: #{path} is not built (`make components`), skipped")
    end
  end

  defp component_call(fun, samples) do
    {:ok, _, %{fuel_consumed: fuel}} = fun.()
    sorted = Timing.sample(samples, fn -> {:ok, _, _} = fun.() end, 3)
    %{median: Timing.percentile(sorted, 0.5), p99: Timing.percentile(sorted, 0.99), fuel: fuel}
  end

  defp raw_component(bench, wasm, samples) do
    args =
      [
        "components",
        "--wasm",
        RawWasmtime.input_file!("component.wasm", wasm),
        "--call",
        "check",
        "--arg",
        "1200",
        "--arg",
        "DE"
      ] ++
        ["--samples", "#{samples}", "--loads", "1", "--threads", "1", "--throughput-ms", "1000"]

    case System.cmd(bench, args, cd: @root) do
      {output, 0} ->
        for line <- String.split(output, "\n", trim: true),
            ["raw_component" | pairs] <- [String.split(line)],
            fields = Map.new(pairs, &List.to_tuple(String.split(&1, "=", parts: 2))),
            into: %{} do
          {fields["instrument"],
           %{
             median: String.to_integer(fields["median_ns"]),
             p99: String.to_integer(fields["p99_ns"]),
             fuel: 0
           }}
        end

      {output, status} ->
        raise "munition_bench components exited with #{status}:\n#{output}"
    end
  end

  defp munition(module, source, samples) do
    {:ok, _, %{fuel_consumed: fuel}} = Munition.fire(module, "eval", [source], @call)
    sorted = Timing.sample(samples, fn -> {:ok, _, _} = Munition.fire(module, "eval", [source], @call) end, 3)
    %{median: Timing.percentile(sorted, 0.5), p99: Timing.percentile(sorted, 0.99), fuel: fuel}
  end

  # The growth of the VM's memory with `n` calls in flight at once, per
  # call, in KiB: `{own, resident}`, own being the private pages (RssAnon:
  # its stack, the memory it wrote) and resident all it maps (VmRSS, which
  # counts each mapping of a page of the module's image again, though the
  # page is shared).
  defp in_flight(module, source, n) do
    before = rss_kib()
    opts = Keyword.merge(@call, timeout: 4_000, forensics: false)
    calls = for _ <- 1..n, do: Task.async(fn -> Munition.fire(module, "eval", [source], opts) end)
    Process.sleep(2_500)
    during = rss_kib()
    Enum.each(calls, fn call -> {:crash, :timeout, nil} = Task.await(call, 60_000) end)
    {div(elem(during, 0) - elem(before, 0), n), div(elem(during, 1) - elem(before, 1), n)}
  end

  defp rss_kib do
    status = File.read!("/proc/self/status")

    kib = fn field ->
      String.to_integer(hd(Regex.run(~r/#{field}:\s+(\d+) kB/, status, capture: :all_but_first)))
    end

    {kib.("RssAnon"), kib.("VmRSS")}
  end

  # A pool of the snapshot: options, capabilities and links worked out once.
  defp pooled(snapshot, source, samples) do
    {:ok, pool} =
      Munition.Pool.start_link(name: :bench_snapshot, wasm: snapshot, capabilities: [:wasi], fuel: @fuel)

    opts = [result: :binary, timeout: 120_000]
    {:ok, _, %{fuel_consumed: fuel}} = Munition.fire_pooled(:bench_snapshot, "eval", [source], opts)

    sorted =
      Timing.sample(
        samples,
        fn -> {:ok, _, _} = Munition.fire_pooled(:bench_snapshot, "eval", [source], opts) end,
        3
      )

    GenServer.stop(pool)
    %{median: Timing.percentile(sorted, 0.5), p99: Timing.percentile(sorted, 0.99), fuel: fuel}
  end

  defp raw(bench, wasm, source, samples) do
    args =
      [
        "compute",
        "--wasm",
        RawWasmtime.input_file!("guest.wasm", wasm),
        "--call",
        "eval",
        "--samples",
        "#{samples}"
      ] ++
        ["--binary-file", RawWasmtime.input_file!("source.js", source)]

    case System.cmd(bench, args, cd: @root) do
      {output, 0} ->
        for line <- String.split(output, "\n", trim: true),
            ["raw_compute" | pairs] = String.split(line),
            fields = Map.new(pairs, &List.to_tuple(String.split(&1, "=", parts: 2))),
            fields["engine"] == "wasmtime",
            into: %{} do
          {fields["instrument"],
           %{
             median: String.to_integer(fields["median_ns"]),
             p99: String.to_integer(fields["p99_ns"]),
             fuel: String.to_integer(fields["fuel"])
           }}
        end

      {output, status} ->
        raise "munition_bench compute exited with #{status}:\n#{output}"
    end
  end

  defp timed(fun) do
    t0 = :erlang.monotonic_time(:nanosecond)
    result = fun.()
    {result, :erlang.monotonic_time(:nanosecond) - t0}
  end

  defp row(label, figure, base) do
    IO.puts(
      String.pad_trailing(label, @label) <>
        Enum.map_join(
          [
            time(figure.median),
            time(figure.p99),
            if(figure.fuel > 0, do: Integer.to_string(figure.fuel), else: "-"),
            :erlang.float_to_binary(figure.median / base.median, decimals: 2) <> "x"
          ],
          &pad/1
        )
    )
  end

  defp time(ns) when ns < 1_000_000, do: :erlang.float_to_binary(ns / 1000, decimals: 1) <> " µs"
  defp time(ns), do: ms(ns)
  defp ms(ns), do: :erlang.float_to_binary(ns / 1_000_000, decimals: 2) <> " ms"
  defp pad(text), do: String.pad_leading(text, 13)

  defp guest!(name) do
    path = Path.join([@root, "_build/guests", name <> ".wasm"])
    File.exists?(path) || raise "#{path} is not built: run `make examples`"
    File.read!(path)
  end
end

IO.puts(
  "bench/snapshot.exs: #{DateTime.utc_now() |> DateTime.truncate(:second)}, load #{File.read!("/proc/loadavg") |> String.split() |> hd()}"
)

Bench.Snapshot.run()

# Benchmark of components (not a test): the figures issue 20 asks of
# `make bench`, per plugin, beside raw Wasmtime measured in the same run.
#
#     MIX_ENV=test mix run bench/components.exs     (`make bench` runs it too)
#
# The plugins are the ones `make components` builds (examples/guests/components:
# one WIT world in JavaScript, Python and C) into _build/guests/components/;
# a plugin not built is skipped, saying how to build it (`PLUGINS=plugin_js,plugin_c`
# measures only those). For each:
#
#   * a call on a fresh instance: `check(1200, "DE")` through `fire/4` on the
#     compiled module (capabilities [:wasi, :plugin_log], `log` an Elixir host
#     function that is never called), median and p99 over @samples calls, and
#     through `fire_pooled/4`; beside native/munition_bench's `components`
#     mode (src/components.rs, run as a port that makes calls when asked:
#     Munition's calls and raw Wasmtime's take turns, @chunk at a time, as
#     this machine has slow phases of seconds that must fall on both alike),
#     the same call on raw Wasmtime 48: a fresh
#     store + instance (InstancePre) + the call + dropping the store, with
#     Wasmtime's defaults (the pooling allocator at its default limits: the
#     baseline of issue 20), the same with a typed call, with Munition's
#     instrumentation (its engine, store, fuel and fiber), and with
#     Munition's WASI context on top; and, on raw Wasmtime, a later call on
#     the same instance (what the call costs once the guest initialised
#     itself) and what making a store's WASI context costs;
#   * calls per second with @callers callers at once (processes here,
#     threads for raw Wasmtime), and the latency of those calls;
#   * compile time: `Munition.compile/2` (one compile thread, as Munition
#     compiles), and raw Wasmtime's `Component::new` on Munition's engine (one
#     thread) and on the default one (Cranelift on every core);
#   * cached-load time: a compile after `Munition.Native.module_cache_clear/0`
#     that loads the code `config :munition, compile_cache_dir` kept (n/a
#     while components are not kept on disk), beside raw Wasmtime's
#     `Component::deserialize_file` + `instantiate_pre`;
#   * memory per call in flight: @in_flight calls of `tags("a b")`, each held
#     inside its `log` host function until all are (the plugin's fiber
#     suspended, the store and instance alive), after one such round to warm
#     the pool's slots: the growth of the OS process's resident set (VmRSS,
#     and its anonymous part, RssAnon, of /proc/self/status) divided by the
#     calls, and how much the BEAM's allocators grew (`:erlang.memory(:total)`,
#     partly in carriers already resident, so it may exceed the RSS growth);
#     raw Wasmtime the same with its `log` pending, and the pooling
#     allocator's slots each call holds.
#
# The load average is printed first and last: on a busy machine every
# figure grows (this machine has 2 cores).

Code.require_file("support/timing.exs", __DIR__)
Code.require_file("support/raw_wasmtime.exs", __DIR__)

defmodule Bench.Components do
  import Bitwise
  alias Munition.Bench.{RawWasmtime, Timing}
  alias Munition.Runtime.Wasmtime

  @root Path.expand("..", __DIR__)
  @host "munition:plugin/host@0.1.0"
  # {label, file, issue 20's target for a fresh-instance call: 1.2x the raw
  # Wasmtime figures it quotes (488 µs, 923 µs)}
  @plugins [
    {"JavaScript (componentize-js)", "plugin_js", 590_000},
    {"Python (componentize-py)", "plugin_py", 1_100_000},
    {"C (wit-bindgen)", "plugin_c", nil}
  ]
  @samples 300
  @chunk 50
  @warmup 100
  @callers 8
  @throughput_ms 2_000
  @in_flight 32
  @loads 5
  @label 46

  def run do
    only = System.get_env("PLUGINS", "") |> String.split(",", trim: true)

    plugins =
      for {label, name, target} <- @plugins, only == [] or name in only do
        path = Path.join([@root, "_build/guests/components", name <> ".wasm"])
        %{label: label, name: name, path: path, target: target}
      end

    {present, missing} = Enum.split_with(plugins, &File.exists?(&1.path))

    for plugin <- missing do
      IO.puts(
        "#{plugin.label}: #{Path.relative_to(plugin.path, @root)} is not built; `make components` builds " <>
          "the plugins (and installs their toolchains), then run this again"
      )
    end

    if present != [] do
      bench = RawWasmtime.build!()
      Enum.each(present, &plugin(bench, &1))
    end
  end

  defp plugin(bench, plugin) do
    bytes = File.read!(plugin.path)

    IO.puts(
      "\n#{plugin.label}: #{Path.relative_to(plugin.path, @root)}, " <>
        "#{Float.round(byte_size(bytes) / 1_000_000, 1)} MB"
    )

    {module, compile} = compile(bytes)

    # Munition's calls and raw Wasmtime's, in turns of @chunk: this machine
    # has slow phases of seconds, which must fall on both alike.
    {port, raw_lines, instruments} = open_raw(bench, plugin.path)
    {calls, raw_lines} = interleaved(port, module, instruments, raw_lines)
    raw = parse(raw_lines)

    {rates, rate} = Timing.concurrent(@callers, @throughput_ms, fn -> {:ok, true, _} = fire(module) end)
    memory = in_flight(module)

    default = calls["default"]
    munition = calls["munition"]
    IO.puts(String.pad_trailing("  check(1200, \"DE\"), fresh instance", @label) <> header())

    for {key, label} <- [
          {"fire/4", "Munition fire/4"},
          {"fire_pooled/4", "Munition fire_pooled/4"},
          {"default", "raw Wasmtime, default"},
          {"default+typed", "raw Wasmtime, default, typed call"},
          {"munition", "raw Wasmtime, Munition's instrumentation"},
          {"munition+p1ctx", "raw, Munition's + its WASI context"}
        ],
        sorted = calls[key] do
      row("    " <> label, figure(sorted), default, munition)
    end

    default = raw[{"raw_component", "default"}]
    munition = raw[{"raw_component", "munition"}]

    IO.puts(
      "    (raw default: instantiate #{time(default["instantiate_median_ns"])}, call " <>
        "#{time(default["call_median_ns"])}, drop #{time(default["drop_median_ns"])}; raw Munition's: " <>
        "instantiate #{time(munition["instantiate_median_ns"])}, call #{time(munition["call_median_ns"])}, " <>
        "drop #{time(munition["drop_median_ns"])})"
    )

    warm = raw[{"raw_component_warm", "default"}]
    contexts = raw[{"raw_component_wasi_ctx", nil}]

    if warm do
      IO.puts(
        "    (raw default, a later call on the same instance: #{time(warm["val_median_ns"])} with Vals, " <>
          "#{time(warm["typed_median_ns"])} typed; a store's WASI context: preview 2 #{contexts["p2_ns"]} ns, " <>
          "Munition's preview-1 one #{contexts["p1_ns"]} ns)"
      )
    end

    target(plugin, Timing.percentile(calls["fire/4"], 0.5), Timing.percentile(calls["default"], 0.5))

    # Under load, a call's latency is mostly its wait for a core: no ratio.
    IO.puts("  #{@callers} callers at once, #{@throughput_ms} ms")
    row("    Munition fire/4", figure(rates), nil, nil, rate)

    for {instrument, label} <- [
          {"default", "raw Wasmtime, default"},
          {"munition", "raw Wasmtime, Munition's"}
        ],
        fields = raw[{"raw_component_throughput", instrument}] do
      row("    #{label} (#{@callers} threads)", figure(fields), nil, nil, fields["calls_per_s"])
    end

    IO.puts(
      "  compile: Munition.compile/2 #{seconds(compile.compile_ns)}; raw Wasmtime, Munition's engine " <>
        "(one thread) #{seconds(raw[{"raw_component_compile", "munition"}]["ns"])}, default engine " <>
        "(every core) #{seconds(raw[{"raw_component_compile", "default"}]["ns"])}"
    )

    load = raw[{"raw_component_load", "munition"}]

    IO.puts(
      "  cached load: Munition #{compile.cached}; raw Wasmtime deserialize_file + instantiate_pre " <>
        "#{time(load["median_ns"])} (#{Float.round(load["code_bytes"] / 1_000_000, 1)} MB of code)"
    )

    held = raw[{"raw_component_memory", "munition"}]

    IO.puts(
      "  memory per call in flight (#{@in_flight} calls of tags(\"a b\") held in log): Munition " <>
        memory <>
        if(held,
          do:
            "; raw Wasmtime #{kb(held["rss_per_call_bytes"])} RSS (#{kb(held["anon_per_call_bytes"])} anonymous); " <>
              "pool slots per call: core instances #{held["core_instances_per_call"]}, " <>
              "memories #{held["memories_per_call"]}, tables #{held["tables_per_call"]}, " <>
              "fiber stacks #{held["stacks_per_call"]}",
          else: ""
        )
    )
  end

  defp opts(extra \\ []) do
    Keyword.merge(
      [
        capabilities: [:wasi, :plugin_log],
        host_functions: [{@host, "log", :wit, :plugin_log, fn _ctx, _message -> :ok end}]
      ],
      extra
    )
  end

  defp fire(module), do: Munition.fire(module, "check", [1200, "DE"], opts())

  # The compile, with a disk cache directory of its own: what it keeps there
  # (nothing while components are not kept on disk) is loaded back after
  # the in-memory cache is emptied.
  defp compile(bytes) do
    dir = Path.join(System.tmp_dir!(), "munition-bench-components-#{System.unique_integer([:positive])}")
    previous = Application.fetch_env(:munition, :compile_cache_dir)
    Application.put_env(:munition, :compile_cache_dir, dir)

    try do
      disk? = Map.has_key?(Wasmtime.cache_stats(), :disk)
      Munition.Native.module_cache_clear()
      before = disk_stats()
      {compile_us, {:ok, module}} = :timer.tc(fn -> Munition.compile(bytes, compile_timeout: 600_000) end)
      # Written, as the counters or the directory say.
      written = disk_stats().written - before.written + length(files(dir))

      cached =
        cond do
          not disk? ->
            "n/a (this build keeps no compiled code on disk)"

          written == 0 ->
            "n/a (components are not kept on disk yet)"

          true ->
            loads =
              Timing.sample(@loads, fn ->
                Munition.Native.module_cache_clear()
                {:ok, _} = Munition.compile(bytes, compile_timeout: 600_000)
              end)

            hits = disk_stats().hits - before.hits

            "#{time(Timing.percentile(loads, 0.5))} (median of #{@loads}, max #{time(List.last(loads))}" <>
              if(hits == @loads, do: ")", else: "; the disk cache counted #{hits} hits of #{@loads} loads)")
        end

      {module, %{compile_ns: compile_us * 1000, cached: cached}}
    after
      case previous do
        {:ok, value} -> Application.put_env(:munition, :compile_cache_dir, value)
        :error -> Application.delete_env(:munition, :compile_cache_dir)
      end

      File.rm_rf!(dir)
    end
  end

  # The disk cache's counters: `:disk` of cache_stats/0, and a `:disk` of
  # its `:components` should components get counters of their own there.
  defp disk_stats do
    stats = Wasmtime.cache_stats()

    [stats[:disk], get_in(stats, [:components, :disk])]
    |> Enum.filter(&is_map/1)
    |> Enum.reduce(%{written: 0, hits: 0}, fn disk, sum ->
      %{written: sum.written + Map.get(disk, :written, 0), hits: sum.hits + Map.get(disk, :hits, 0)}
    end)
  end

  defp files(dir) do
    case File.ls(dir) do
      {:ok, files} -> files
      {:error, _} -> []
    end
  end

  # `@samples` calls of each: fire/4 and fire_pooled/4 here, each of raw
  # Wasmtime's instruments there, in rounds of @chunk each; sorted
  # nanoseconds by name. Returns them and raw's lines so far.
  defp interleaved(port, module, instruments, raw_lines) do
    name = :"bench_components_#{System.unique_integer([:positive])}"
    {:ok, pool} = Munition.Pool.start_link(opts(name: name, wasm: module))

    try do
      ours = [
        {"fire/4", fn -> {:ok, true, _} = fire(module) end},
        {"fire_pooled/4", fn -> {:ok, true, _} = Munition.fire_pooled(name, "check", [1200, "DE"]) end}
      ]

      turn = fn size ->
        Enum.map(ours, fn {key, fun} -> {key, Timing.sample(size, fun)} end) ++
          Enum.map(instruments, fn instrument -> {instrument, raw_fire(port, instrument, size)} end)
      end

      _warm = turn.(@warmup)

      calls =
        1..div(@samples, @chunk)
        |> Enum.flat_map(fn _ -> turn.(@chunk) end)
        |> Enum.group_by(&elem(&1, 0), &elem(&1, 1))
        |> Map.new(fn {key, chunks} -> {key, chunks |> List.flatten() |> Enum.sort()} end)

      {calls, raw_lines ++ close_raw(port)}
    after
      Process.unlink(pool)
      GenServer.stop(pool)
    end
  end

  # @in_flight calls held inside `log` at once: what the process holds for
  # them beyond what it held with none in flight, per call.
  defp in_flight(module) do
    round = fn measure? ->
      parent = self()

      log =
        {@host, "log", :wit, :plugin_log,
         fn _ctx, _message ->
           send(parent, {:in_log, self()})

           receive do
             :release -> :ok
           end
         end}

      opts = opts(host_functions: [log], timeout: 300_000)
      tasks = for _ <- 1..@in_flight, do: Task.async(fn -> Munition.fire(module, "tags", ["a b"], opts) end)

      held =
        for _ <- 1..@in_flight,
            do: receive(do: ({:in_log, pid} -> pid), after: (300_000 -> raise "no call reached log"))

      figures = if measure?, do: memory()
      Enum.each(held, &send(&1, :release))
      true = Enum.all?(Task.await_many(tasks, 300_000), &match?({:ok, ["a", "b"], _}, &1))
      figures
    end

    round.(false)
    :erlang.garbage_collect()
    before = memory()
    held = round.(true)
    per = fn key -> div(max(held[key] - before[key], 0), @in_flight) end
    "#{kb(per.(:rss))} RSS (#{kb(per.(:anon))} anonymous; the BEAM's allocators +#{kb(per.(:beam))})"
  end

  defp memory do
    status = File.read!("/proc/self/status")

    field = fn name ->
      [_, kb] = Regex.run(~r/^#{name}:\s+(\d+) kB/m, status)
      String.to_integer(kb) * 1024
    end

    %{rss: field.("VmRSS"), anon: field.("RssAnon"), beam: :erlang.memory(:total)}
  end

  # munition_bench components --serve: its figures up to `ready` (compile
  # and load times), and the instruments it can fire.
  defp open_raw(bench, path) do
    args =
      ~w(components --wasm #{path} --call check --arg 1200 --arg DE --samples #{@samples}) ++
        ~w(--threads #{@callers} --throughput-ms #{@throughput_ms} --loads #{@loads}) ++
        ["--hold", "tags", "--hold-arg", "a b", "--in-flight", "#{@in_flight}", "--serve"]

    port =
      Port.open({:spawn_executable, bench}, [:binary, :exit_status, {:line, 1 <<< 20}, args: args, cd: @root])

    {lines, ["ready" | instruments]} =
      Enum.reduce_while(Stream.repeatedly(fn -> raw_line(port) end), [], fn
        {:exit, status}, lines ->
          raise "munition_bench components exited with #{status}:\n#{Enum.join(Enum.reverse(lines), "\n")}"

        line, lines ->
          case String.split(line) do
            ["ready" | _] = ready -> {:halt, {Enum.reverse(lines), ready}}
            _ -> {:cont, [line | lines]}
          end
      end)

    {port, lines, instruments}
  end

  defp raw_fire(port, instrument, n) do
    Port.command(port, "fire #{instrument} #{n}\n")
    ["times" | times] = String.split(raw_line(port))
    Enum.map(times, &String.to_integer/1)
  end

  # `done`, then the batch figures until it exits.
  defp close_raw(port) do
    Port.command(port, "done\n")
    close_raw(port, [])
  end

  defp close_raw(port, lines) do
    case raw_line(port) do
      {:exit, 0} -> Enum.reverse(lines)
      {:exit, status} -> raise "munition_bench components exited with #{status}:\n#{Enum.join(lines, "\n")}"
      line -> close_raw(port, [line | lines])
    end
  end

  defp raw_line(port, acc \\ "") do
    receive do
      {^port, {:data, {:eol, chunk}}} -> acc <> chunk
      {^port, {:data, {:noeol, chunk}}} -> raw_line(port, acc <> chunk)
      {^port, {:exit_status, status}} -> {:exit, status}
    after
      600_000 -> raise "munition_bench components said nothing for 10 minutes"
    end
  end

  # `name key=value ...` lines of munition_bench components, by
  # {name, instrument or engine}; values are integers.
  defp parse(lines) do
    for line <- lines, not String.starts_with?(line, "#"), into: %{} do
      [name | pairs] = String.split(line)
      fields = Map.new(pairs, &List.to_tuple(String.split(&1, "=", parts: 2)))

      {kind, fields} =
        case Map.pop(fields, "instrument") do
          {nil, fields} -> Map.pop(fields, "engine")
          popped -> popped
        end

      {{name, kind}, Map.new(fields, fn {key, value} -> {key, String.to_integer(value)} end)}
    end
  end

  defp target(%{target: nil}, _median, _default), do: :ok

  defp target(plugin, median, default) do
    ratio = median / default

    IO.puts(
      "  target (issue 20: within 1.2x of raw Wasmtime, #{time(plugin.target)} on its machine): " <>
        "#{:erlang.float_to_binary(ratio, decimals: 2)}x of raw default here, " <>
        if(ratio <= 1.2, do: "met", else: "missed")
    )
  end

  defp figure(sorted) when is_list(sorted),
    do: {length(sorted), Timing.percentile(sorted, 0.5), Timing.percentile(sorted, 0.99)}

  defp figure(%{"n" => n, "median_ns" => median, "p99_ns" => p99}), do: {n, median, p99}

  defp header, do: Enum.map_join(["n", "median", "p99", "x default", "x munition", "calls/s"], &pad/1)

  defp row(label, {n, median, p99}, default, munition, rate \\ nil) do
    IO.puts(
      String.pad_trailing(label, @label) <>
        Enum.map_join(
          [
            Integer.to_string(n),
            time(median),
            time(p99),
            ratio(median, default),
            ratio(median, munition),
            if(rate, do: Integer.to_string(round(rate)), else: "")
          ],
          &pad/1
        )
    )
  end

  defp ratio(_ns, nil), do: ""
  defp ratio(ns, base), do: :erlang.float_to_binary(ns / Timing.percentile(base, 0.5), decimals: 2) <> "x"

  defp time(ns) when ns >= 1_000_000, do: "#{:erlang.float_to_binary(ns / 1_000_000, decimals: 2)} ms"
  defp time(ns) when ns >= 10_000, do: "#{round(ns / 1000)} µs"
  defp time(ns), do: "#{:erlang.float_to_binary(ns / 1000, decimals: 1)} µs"

  defp seconds(ns), do: "#{:erlang.float_to_binary(ns / 1.0e9, decimals: 1)} s"
  defp kb(bytes), do: "#{round(bytes / 1024)} KiB"
  defp pad(text), do: String.pad_leading(text, 11)
end

load = fn -> File.read!("/proc/loadavg") |> String.split() |> Enum.take(3) |> Enum.join(" ") end

IO.puts(
  "bench/components.exs: #{DateTime.utc_now() |> DateTime.truncate(:second)}, " <>
    "#{System.schedulers_online()} schedulers, load average #{load.()}"
)

Bench.Components.run()
IO.puts("\nload average at the end: #{load.()}")

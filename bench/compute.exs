# Benchmark of guest code (not a test): what a guest's own work costs through
# Munition next to the raw engines doing the same work, in one run.
#
#     MIX_ENV=test mix run bench/compute.exs     (`make bench` runs it too)
#
# Guests (each a fresh instance per call, compiled beforehand on both sides):
#
#   * a tight loop of 50 M turns (WAT: `spin(n)`);
#   * QuickJS-ng starting and building a 5,000-row index, then one lookup
#     (_build/guests/interpreters/quickjs_reactor.wasm, `eval(source)`: real
#     code, mostly an interpreter's start-up);
#   * FNV-1a over 1 MiB in C (_build/guests/c/hash.wasm, freestanding).
#
# The raw side is native/munition_bench's `compute` mode (src/compute.rs): the
# same engines and versions, a fresh store and instance per call, with each
# instrumentation the engine can be built with (Wasmtime: none, fuel, epochs,
# fuel + epochs, fuel and fuel + epochs on a fiber, fuel + epochs on a fiber
# yielding every 100,000 units of fuel (Munition's configuration before fuel
# became its one instrument), and "munition" = fuel alone on a fiber yielding
# every 100,000 units of fuel and reading the clock there, Munition's
# configuration; Wasmi: none, fuel).
#
# Columns: median and p99 of one call, the fuel it consumed, and the median
# over raw Wasmtime with the instrumentation Munition asks of it, fuel
# ("x same"), and with none at all ("x none"); Wasmi's rows divide by
# raw Wasmi with fuel and without. Raw "munition" shows what Munition's way of
# running guests (a fiber, yielding for its slices) costs by itself.

Code.require_file("support/timing.exs", __DIR__)
Code.require_file("support/raw_wasmtime.exs", __DIR__)

defmodule Bench.Compute do
  alias Munition.Bench.{RawWasmtime, Timing}

  @root Path.expand("..", __DIR__)
  @fuel 1_000_000_000_000
  @label 34

  def guests do
    loop = ~s{(module (func (export "spin") (param $n i32) (result i32) (local $i i32)
      (loop $turn
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $turn (i32.lt_u (local.get $i) (local.get $n))))
      (local.get $i)))}

    index = """
    const countries = ["DE", "FR", "US", "JP"];
    const rows = [];
    for (let i = 0; i < 5000; i++) rows.push({id: i, country: countries[i % 4], limit: (i * 37) % 1000});
    const index = new Map();
    for (const row of rows) {
      const key = row.country + ":" + row.limit;
      if (!index.has(key)) index.set(key, []);
      index.get(key).push(row.id);
    }
    String(index.get("DE:0").length)
    """

    mib = :binary.list_to_bin(for i <- 0..(1_048_576 - 1), do: rem(i, 256))

    [
      %{
        label: "tight loop, 50 M turns",
        wasm: loop,
        function: "spin",
        args: [50_000_000],
        raw: ["--i32", "50000000"],
        opts: [],
        samples: 10
      },
      %{
        label: "QuickJS: start, 5,000-row index",
        wasm: guest!("interpreters/quickjs_reactor"),
        function: "eval",
        args: [index],
        raw: ["--binary-file", RawWasmtime.input_file!("index.js", index)],
        opts: [result: :binary, capabilities: [:wasi]],
        samples: 10
      },
      %{
        label: "C: FNV-1a of 1 MiB",
        wasm: guest!("c/hash"),
        function: "fnv1a",
        args: [mib],
        raw: ["--binary-len", "1048576"],
        opts: [],
        samples: 20
      }
    ]
  end

  def run do
    bench = RawWasmtime.build!()
    IO.puts(String.pad_trailing("", @label) <> Enum.map_join(~w(median p99 fuel x\ same x\ none), &pad/1))

    for guest <- guests() do
      IO.puts("\n" <> guest.label)
      raw = raw(bench, guest)

      for {engine, runtime, same, none} <- [
            {"wasmtime", Munition.Runtime.Wasmtime, "fuel", "none"},
            {"wasmi", Munition.Runtime.Wasmi, "fuel", "none"}
          ] do
        case munition(guest, runtime) do
          {:ok, figure} ->
            row("  Munition fire/4, #{engine}", figure, raw[{engine, same}], raw[{engine, none}])

          {:error, reason} ->
            IO.puts("  Munition fire/4, #{engine}: #{inspect(reason)}")
        end

        for {{^engine, instrument}, figure} <- Enum.sort(raw) do
          row("  raw #{engine}, #{instrument}", figure, raw[{engine, same}], raw[{engine, none}])
        end
      end
    end
  end

  # {:ok, figure}, or {:error, reason} when Munition cannot run it there.
  defp munition(guest, runtime) do
    {:ok, module} = Munition.compile(guest.wasm, runtime: runtime)
    opts = [fuel: @fuel, timeout: 120_000, runtime: runtime] ++ guest.opts

    fire = fn ->
      {:ok, _, meta} = Munition.fire(module, guest.function, guest.args, opts)
      meta.fuel_consumed
    end

    with {:ok, _, %{fuel_consumed: fuel}} <- Munition.fire(module, guest.function, guest.args, opts) do
      sorted = Timing.sample(guest.samples, fire)
      {:ok, %{median: Timing.percentile(sorted, 0.5), p99: Timing.percentile(sorted, 0.99), fuel: fuel}}
    end
  end

  defp raw(bench, guest) do
    path = RawWasmtime.input_file!("guest.wasm", guest.wasm)
    args = ["compute", "--wasm", path, "--call", guest.function, "--samples", "#{guest.samples}"] ++ guest.raw

    case System.cmd(bench, args, cd: @root) do
      {output, 0} ->
        for line <- String.split(output, "\n", trim: true), into: %{} do
          ["raw_compute" | pairs] = String.split(line)
          fields = Map.new(pairs, &List.to_tuple(String.split(&1, "=", parts: 2)))

          {{fields["engine"], fields["instrument"]},
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

  defp row(label, figure, same, none) do
    IO.puts(
      String.pad_trailing(label, @label) <>
        Enum.map_join(
          [
            ms(figure.median),
            ms(figure.p99),
            if(figure.fuel > 0, do: Integer.to_string(figure.fuel), else: "-"),
            ratio(figure.median, same),
            ratio(figure.median, none)
          ],
          &pad/1
        )
    )
  end

  defp ms(ns), do: :erlang.float_to_binary(ns / 1_000_000, decimals: 2) <> " ms"
  defp ratio(_, nil), do: "-"
  defp ratio(ns, base), do: :erlang.float_to_binary(ns / base.median, decimals: 2) <> "x"
  defp pad(text), do: String.pad_leading(text, 13)

  defp guest!(name) do
    path = Path.join([@root, "_build/guests", name <> ".wasm"])
    File.exists?(path) || raise "#{path} is not built: run `make examples`"
    File.read!(path)
  end
end

IO.puts(
  "bench/compute.exs: #{DateTime.utc_now() |> DateTime.truncate(:second)}, load #{File.read!("/proc/loadavg") |> String.split() |> hd()}"
)

Bench.Compute.run()

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
# Each guest is measured in ROUNDS rounds (3 unless the environment says),
# each round the raw side then Munition's, seconds apart. A ratio is taken
# within each round, never across rounds, and the median over the rounds
# leaves out a round that a slow stretch of a noisy machine disturbed, where
# one run of each side let it fall on one side of the whole comparison.
#
# Columns: the median of the rounds' medians of one call, the lowest and
# highest of those medians (how much the machine moved), the median of the
# rounds' p99s, the fuel it consumed, and the median over the rounds of the
# call's ratio to raw Wasmtime with the instrumentation Munition asks of it,
# fuel ("x same"), and with none at all ("x none"); Wasmi's rows divide by
# raw Wasmi with fuel and without. Raw "munition" shows what Munition's way of
# running guests (a fiber, yielding for its slices) costs by itself.
#
#     ROUNDS=8 MIX_ENV=test mix run bench/compute.exs

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
    rounds = rounds()
    IO.puts("#{rounds} rounds a guest; the median of the rounds' figures, the range of their medians\n")

    IO.puts(
      String.pad_trailing("", @label) <>
        Enum.map_join(["median", "rounds", "p99", "fuel", "x same", "x none"], &pad/1)
    )

    for guest <- guests() do
      IO.puts("\n" <> guest.label)
      # One map of row => figure a round; a row is {engine, instrument}, or
      # {engine, :munition} for fire/4 (an error when Munition cannot run it).
      measured =
        for _ <- 1..rounds do
          raw = raw(bench, guest)

          for {engine, runtime} <- [
                {"wasmtime", Munition.Runtime.Wasmtime},
                {"wasmi", Munition.Runtime.Wasmi}
              ],
              into: raw,
              do: {{engine, :munition}, munition(guest, runtime)}
        end

      for engine <- ["wasmtime", "wasmi"] do
        # fire/4's row first: an atom sorts before the raw rows' strings.
        for {^engine, instrument} = row <- Enum.sort(Map.keys(hd(measured))) do
          label =
            if instrument == :munition, do: "Munition fire/4, #{engine}", else: "raw #{engine}, #{instrument}"

          figures = Enum.map(measured, & &1[row])

          case Enum.find(figures, &match?({:error, _}, &1)) do
            {:error, reason} ->
              IO.puts("  #{label}: #{inspect(reason)}")

            nil ->
              row(
                label,
                figures,
                Enum.map(measured, & &1[{engine, "fuel"}]),
                Enum.map(measured, & &1[{engine, "none"}])
              )
          end
        end
      end
    end
  end

  # A round's figure of fire/4, or {:error, reason} when Munition cannot run
  # the guest on that engine.
  defp munition(guest, runtime) do
    {:ok, module} = Munition.compile(guest.wasm, runtime: runtime)
    opts = [fuel: @fuel, timeout: 120_000, runtime: runtime] ++ guest.opts

    fire = fn ->
      {:ok, _, meta} = Munition.fire(module, guest.function, guest.args, opts)
      meta.fuel_consumed
    end

    case Munition.fire(module, guest.function, guest.args, opts) do
      {:ok, _, %{fuel_consumed: fuel}} ->
        sorted = Timing.sample(guest.samples, fire)
        %{median: Timing.percentile(sorted, 0.5), p99: Timing.percentile(sorted, 0.99), fuel: fuel}

      {:error, reason} ->
        {:error, reason}
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

  # `figures`, `same` and `none`: one figure a round, in the same order.
  defp row(label, figures, same, none) do
    medians = Enum.map(figures, & &1.median)

    IO.puts(
      String.pad_trailing("  " <> label, @label) <>
        Enum.map_join(
          [
            ms(median(medians)),
            ms(Enum.min(medians), false) <> "-" <> ms(Enum.max(medians), false),
            ms(median(Enum.map(figures, & &1.p99))),
            if(hd(figures).fuel > 0, do: Integer.to_string(hd(figures).fuel), else: "-"),
            ratio(figures, same),
            ratio(figures, none)
          ],
          &pad/1
        )
    )
  end

  defp rounds do
    case Integer.parse(System.get_env("ROUNDS", "3")) do
      {rounds, ""} when rounds > 0 -> rounds
      _ -> raise ArgumentError, "ROUNDS must be a positive integer, got: #{inspect(System.get_env("ROUNDS"))}"
    end
  end

  # The middle value, or the mean of the two middle ones.
  defp median(values) do
    sorted = Enum.sort(values)
    n = length(sorted)

    if rem(n, 2) == 1,
      do: Enum.at(sorted, div(n, 2)),
      else: (Enum.at(sorted, div(n, 2) - 1) + Enum.at(sorted, div(n, 2))) / 2
  end

  defp ms(ns, unit \\ true),
    do: :erlang.float_to_binary(ns / 1_000_000, decimals: 2) <> if(unit, do: " ms", else: "")

  # The median of the rounds' ratios: each round's figure over its own base.
  defp ratio(_, [nil | _]), do: "-"

  defp ratio(figures, bases) do
    ratios = Enum.zip_with(figures, bases, fn figure, base -> figure.median / base.median end)
    :erlang.float_to_binary(median(ratios), decimals: 2) <> "x"
  end

  defp pad(text), do: String.pad_leading(text, 14)

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

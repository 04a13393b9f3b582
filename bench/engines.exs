# The two engines side by side (not a test): what a call costs on
# Munition.Runtime.Wasmtime and on Munition.Runtime.Wasmi, for README's
# "When to choose which".
#
#     MIX_ENV=test mix run bench/engines.exs     (or `make bench`, which runs every script)
#
# Rows, each the median (and p99) of fire/4 on each engine:
#
#   * compile and run once, small: fresh `add` bytes every call (a comment
#     makes each distinct, so the module cache never hits): compile + one call;
#   * compile and run once, large: fresh bytes of a module with 2,000
#     functions (each a small loop), one of them called: the cost of a module
#     used once (both modules are wasm binaries, as plugins arrive);
#   * steady-state call: a compiled %Munition.Module{} of `add`, fired again
#     and again (fresh store and instance every time, as always);
#   * guest compute: a compiled loop of 5,000,000 iterations (i64
#     arithmetic), fired: the speed of the guest's own code.
#
# The load average is printed first: on a busy machine every figure grows.

Code.require_file("support/timing.exs", __DIR__)

defmodule Bench.Engines do
  alias Munition.Bench.Timing

  @engines [Munition.Runtime.Wasmtime, Munition.Runtime.Wasmi]

  # Binary modules, as plugins arrive (WAT would add the same parsing cost
  # to both engines); `tag` goes in a custom section so that every module
  # is distinct and the module cache never hits.
  def add(tag) do
    body = <<0, 0x20, 0, 0x20, 1, 0x6A, 0x0B>>

    module(tag, [<<0x60, 2, 0x7F, 0x7F, 1, 0x7F>>], [0], [{"add", 0}], [body])
  end

  # 2,000 functions `(param i32) (result i32)`, each a loop with a little
  # arithmetic; one of them, f7, is exported and called.
  def large(tag) do
    body = fn i ->
      <<1, 1, 0x7F, 0x02, 0x40, 0x03, 0x40, 0x20, 0, 0x45, 0x0D, 1, 0x20, 1, 0x20, 0, 0x41>> <>
        sleb(i) <>
        <<0x6C, 0x6A, 0x21, 1, 0x20, 0, 0x41, 1, 0x6B, 0x21, 0, 0x0C, 0, 0x0B, 0x0B, 0x20, 1, 0x0B>>
    end

    module(tag, [<<0x60, 1, 0x7F, 1, 0x7F>>], List.duplicate(0, 2_000), [{"f7", 7}], Enum.map(1..2_000, body))
  end

  defp module(tag, types, funcs, exports, bodies) do
    sections = [
      section(1, vec(types)),
      section(3, vec(Enum.map(funcs, &uleb/1))),
      section(7, vec(for {name, index} <- exports, do: name(name) <> <<0>> <> uleb(index))),
      section(10, vec(for body <- bodies, do: uleb(byte_size(body)) <> body)),
      section(0, name("tag") <> "#{tag}")
    ]

    IO.iodata_to_binary([<<0, "asm", 1, 0, 0, 0>> | sections])
  end

  defp section(id, payload), do: <<id>> <> uleb(byte_size(payload)) <> payload
  defp vec(items), do: uleb(length(items)) <> IO.iodata_to_binary(items)
  defp name(text), do: uleb(byte_size(text)) <> text

  defp uleb(n) when n < 0x80, do: <<n>>
  defp uleb(n), do: <<0x80 + Bitwise.band(n, 0x7F)>> <> uleb(Bitwise.bsr(n, 7))

  defp sleb(n) when n >= -64 and n < 64, do: <<Bitwise.band(n, 0x7F)>>
  defp sleb(n), do: <<0x80 + Bitwise.band(n, 0x7F)>> <> sleb(Bitwise.bsr(n, 7))

  @compute ~s{(module (func (export "sum") (param i32) (result i64) (local i64)
    (block (loop (br_if 1 (i32.eqz (local.get 0)))
      (local.set 1 (i64.add (local.get 1) (i64.mul (i64.extend_i32_u (local.get 0)) (i64.const 3))))
      (local.set 0 (i32.sub (local.get 0) (i32.const 1))) (br 0)))
    (local.get 1)))}

  defp unique, do: System.unique_integer([:positive])

  defp ok!({:ok, _, _}), do: :ok
  defp ok!(other), do: raise("unexpected: #{inspect(other)}")

  def rows do
    [
      {"compile and run once, small module", 300,
       fn runtime -> fn -> ok!(Munition.fire(add(unique()), "add", [1, 2], runtime: runtime)) end end},
      {"compile and run once, 2,000 functions", 5,
       fn runtime ->
         fn -> ok!(Munition.fire(large(unique()), "f7", [10], runtime: runtime, timeout: 60_000)) end
       end},
      {"steady-state call (compiled module)", 20_000,
       fn runtime ->
         {:ok, module} = Munition.compile(add("steady"), runtime: runtime)
         fn -> ok!(Munition.fire(module, "add", [1, 2], runtime: runtime)) end
       end},
      {"guest compute: 5,000,000 loop iterations", 7,
       fn runtime ->
         {:ok, module} = Munition.compile(@compute, runtime: runtime)

         fn ->
           ok!(
             Munition.fire(module, "sum", [5_000_000], runtime: runtime, fuel: 1_000_000_000, timeout: 60_000)
           )
         end
       end}
    ]
  end

  defp time(ns) when ns >= 1_000_000, do: "#{Float.round(ns / 1.0e6, 1)} ms"
  defp time(ns), do: "#{Float.round(ns / 1.0e3, 1)} µs"

  def run do
    [load | _] = File.read!("/proc/loadavg") |> String.split()
    cores = System.schedulers_online()
    IO.puts("engines: load average #{load} on #{cores} cores (1-minute), median / p99 of fire/4\n")

    IO.puts(
      String.pad_trailing("", 44) <>
        Enum.map_join(["Wasmtime", "p99", "Wasmi", "p99", "Wasmi/Wasmtime"], &String.pad_leading(&1, 16))
    )

    for {label, n, make} <- rows() do
      figures =
        for runtime <- @engines do
          fun = make.(runtime)
          sample = Timing.sample(n, fun, min(n, 20))
          {Timing.percentile(sample, 0.5), Timing.percentile(sample, 0.99)}
        end

      [{wt, wt99}, {wi, wi99}] = figures
      ratio = "#{Float.round(wi / wt, 2)}x"

      IO.puts(
        String.pad_trailing(label, 44) <>
          Enum.map_join([time(wt), time(wt99), time(wi), time(wi99), ratio], &String.pad_leading(&1, 16))
      )
    end
  end
end

Bench.Engines.run()

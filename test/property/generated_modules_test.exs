defmodule Munition.Property.GeneratedModulesTest do
  # Not async: the instance count must come back to what it was before, which
  # only holds when no other test is firing guests at the same time.
  use ExUnit.Case, async: false

  alias Munition.Test.{Fuzz, Smith}

  # Thousands of valid modules from wasm-smith (native/munition_smith), every
  # exported function fired with arguments of its types, small fuel and a
  # short deadline: each call must end in an outcome Munition documents (see
  # Smith.check_module/3), none may hang, and no instance may be left behind;
  # on Wasmtime, on Wasmi, and on both compared (Smith.compare_module/2).
  # `make fuzz` runs the same with a random seed and many more modules.

  @seed Fuzz.seed(20_250_101)
  @modules Fuzz.count(3_000, 100_000)
  # The same generated modules on Wasmi, and on both engines compared.
  @engine_modules Fuzz.count(1_000, 30_000)
  # Generated and checked a batch at a time, so a fuzz run never holds more
  # than one batch of files.
  @batch 1_000
  # Each call gets a short deadline (50 ms) and small fuel (see
  # Smith.fire_opts/1). A module has at most a few dozen exports: one
  # still unanswered after this long is a hang, and is named as one.
  @hang_after 60_000

  @moduletag timeout: if(Fuzz.fuzz?(), do: :infinity, else: 600_000)

  test "every export of every generated module ends in a documented outcome" do
    baseline = Munition.Runtime.Wasmtime.live_count()
    run("generated modules", @modules, &Smith.check_module/2)

    # Every call's store was cleaned up, and the VM still runs guests.
    assert Munition.Runtime.Wasmtime.live_count() == baseline
    assert {:ok, 3, _} = Munition.fire(~s{(module (func (export "f") (result i32) i32.const 3))}, "f", [])
  end

  test "on Wasmi too" do
    baseline = Munition.Runtime.Wasmi.live_count()
    run("generated modules on Wasmi", @engine_modules, &Smith.check_module(&1, &2, Munition.Runtime.Wasmi))
    assert Munition.Runtime.Wasmi.live_count() == baseline
  end

  test "Wasmtime and Wasmi agree on every value and trap" do
    run("generated modules on both engines", @engine_modules, &Smith.compare_module/2)
  end

  # Generates `count` modules a batch at a time, checks each with `check`
  # (`{:ok, tally}` or `{:error, what}`), prints the tally and fails naming
  # every failed module.
  defp run(label, count, check) do
    smith = Smith.build!()

    tmp_dir = Munition.Tmp.path("generated")

    on_exit(fn -> File.rm_rf!(tmp_dir) end)

    {tally, failures} =
      0
      |> Stream.iterate(&(&1 + @batch))
      |> Stream.take_while(&(&1 < count))
      |> Enum.reduce({%{}, []}, fn first, {tally, failures} ->
        dir = Path.join(tmp_dir, "batch-#{first}")
        modules = Smith.generate!(smith, @seed, min(@batch, count - first), dir, first)
        result = check_batch(modules, check, tally, failures)
        File.rm_rf!(dir)
        result
      end)

    failures = Enum.reverse(failures)

    IO.puts(
      "\n#{label}: seed #{@seed}, #{tally[:modules] || 0} modules checked, #{length(failures)} failed, #{tally[:fired] || 0} exports fired, " <>
        "outcomes #{inspect(Map.drop(tally, [:modules, :fired]))}"
    )

    if failures != [] do
      flunk("""
      #{length(failures)} generated module(s) failed (seed #{@seed}):

      #{Enum.map_join(failures, "\n", &describe/1)}

      Regenerate one with: target/release/munition_smith #{@seed} 1 DIR INDEX
      """)
    end
  end

  defp check_batch(modules, check, tally, failures) do
    modules
    |> Task.async_stream(
      fn {index, path} ->
        wasm = File.read!(path)
        {index, wasm, check.(wasm, index)}
      end,
      max_concurrency: min(2, System.schedulers_online()),
      timeout: @hang_after,
      on_timeout: :kill_task,
      zip_input_on_exit: true
    )
    |> Enum.reduce({tally, failures}, fn
      {:ok, {_index, _wasm, {:ok, counts}}}, {tally, failures} ->
        {tally |> Map.merge(counts, fn _, a, b -> a + b end) |> Map.update(:modules, 1, &(&1 + 1)), failures}

      {:ok, {index, wasm, {:error, what}}}, {tally, failures} ->
        {tally, [keep(index, wasm, what) | failures]}

      {:exit, {{index, path}, reason}}, {tally, failures} ->
        what = if reason == :timeout, do: "no answer after #{@hang_after} ms (a hang)", else: inspect(reason)
        {tally, [keep(index, File.read!(path), what) | failures]}
    end)
  end

  # Under `make fuzz`, a failing module is copied to test/fixtures/fuzz, where
  # fuzz_regressions_test.exs fires it on every run once it is committed.
  defp keep(index, wasm, what) do
    if Fuzz.fuzz?() do
      path = Path.join(Fuzz.fixtures_dir(), "seed-#{@seed}-index-#{index}.wasm")
      File.mkdir_p!(Path.dirname(path))
      File.write!(path, wasm)
      {index, what, path}
    else
      {index, what, nil}
    end
  end

  defp describe({index, what, nil}), do: "  module #{index}: #{what}"

  defp describe({index, what, path}),
    do: "  module #{index}: #{what}\n    kept as #{Path.relative_to_cwd(path)}"
end

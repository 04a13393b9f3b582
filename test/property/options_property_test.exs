defmodule Munition.Property.OptionsPropertyTest do
  # Not async: PropEr keeps its state in the test process and a registered
  # type server, one run at a time.
  use ExUnit.Case, async: false

  alias :proper_types, as: T
  alias Munition.Test.{Fuzz, Prop}

  # fire/4's options: generated keyword lists of valid and invalid values
  # (each key at most once). With only valid values the call runs and answers
  # one of its three tuples; with an invalid one it raises ArgumentError whose
  # message holds the inspected bad value; an unknown key raises
  # ArgumentError naming the key. Known exceptions (bugs, kept below as
  # skipped tests until fixed): a `:dump_dir` that is no path, and options
  # that are not a list.

  @seed Fuzz.seed(104_729)
  @numtests Fuzz.count(1_000, 100_000)
  @moduletag timeout: if(Fuzz.fuzz?(), do: :infinity, else: 120_000)

  @guest ~S"""
  (module
    (memory 1)
    (func (export "f") (param i32) (result i32) local.get 0)
    (func (export "boom") (param i32) (result i32) unreachable))
  """

  # Named for this VM (OS pid): other VMs may run the suite at the same time.
  defp dump_dir, do: Path.join(System.tmp_dir!(), "munition-options-property-dumps-#{System.pid()}")

  setup_all do
    on_exit(fn -> File.rm_rf!(dump_dir()) end)
    :ok
  end

  test "valid options run, invalid ones raise ArgumentError naming the value" do
    Prop.check!("options", @seed, @numtests, fn opts ->
      :proper.quickcheck(
        :proper.forall(T.tuple([T.elements(["f", "boom"]), options()]), fn {function, options} ->
          Prop.holds?(fn -> holds?(function, options) end)
        end),
        opts
      )
    end)
  end

  ## Generators

  @four_gib 4 * 1024 * 1024 * 1024

  # {key, valid values, invalid values}: an invalid value is
  # {value, culprit}, culprit being the term the message must show.
  defp keys do
    [
      {:fuel,
       T.oneof([
         T.integer(1, 1_000_000),
         T.elements([nil, 0x7FFFFFFFFFFFFFFF, :strict, :default, :generous, :auto, :adaptive])
       ]),
       T.oneof([
         bad(T.integer(:inf, 0)),
         bad(
           T.elements([
             0x8000000000000000,
             0xFFFFFFFFFFFFFFFF,
             0x10000000000000000,
             1.5,
             1.0e3,
             "100",
             :bogus,
             :ok,
             [1],
             {1}
           ])
         )
       ])},
      {:timeout, T.oneof([T.integer(1, 86_400_000), T.elements([nil, 86_400_000])]),
       T.oneof([
         bad(T.integer(:inf, 0)),
         bad(T.elements([86_400_001, 0x100000000, 50.0, :infinity, "50", [50]]))
       ])},
      {:max_memory, T.oneof([T.integer(1, @four_gib), T.elements([nil, 65_536, @four_gib])]),
       T.oneof([
         bad(T.integer(:inf, 0)),
         bad(T.elements([@four_gib + 1, 0x10000000000000000, 1.0, :unlimited, "1"]))
       ])},
      {:forensics, T.elements([:full, :minimal, false]),
       bad(T.elements([nil, true, :none, :max, "full", 0]))},
      {:result, T.elements([:values, :binary]), bad(T.elements([nil, :value, :bytes, "values", 1]))},
      {:alloc, T.oneof([T.elements(["alloc", "malloc", ""]), T.binary()]),
       bad(T.elements([nil, :alloc, 1, ~c"alloc", ["alloc"]]))},
      {:dump_dir, T.elements([nil, dump_dir()]), nil},
      {:capabilities, T.elements([[], [:time], [:log, :random], [:basic], [:all], [:abort, :abort]]),
       T.oneof([
         bad(T.elements([nil, :time, "time", %{}, 1])),
         T.bind(T.elements([:bogus, :times, "time", 1, 2.5, nil]), fn bad -> {[:time, bad], bad} end, false)
       ])},
      {:host_functions, T.elements([[]]),
       T.oneof([
         bad(T.elements([nil, :lookup, %{}, 1])),
         T.bind(T.elements([:never_registered, {1, 2}, "lookup", 7]), fn bad -> {[bad], bad} end, false)
       ])},
      {:runtime, T.elements([nil, Munition.Runtime.Wasmtime]),
       bad(T.elements([:no_such_runtime, Enum, String, "wasmtime", 1]))}
    ]
  end

  defp bad(type), do: T.bind(type, fn value -> {value, value} end, false)

  # A keyword list: some keys, each valid or (rarely) invalid, in any order,
  # and now and then an unknown key.
  defp options do
    per_key =
      for {key, valid, invalid} <- keys() do
        choices = [{6, T.bind(valid, &{:valid, key, &1}, false)}, {3, T.exactly(:absent)}]

        choices =
          if invalid,
            do: [{1, T.bind(invalid, fn {v, culprit} -> {:invalid, key, v, culprit} end, false)} | choices],
            else: choices

        T.frequency(choices)
      end

    unknown =
      T.frequency([
        {9, T.exactly([])},
        {1, T.bind(T.elements([:fuels, :deadline, :memory, :caps, :timeout_ms]), &[{:unknown, &1}], false)}
      ])

    T.bind(
      T.tuple([T.fixed_list(per_key), unknown, T.list(T.integer())]),
      fn {entries, unknown, order} -> shuffle(Enum.reject(entries, &(&1 == :absent)) ++ unknown, order) end,
      false
    )
  end

  # A deterministic shuffle from generated integers (the test process's
  # :rand is PropEr's).
  defp shuffle(entries, order) do
    keys = Stream.concat(order, Stream.repeatedly(fn -> 0 end))

    entries
    |> Enum.zip(keys)
    |> Enum.with_index()
    |> Enum.sort_by(fn {{_entry, key}, index} -> {key, index} end)
    |> Enum.map(fn {{entry, _key}, _index} -> entry end)
  end

  ## The property

  defp holds?(function, entries) do
    opts =
      Enum.map(entries, fn
        {:valid, key, value} -> {key, value}
        {:invalid, key, value, _culprit} -> {key, value}
        {:unknown, key} -> {key, 1}
      end)

    culprits =
      for entry <- entries, match?({:invalid, _, _, _}, entry) or match?({:unknown, _}, entry) do
        case entry do
          {:invalid, _key, _value, culprit} -> inspect(culprit)
          {:unknown, key} -> inspect(key)
        end
      end

    fire = fn -> Munition.fire(@guest, function, [7], opts) end

    if culprits == [] do
      case Prop.note(fire.()) do
        {:ok, 7, %{}} ->
          function == "f"

        {:crash, :trap, dump} ->
          function == "boom" and (dump == nil or dump.trap == :unreachable)

        # Small budgets run out; a deadline of a few ms can pass on a busy
        # machine (seen with timeout: 1 under make fuzz).
        {:crash, reason, _dump} when reason in [:fuel_exhausted, :timeout] ->
          true

        # The deadline covers compiling too: with timeout: 1 the first call
        # may be {:error, {:timeout, _}}.
        {:error, {kind, message}} ->
          kind in [:bad_result, :memory_limit, :overloaded, :timeout] and is_binary(message)

        _ ->
          false
      end
    else
      try do
        fire.()
        false
      rescue
        e in ArgumentError ->
          message = Exception.message(e)
          Enum.any?(culprits, &String.contains?(message, &1))
      end
    end
  end

  ## Bugs the properties found, kept as regression tests.

  test "a :dump_dir that is no path raises ArgumentError naming it" do
    for bad <- [123, :somewhere, {:dir}] do
      error = assert_raise ArgumentError, fn -> Munition.fire(@guest, "boom", [7], dump_dir: bad) end
      assert Exception.message(error) =~ inspect(bad)
    end
  end

  test "options that are not a keyword list raise ArgumentError naming them" do
    for bad <- [%{fuel: 1}, :fuel, [{:fuel, 1} | :tail]] do
      error = assert_raise ArgumentError, fn -> Munition.fire(@guest, "f", [7], bad) end
      assert Exception.message(error) =~ inspect(bad)
    end
  end
end

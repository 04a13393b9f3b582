defmodule Munition.Property.ReplayPropertyTest do
  # Not async: PropEr keeps its state in the test process.
  use ExUnit.Case, async: false

  import Bitwise

  alias :proper_types, as: T
  alias Munition.Forensics.Dump
  alias Munition.Test.{Fuzz, Prop}

  # Generated guests whose imports are answered at random replay to
  # identical dumps (Munition.replay/3). Each guest imports Elixir host
  # functions env.h0..h3 and Munition's get_random, random_bytes and log, in
  # a generated order (so import indexes differ), and runs a generated
  # sequence of steps: host calls whose results go into an accumulator,
  # arithmetic, stores, host functions and random_bytes writing into memory,
  # log lines, small loops; then it ends in a generated way (unreachable, a
  # division by zero, an access out of bounds, running out of fuel). Fired,
  # then replayed: same reason, trap, message, fuel, globals, memory and log,
  # and no host function is called again. Stopped half-way (`until:`), the
  # replay stops, saying it consumed no more than asked, or replays to the
  # crash when there is no point to stop at before it. On both engines.

  @seed Fuzz.seed(22_022)
  @numtests Fuzz.count(400, 5_000)
  @moduletag timeout: if(Fuzz.fuzz?(), do: :infinity, else: 120_000)

  @wasmi Munition.Runtime.Wasmi

  # name, params, results, and whether it writes 8 bytes at its first
  # parameter (an i32 address).
  @hosts [
    {"h0", [:i32], [:i32], false},
    {"h1", [:i64], [:i64], false},
    {"h2", [:i32, :i64], [:i64], true},
    {"h3", [:i32], [], true}
  ]
  @builtins [
    {"get_random", "(func $get_random (result i64))"},
    {"random_bytes", "(func $random_bytes (param i32 i32))"},
    {"log", "(func $log (param i32 i32 i32))"}
  ]

  test "generated guests answered at random replay to identical dumps" do
    counter = :counters.new(1, [])
    host_functions = Enum.map(@hosts, &host_function(&1, counter))

    Prop.check!("replay", @seed, @numtests, fn opts ->
      :proper.quickcheck(
        :proper.forall(guest(), fn {runtime, order, steps, ending, fuel} ->
          Prop.holds?(fn -> replays?(runtime, order, steps, ending, fuel, host_functions, counter) end)
        end),
        opts
      )
    end)
  end

  defp replays?(runtime, order, steps, ending, fuel, host_functions, counter) do
    wat = wat(order, steps, ending)

    opts = [
      runtime: runtime,
      fuel: fuel,
      host_functions: host_functions,
      capabilities: [:dice, :random, :log]
    ]

    {:crash, reason, dump} = Prop.note(Munition.fire(wat, "run", [], opts))
    calls = :counters.get(counter, 1)
    Prop.note(wat)
    {:crash, ^reason, replayed} = Prop.note(Munition.replay(dump, wat))

    same? =
      Enum.all?(
        [:reason, :trap, :message, :fuel_consumed, :globals, :log, :backtrace],
        &(Map.fetch!(replayed, &1) == Map.fetch!(dump, &1))
      ) and Dump.memories_bytes(replayed) == Dump.memories_bytes(dump)

    # Half-way: stopped, no later than asked, every memory as it was then.
    until = div(dump.fuel_consumed, 2)

    stopped? =
      case Munition.replay(dump, wat, until: until) do
        {:stopped, stopped} ->
          stopped.fuel_consumed <= until

        # No point to stop at before the crash (a crash at fuel 0, or no
        # function entry or loop between half-way and the crash, where
        # Wasmtime checks fuel): the crash.
        {:crash, ^reason, crashed} ->
          crashed.fuel_consumed == dump.fuel_consumed and
            Dump.memories_bytes(crashed) == Dump.memories_bytes(dump)

        other ->
          Prop.note({:until, until, other}) && false
      end

    same? and stopped? and :counters.get(counter, 1) == calls
  end

  defp host_function({name, params, results, writes?}, counter) do
    {"env", name, {params, results}, :dice,
     fn ctx, args ->
       # Arity: context and one argument per parameter (see below).
       :counters.add(counter, 1, 1)
       if writes?, do: :ok = Munition.Host.Context.write(ctx, hd(args), :crypto.strong_rand_bytes(8))

       case results do
         [] -> nil
         [:i32] -> :binary.decode_unsigned(:crypto.strong_rand_bytes(4)) - 0x8000_0000
         [:i64] -> :binary.decode_unsigned(:crypto.strong_rand_bytes(8)) - 0x8000_0000_0000_0000
       end
     end}
    |> with_arity(length(params))
  end

  # The host function's fun takes its arguments one by one.
  defp with_arity({m, n, sig, cap, fun}, 1), do: {m, n, sig, cap, fn ctx, a -> fun.(ctx, [a]) end}
  defp with_arity({m, n, sig, cap, fun}, 2), do: {m, n, sig, cap, fn ctx, a, b -> fun.(ctx, [a, b]) end}

  ## Generators

  defp guest do
    T.bind(
      T.tuple([
        T.elements([Munition.Runtime.Wasmtime, @wasmi]),
        # The order of the seven imports.
        T.vector(7, T.integer(0, 1000)),
        T.list(step()),
        T.elements([:unreachable, :div_zero, :out_of_bounds, :spin]),
        T.elements([5_000, 100_000, 10_000_000])
      ]),
      fn {runtime, keys, steps, ending, fuel} ->
        imports = Enum.map(@hosts, &{:host, &1}) ++ Enum.map(@builtins, &{:builtin, &1})
        order = imports |> Enum.zip(keys) |> Enum.sort_by(&elem(&1, 1)) |> Enum.map(&elem(&1, 0))
        {runtime, order, steps, ending, fuel}
      end,
      false
    )
  end

  defp step do
    address = T.integer(0, 65_528)

    T.frequency([
      {4, T.tuple([T.exactly(:host), T.integer(0, 3), address])},
      {3, T.exactly(:get_random)},
      {2, T.tuple([T.exactly(:random_bytes), address, T.integer(0, 64)])},
      {1, T.tuple([T.exactly(:log), T.integer(0, 3), address, T.integer(0, 32)])},
      {3, T.tuple([T.elements([:add, :mul, :xor, :rotl]), T.integer(-(1 <<< 40), 1 <<< 40)])},
      {3, T.tuple([T.exactly(:store), address])},
      {1, T.tuple([T.exactly(:load), address])},
      {1, T.tuple([T.exactly(:loop), T.integer(1, 500)])}
    ])
  end

  ## The guest's text

  defp wat(order, steps, ending) do
    imports =
      Enum.map_join(order, "\n", fn
        {:host, {name, params, results, _}} ->
          params = if params == [], do: "", else: "(param #{Enum.join(params, " ")})"
          results = if results == [], do: "", else: "(result #{Enum.join(results, " ")})"
          ~s{(import "env" "#{name}" (func $#{name} #{params} #{results}))}

        {:builtin, {name, func}} ->
          ~s{(import "munition" "#{name}" #{func})}
      end)

    """
    (module
      #{imports}
      (memory (export "memory") 1)
      (global $acc (export "acc") (mut i64) (i64.const 0))
      (global $n (mut i32) (i32.const 0))
      (func (export "run") (local $i i32)
        #{Enum.map_join(steps, "\n", &step_wat/1)}
        #{ending_wat(ending)}))
    """
  end

  defp mix(value), do: "(global.set $acc (i64.add (i64.rotl (global.get $acc) (i64.const 7)) #{value}))"

  defp acc32, do: "(i32.wrap_i64 (global.get $acc))"

  defp step_wat({:host, 0, _address}), do: mix("(i64.extend_i32_s (call $h0 #{acc32()}))")
  defp step_wat({:host, 1, _address}), do: mix("(call $h1 (global.get $acc))")

  defp step_wat({:host, 2, address}),
    do: mix("(call $h2 (i32.const #{address}) (global.get $acc))")

  defp step_wat({:host, 3, address}),
    do: "(call $h3 (i32.const #{address})) #{mix("(i64.load (i32.const #{address}))")}"

  defp step_wat(:get_random), do: mix("(call $get_random)")

  defp step_wat({:random_bytes, address, len}),
    do: "(call $random_bytes (i32.const #{address}) (i32.const #{min(len, 65_536 - address)}))"

  defp step_wat({:log, level, address, len}),
    do: "(call $log (i32.const #{level}) (i32.const #{address}) (i32.const #{min(len, 65_536 - address)}))"

  defp step_wat({op, k}) when op in [:add, :mul, :xor, :rotl],
    do: "(global.set $acc (i64.#{op} (global.get $acc) (i64.const #{k})))"

  defp step_wat({:store, address}), do: "(i64.store (i32.const #{address}) (global.get $acc))"
  defp step_wat({:load, address}), do: mix("(i64.load (i32.const #{address}))")

  defp step_wat({:loop, n}) do
    """
    (local.set $i (i32.const 0))
    (loop $l
      (i32.store (i32.and (i32.mul (local.get $i) (i32.const 8)) (i32.const 0xFFF8)) #{acc32()})
      (global.set $acc (i64.add (global.get $acc) (i64.const 1)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const #{n}))))
    """
  end

  defp ending_wat(:unreachable), do: "unreachable"
  defp ending_wat(:div_zero), do: "(drop (i64.div_s (global.get $acc) (i64.const 0)))"
  defp ending_wat(:out_of_bounds), do: "(drop (i64.load (i32.const 65530)))"

  defp ending_wat(:spin),
    do: "(loop $forever (global.set $n (i32.add (global.get $n) (i32.const 1))) (br $forever))"
end

defmodule Munition.Property.ArgsPropertyTest do
  # Not async: PropEr keeps its state in the test process and a registered
  # type server, one run at a time.
  use ExUnit.Case, async: false

  alias :proper_types, as: T
  alias Munition.Test.{Fuzz, Prop}

  # Argument conversion at every type boundary. Identity exports of each
  # parameter type get integers and floats around the bounds (and far past
  # them), NaN and the infinities as atoms, floats for integers, integers for
  # floats, binaries and terms that are no argument at all. Each either comes
  # back exactly as wasm sees it (an i32 or i64 comes back signed, an f32
  # rounded to single precision) or is `{:error, {:bad_args, _}}`; a term
  # that is no argument raises ArgumentError naming it. Never a crash.

  @seed Fuzz.seed(7_919)
  @numtests Fuzz.count(2_000, 200_000)
  @moduletag timeout: if(Fuzz.fuzz?(), do: :infinity, else: 120_000)

  @identity ~S"""
  (module
    (func (export "i32") (param i32) (result i32) local.get 0)
    (func (export "i64") (param i64) (result i64) local.get 0)
    (func (export "f32") (param f32) (result f32) local.get 0)
    (func (export "f64") (param f64) (result f64) local.get 0)
    (func (export "all") (param i32 i64 f32 f64) (result i32 i64 f32 f64)
      local.get 0 local.get 1 local.get 2 local.get 3))
  """

  @types [:i32, :i64, :f32, :f64]
  @specials [:nan, :infinity, :neg_infinity]

  setup_all do
    {:ok, module} = Munition.compile(@identity)
    %{module: module}
  end

  test "one argument of each type: exact round trip or bad_args", %{module: module} do
    Prop.check!("one argument", @seed, @numtests, fn opts ->
      :proper.quickcheck(
        :proper.forall(T.tuple([T.elements(@types), arg()]), fn {type, value} ->
          Prop.holds?(fn -> one_argument_holds?(module, type, value) end)
        end),
        opts
      )
    end)
  end

  test "all four types at once, in argument lists of any length", %{module: module} do
    Prop.check!("four arguments", @seed, div(@numtests, 2), fn opts ->
      :proper.quickcheck(
        :proper.forall(args(), fn args -> Prop.holds?(fn -> all_arguments_hold?(module, args) end) end),
        opts
      )
    end)
  end

  test "an improper list of arguments raises ArgumentError naming it", %{module: module} do
    error = assert_raise ArgumentError, fn -> Munition.fire(module, "i32", [1 | 2]) end
    assert Exception.message(error) =~ inspect([1 | 2])
  end

  ## Generators

  # -2^31-1, -2^31, 2^31-1, 2^32-1, 2^32, -2^63-1, -2^63, 2^63-1, 2^64-1, 2^64.
  @bounds [
    0,
    -0x80000001,
    -0x80000000,
    0x7FFFFFFF,
    0x80000000,
    0xFFFFFFFF,
    0x100000000,
    -0x8000000000000001,
    -0x8000000000000000,
    0x7FFFFFFFFFFFFFFF,
    0x8000000000000000,
    0xFFFFFFFFFFFFFFFF,
    0x10000000000000000
  ]

  @float_edges [
    0.0,
    -0.0,
    1.0,
    -1.0,
    0.1,
    # f32: largest, just past it (rounds to the largest), far past it (infinity)
    3.4028234663852886e38,
    3.4028235677973362e38,
    3.4028235677973366e38,
    -3.4028235677973366e38,
    1.0e39,
    -1.0e39,
    # f32: smallest normal, smallest subnormal, half of it (rounds to zero)
    1.1754943508222875e-38,
    1.401298464324817e-45,
    7.006492321624085e-46,
    # f64: largest, smallest normal, smallest subnormal
    1.7976931348623157e308,
    -1.7976931348623157e308,
    2.2250738585072014e-308,
    5.0e-324,
    # integers as floats, where i32 and i64 end
    2_147_483_647.0,
    4_294_967_296.0,
    9.223372036854776e18,
    1.8446744073709552e19
  ]

  # Integers around each bound, anywhere in 64 bits, and huge.
  defp integer_arg do
    T.frequency([
      {4, T.bind(T.tuple([T.elements(@bounds), T.integer(-3, 3)]), fn {b, d} -> b + d end, false)},
      {2, uniform_64()},
      {2, T.integer()},
      {1,
       T.bind(
         T.tuple([T.integer(65, 400), T.boolean(), T.integer(-3, 3)]),
         fn {bits, neg, d} ->
           v = Bitwise.bsl(1, bits) + d
           if neg, do: -v, else: v
         end,
         false
       )}
    ])
  end

  # Uniform over -2^63..2^64-1 (PropEr leans towards small numbers in wide
  # ranges; it draws 0..65_535 uniformly).
  defp uniform_64 do
    T.bind(
      T.tuple([
        T.integer(0, 65_535),
        T.integer(0, 65_535),
        T.integer(0, 65_535),
        T.integer(0, 65_535),
        T.boolean()
      ]),
      fn {a, b, c, d, high} ->
        <<v::64>> = <<a::16, b::16, c::16, d::16>>
        if high, do: v, else: v - 0x8000000000000000
      end,
      false
    )
  end

  defp float_arg do
    T.frequency([
      {3, T.elements(@float_edges)},
      {2, T.float()},
      {1, T.float(-1.0e-30, 1.0e-30)},
      {1, T.bind(T.integer(-1_000, 1_000), &(&1 * 1.0), false)}
    ])
  end

  # Atoms other than :nan, :infinity and :neg_infinity, and other terms,
  # are no argument: fire/4 raises ArgumentError.
  defp not_an_arg do
    T.elements([:foo, nil, true, false, :NaN, :inf, {1}, [1], %{}, [], 'abc', {:nan}])
  end

  defp arg do
    T.frequency([
      {6, integer_arg()},
      {5, float_arg()},
      {2, T.elements(@specials)},
      {1, T.binary()},
      {1, not_an_arg()}
    ])
  end

  defp args do
    T.frequency([
      {4, T.vector(4, arg())},
      {2,
       T.bind(
         T.tuple([integer_arg(), integer_arg(), T.oneof([float_arg(), T.elements(@specials)]), float_arg()]),
         &Tuple.to_list/1,
         false
       )},
      {1, T.list(arg())}
    ])
  end

  ## Properties

  defp one_argument_holds?(module, type, value) do
    check(fn -> Munition.fire(module, Atom.to_string(type), [value], fuel: 1_000) end, [type], [value])
  end

  defp all_arguments_hold?(module, args) do
    check(fn -> Munition.fire(module, "all", args, fuel: 1_000) end, @types, args)
  end

  # `fire` is a call of an export with parameters `types` and results the
  # same types; `args` what it was given.
  defp check(fire, types, args) do
    case Enum.reject(args, &arg?/1) do
      [] ->
        expect(Prop.note(fire.()), expected(types, args))

      [bad | _] ->
        try do
          fire.()
          false
        rescue
          e in ArgumentError -> String.contains?(Exception.message(e), inspect(bad))
        end
    end
  end

  defp expect({:ok, value, %{}}, {:ok, expected}), do: same?(value, expected)
  defp expect({:error, {:bad_args, message}}, :bad_args), do: is_binary(message)
  defp expect(_result, _expected), do: false

  # Compares as wasm would: -0.0 is not 0.0 for a float.
  defp same?(a, b) when is_list(a) and is_list(b),
    do: length(a) == length(b) and Enum.all?(Enum.zip(a, b), fn {x, y} -> same?(x, y) end)

  defp same?(a, b) when is_float(a) and is_float(b), do: <<a::float-64>> == <<b::float-64>>
  defp same?(a, b), do: a === b

  defp arg?(v), do: is_number(v) or is_binary(v) or v in @specials

  # What fire/4 must answer: the values as the identity export returns them,
  # or :bad_args.
  defp expected(types, args) when length(types) == length(args) do
    Enum.zip(types, args)
    |> Enum.reduce_while([], fn {type, arg}, acc ->
      case convert(type, arg) do
        {:ok, value} -> {:cont, [value | acc]}
        :bad_args -> {:halt, :bad_args}
      end
    end)
    |> case do
      :bad_args -> :bad_args
      [value] -> {:ok, value}
      values -> {:ok, Enum.reverse(values)}
    end
  end

  defp expected(_types, _args), do: :bad_args

  defp convert(:i32, v) when is_integer(v) and v >= -0x80000000 and v <= 0xFFFFFFFF do
    <<signed::signed-32>> = <<v::32>>
    {:ok, signed}
  end

  defp convert(:i64, v) when is_integer(v) and v >= -0x8000000000000000 and v <= 0xFFFFFFFFFFFFFFFF do
    <<signed::signed-64>> = <<v::64>>
    {:ok, signed}
  end

  defp convert(type, v) when type in [:f32, :f64] and v in @specials, do: {:ok, v}
  defp convert(:f64, v) when is_float(v), do: {:ok, v}

  # Rounded to single precision (Erlang rounds as wasm does, to nearest, and
  # writes an infinity past the largest single).
  defp convert(:f32, v) when is_float(v) do
    case <<v::float-32>> do
      <<0x7F800000::32>> -> {:ok, :infinity}
      <<0xFF800000::32>> -> {:ok, :neg_infinity}
      <<single::float-32>> -> {:ok, single}
    end
  end

  defp convert(_type, _v), do: :bad_args
end

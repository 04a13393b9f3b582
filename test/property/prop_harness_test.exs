defmodule Munition.Property.PropHarnessTest do
  # Not async: PropEr keeps its state in the test process and a registered
  # type server, one run at a time.
  use ExUnit.Case, async: false

  alias :proper_types, as: T
  alias Munition.Test.Prop

  # The harness the properties rely on: PropEr 1.2 has no seed option, so
  # Prop.check!/5 seeds the test process's :rand (see test/support/prop.ex);
  # these show that a seed really fixes the cases, and that a failing or
  # raising property fails the test with its counterexample.

  defp cases(seed) do
    Prop.check!("cases", seed, 50, fn opts ->
      :proper.quickcheck(
        :proper.forall(T.tuple([T.integer(), T.binary(), T.float()]), fn c ->
          send(self(), {:case, c})
          true
        end),
        opts
      )
    end)

    collect([])
  end

  defp collect(acc) do
    receive do
      {:case, c} -> collect([c | acc])
    after
      0 -> Enum.reverse(acc)
    end
  end

  test "the same seed generates the same cases, another seed others" do
    first = cases(42)
    assert length(first) == 50
    assert cases(42) == first
    assert cases(43) != first
  end

  test "a failing property fails the test with its shrunk counterexample" do
    error =
      assert_raise ExUnit.AssertionError, fn ->
        Prop.check!("fails", 1, 200, fn opts ->
          :proper.quickcheck(:proper.forall(T.integer(0, 1000), fn n -> n < 500 end), opts)
        end)
      end

    assert error.message =~ "[500]"
  end

  test "a property that raises fails the test, with the exception" do
    error =
      assert_raise ExUnit.AssertionError, fn ->
        Prop.check!("raises", 1, 200, fn opts ->
          :proper.quickcheck(
            :proper.forall(T.integer(0, 1000), fn n ->
              Prop.holds?(fn -> if n >= 500, do: raise(ArgumentError, "too big: #{n}"), else: true end)
            end),
            opts
          )
        end)
      end

    assert error.message =~ "[500]"
    assert error.message =~ "too big: 500"
  end
end

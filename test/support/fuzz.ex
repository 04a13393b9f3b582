defmodule Munition.Test.Fuzz do
  @moduledoc false
  # How big the generated and property tests run, and with which seed.
  #
  # The default suite runs them small, with fixed seeds, so a failure there
  # is reproduced by running the suite again. `make fuzz` sets
  # `MUNITION_FUZZ=1` and `MUNITION_FUZZ_SEED` (a random seed it prints
  # first) and scales every count up; `MUNITION_FUZZ_SCALE` multiplies the
  # counts again (default 1).

  @doc "Whether this run is `make fuzz`'s."
  @spec fuzz?() :: boolean()
  def fuzz?, do: System.get_env("MUNITION_FUZZ") in ["1", "true"]

  @doc """
  The seed of this run: `MUNITION_FUZZ_SEED` under `make fuzz`, `default`
  otherwise. A non-negative integer below 2^63.
  """
  @spec seed(non_neg_integer()) :: non_neg_integer()
  def seed(default) do
    case fuzz?() && System.get_env("MUNITION_FUZZ_SEED") do
      value when is_binary(value) and value != "" ->
        case Integer.parse(value) do
          {seed, ""} when seed >= 0 and seed < 0x8000000000000000 ->
            seed

          _ ->
            raise ArgumentError, "MUNITION_FUZZ_SEED must be an integer in 0..2^63-1, got: #{inspect(value)}"
        end

      _ ->
        default
    end
  end

  @doc "`default` in the default suite, `fuzz` (times `MUNITION_FUZZ_SCALE`) under `make fuzz`."
  @spec count(pos_integer(), pos_integer()) :: pos_integer()
  def count(default, fuzz) do
    if fuzz?(), do: max(1, round(fuzz * scale())), else: default
  end

  defp scale do
    case Float.parse(System.get_env("MUNITION_FUZZ_SCALE", "1")) do
      {scale, ""} when scale > 0 -> scale
      _ -> raise ArgumentError, "MUNITION_FUZZ_SCALE must be a positive number"
    end
  end

  @doc "Where failing generated modules are kept as regression tests."
  @spec fixtures_dir() :: Path.t()
  def fixtures_dir, do: Path.expand("../fixtures/fuzz", __DIR__)
end

defmodule Munition.Fuel.Policy do
  @moduledoc """
  How much fuel a call gets.

  A unit of fuel is roughly one wasm instruction. `Munition.fire/4` takes
  `fuel:` as a positive integer; without it, the call gets `default_fuel/0`
  (`10_000_000` unless `config :munition, default_fuel: n`).
  """

  @default_fuel 10_000_000

  @doc "The default budget for a call."
  @spec default_fuel() :: pos_integer()
  def default_fuel, do: Application.get_env(:munition, :default_fuel, @default_fuel)

  @doc """
  Resolves the `:fuel` option of `Munition.fire/4` to a number of fuel units for
  calling `function` of `module`. Raises `ArgumentError` for a bad value.
  """
  @spec resolve!(term(), Munition.Module.t(), String.t()) :: pos_integer()
  def resolve!(nil, _module, _function), do: default_fuel()
  def resolve!(fuel, _module, _function) when is_integer(fuel) and fuel > 0, do: fuel

  def resolve!(other, _module, _function) do
    raise ArgumentError, "fuel must be a positive integer, got: #{inspect(other)}"
  end
end

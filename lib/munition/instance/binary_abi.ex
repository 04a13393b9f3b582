defmodule Munition.Instance.BinaryABI do
  @moduledoc false
  # Munition's binary ABI: how binaries cross into and out of a guest (see
  # "Binary data" in guides/getting-started.md).
  #
  #   1. The guest exports its memory as `memory` and an allocator
  #      `alloc(len: i32) -> ptr: i32` (another name with the `:alloc` option).
  #   2. Each binary argument is copied into memory the allocator returned and
  #      passed as two `i32`s, pointer then length; numbers pass as they are.
  #   3. With `result: :binary`, the function returns `(ptr: i32, len: i32)`, or
  #      one `i64` with the pointer in the high 32 bits and the length in the
  #      low 32, and Munition reads `[ptr, ptr + len)` back.
  #
  # This module checks the exports' signatures before anything runs and does
  # the arithmetic; the manager drives the guest's allocator and the copies.

  alias Munition.Instance.State

  @doc """
  Checks the binary ABI against the exports' signatures before anything runs:
  `alloc(i32) -> i32` when there are binary arguments, and a `(i32, i32)` or
  `i64` result for `result: :binary`. A missing function is left for the call
  to report as `{:function_not_found, name}`.
  """
  @spec check(State.t()) :: :ok | {:error, {:bad_args | :bad_result, String.t()}}
  def check(%State{module: %{kind: :component}, result: :binary}) do
    {:error, {:bad_result, "result: :binary is for core modules: a component's results are WIT values"}}
  end

  def check(%State{module: %{kind: :component}}), do: :ok

  def check(%State{module: module} = state) do
    # The exports are looked up only when the ABI is in use: most calls pass
    # numbers and want values.
    cond do
      not numbers_only?(state.args) and
          not match?(%{params: [:i32], results: [:i32]}, Munition.Module.export(module, state.alloc)) ->
        {:error,
         {:bad_args,
          "binary arguments need the guest to export #{state.alloc}(len: i32) -> ptr: i32 (see the :alloc option)"}}

      state.result == :binary and not binary_result?(Munition.Module.export(module, state.function)) ->
        {:error,
         {:bad_result,
          "result: :binary needs #{state.function} to return (ptr: i32, len: i32) or one i64 (ptr << 32 | len)"}}

      true ->
        :ok
    end
  end

  # A missing function is reported by the call itself.
  defp binary_result?(nil), do: true
  defp binary_result?(%{results: results}), do: results in [[:i32, :i32], [:i64]]

  @doc """
  Whether `args` are wasm parameters as they are: no binary to copy in.

      iex> Munition.Instance.BinaryABI.numbers_only?([1, 2.5, :nan])
      true
      iex> Munition.Instance.BinaryABI.numbers_only?([1, "text"])
      false
  """
  @spec numbers_only?(list()) :: boolean()
  def numbers_only?([]), do: true
  def numbers_only?([arg | _args]) when is_binary(arg), do: false
  def numbers_only?([_arg | args]), do: numbers_only?(args)

  @doc """
  Lowers `args` to wasm parameters: each binary becomes `ptr, len`, with `ptr`
  from `copy_in.(binary)`, which allocates guest memory and copies the bytes
  there (`{:ok, ptr}`); anything else it returns stops the lowering and is
  returned as is.
  """
  @spec lower(list(), (binary() -> {:ok, integer()} | term())) :: {:ok, [number() | atom()]} | term()
  def lower(args, copy_in) do
    args
    |> Enum.reduce_while({:ok, []}, fn
      arg, {:ok, acc} when is_binary(arg) ->
        case copy_in.(arg) do
          {:ok, ptr} -> {:cont, {:ok, [byte_size(arg), ptr | acc]}}
          other -> {:halt, other}
        end

      arg, {:ok, acc} ->
        {:cont, {:ok, [arg | acc]}}
    end)
    |> case do
      {:ok, params} -> {:ok, Enum.reverse(params)}
      other -> other
    end
  end

  @doc """
  The `{ptr, len}` a binary result names, from the function's results
  (already checked to be `[i32, i32]` or `[i64]`).

      iex> Munition.Instance.BinaryABI.result_range([16, 5])
      {16, 5}
      iex> Munition.Instance.BinaryABI.result_range([0x10_0000_0005])
      {16, 5}
  """
  @spec result_range([integer()]) :: {non_neg_integer(), non_neg_integer()}
  def result_range([ptr, len]), do: {unsigned(ptr), unsigned(len)}

  def result_range([packed]) do
    <<ptr::32, len::32>> = <<packed::64>>
    {ptr, len}
  end

  @doc """
  A guest `i32` read as an unsigned pointer or length: wasm values come back
  signed, so `-16` is `0xFFFF_FFF0`.

      iex> Munition.Instance.BinaryABI.unsigned(-16)
      4294967280
  """
  @spec unsigned(integer()) :: non_neg_integer()
  def unsigned(value) when value < 0, do: value + 0x1_0000_0000
  def unsigned(value), do: value
end

defmodule Munition.Host.ContextTest do
  use ExUnit.Case, async: true

  alias Munition.Host.Context

  # A runtime that answers memory requests at once, the way the guest answers
  # them when resumed: `{:munition_memory, tag, answer}` to the requester.
  defmodule AnsweringRuntime do
    def host_read(:ended, _ptr, _len), do: {:error, {:invalid_state, "the guest call has ended"}}
    def host_read(call, ptr, len), do: answer({:ok, {:read, call, ptr, len}})

    def host_write(:ended, _ptr, _bytes), do: {:error, {:invalid_state, "the guest call has ended"}}
    def host_write(call, ptr, bytes), do: answer({:wrote, call, ptr, bytes})

    defp answer(answer) do
      tag = make_ref()
      send(self(), {:munition_memory, tag, answer})
      {:ok, tag}
    end
  end

  @pointer_guest """
  (module
    (import "env" "peek" (func $peek (param i32 i32) (result i32)))
    (memory (export "memory") 1)
    (data (i32.const 64) "hello guest")
    (global $seen (mut i32) (i32.const 0))
    (func (export "run") (param $ptr i32) (param $len i32) (result i32)
      (global.set $seen (i32.const 1))
      (call $peek (local.get $ptr) (local.get $len))))
  """

  defp context(call \\ :a_call) do
    %Context{call: call, runtime: AnsweringRuntime, function: "peek", fuel_remaining: 42}
  end

  defp peek(fun), do: {"env", "peek", {[:i32, :i32], [:i32]}, :peek, fun}

  describe "with a runtime that answers at once" do
    test "read/3 asks the call's runtime and returns its answer" do
      assert Context.read(context(), 64, 5) == {:ok, {:read, :a_call, 64, 5}}
    end

    test "write/3 asks the call's runtime and returns its answer" do
      assert Context.write(context(), 64, "abc") == {:wrote, :a_call, 64, "abc"}
    end

    test "pointers and lengths are the guest's i32s, read unsigned" do
      assert Context.read(context(), -16, -1) == {:ok, {:read, :a_call, 0xFFFF_FFF0, 0xFFFF_FFFF}}
      assert Context.read(context(), 0xFFFF_FFFF, 0) == {:ok, {:read, :a_call, 0xFFFF_FFFF, 0}}
      assert Context.write(context(), -0x8000_0000, "") == {:wrote, :a_call, 0x8000_0000, ""}
    end

    test "a call that has ended is :call_ended" do
      assert Context.read(context(:ended), 0, 1) == {:error, :call_ended}
      assert Context.write(context(:ended), 0, "x") == {:error, :call_ended}
    end

    test "anything but 32-bit integers and a binary is an ArgumentError" do
      assert_raise ArgumentError, ~r/32-bit integers, got: 4294967296 and 1/, fn ->
        Context.read(context(), 0x1_0000_0000, 1)
      end

      assert_raise ArgumentError, ~r/got: 0 and -2147483649/, fn ->
        Context.read(context(), 0, -0x8000_0001)
      end

      assert_raise ArgumentError, ~r/got: 1.0 and 1/, fn -> Context.read(context(), 1.0, 1) end

      assert_raise ArgumentError, ~r/a 32-bit integer pointer and a binary, got: 0 and :x/, fn ->
        Context.write(context(), 0, :x)
      end

      assert_raise ArgumentError, ~r/got: -2147483649 and "x"/, fn ->
        Context.write(context(), -0x8000_0001, "x")
      end
    end

    test "fuel_remaining/1 is the fuel the guest had left when it called" do
      assert Context.fuel_remaining(context()) == 42
    end
  end

  describe "with a guest" do
    test "a context kept past its call reads nothing: the call has ended" do
      test = self()

      host =
        peek(fn ctx, _ptr, _len ->
          send(test, {:context, ctx})
          0
        end)

      assert {:ok, 0, _} =
               Munition.fire(@pointer_guest, "run", [64, 11], host_functions: [host], capabilities: [:peek])

      assert_receive {:context, ctx}
      assert Context.read(ctx, 64, 11) == {:error, :call_ended}
      assert Context.write(ctx, 64, "x") == {:error, :call_ended}
    end
  end
end

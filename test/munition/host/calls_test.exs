defmodule Munition.Host.CallsTest do
  use ExUnit.Case, async: true

  alias Munition.Forensics.Dump
  alias Munition.Host.{Calls, Context, Functions}
  alias Munition.Instance.State

  # A runtime whose guest is this test. As on the native side, the first reply
  # to a call reaches the guest and wakes the driver the call names; a later
  # one (the driver answering for a process that did reply, and whose DOWN
  # came after) goes nowhere.
  defmodule ReplyingRuntime do
    def host_reply({:fake_call, driver, id, answered}, reply, result_types) do
      if :ets.insert_new(answered, {id}) do
        send(driver, {:replied, reply, result_types})
        send(driver, :munition_wake)
      end

      :ok
    end
  end

  setup do
    Process.put(:answered, :ets.new(:answered, [:public]))
    :ok
  end

  defp state(functions) do
    %State{
      module: nil,
      function: "f",
      args: [],
      runtime: ReplyingRuntime,
      fuel: 1,
      timeout: 1,
      max_memory: 1,
      host_functions: Enum.map(functions, &Functions.new!/1)
    }
  end

  # What the runtime sends the driver when a guest calls host function `index`.
  defp guest_calls(driver \\ self(), index, args, fuel \\ 123) do
    call = {:fake_call, driver, make_ref(), Process.get(:answered)}
    send(driver, {:munition_host_call, call, index, args, fuel})
  end

  describe "serve_until_woken/2" do
    test "runs the function with a context and the arguments, and replies with its result types" do
      test = self()

      functions = [
        {"env", "other", {[], []}, :kv, fn _ctx -> flunk("the wrong function ran") end},
        {"env", "double", {[:i32], [:i64]}, :kv,
         fn ctx, x ->
           send(test, {:context, ctx})
           2 * x
         end}
      ]

      guest_calls(1, [21])
      assert Calls.serve_until_woken(state(functions), 60_000) == :ok
      assert_received {:replied, {:ok, 42}, [:i64]}

      assert_received {:context,
                       %Context{
                         call: {:fake_call, ^test, _id, _answered},
                         runtime: ReplyingRuntime,
                         function: "double",
                         fuel_remaining: 123
                       }}
    end

    test "a function that raises, throws or exits replies with an error" do
      for {fun, message} <- [
            {fn _ctx -> raise "on fire" end, "on fire"},
            {fn _ctx -> throw(:ball) end, "throw: :ball"},
            {fn _ctx -> exit(:gone) end, "exit: :gone"}
          ] do
        guest_calls(0, [])
        assert Calls.serve_until_woken(state([{"env", "f", {[], []}, :kv, fun}]), 60_000) == :ok
        assert_received {:replied, {:error, ^message}, []}
      end
    end

    test "a function whose process ends without replying is answered for" do
      for {fun, reason} <- [
            {fn _ctx -> Process.exit(self(), :kill) end, ":killed"},
            {fn _ctx -> Process.exit(self(), :normal) end, ":normal"}
          ] do
        guest_calls(0, [])
        assert Calls.serve_until_woken(state([{"env", "f", {[], [:i32]}, :kv, fun}]), 60_000) == :ok
        message = "the host function's process ended without replying: #{reason}"
        assert_received {:replied, {:error, ^message}, []}
      end
    end

    test "serves several calls until woken" do
      functions = [{"env", "inc", {[:i32], [:i32]}, :kv, fn _ctx, x -> x + 1 end}]

      for x <- 1..3 do
        guest_calls(0, [x])
        assert Calls.serve_until_woken(state(functions), 60_000) == :ok
        expected = x + 1
        assert_received {:replied, {:ok, ^expected}, [:i32]}
      end
    end

    test "returns when the guest's time is up, woken or not" do
      assert Calls.serve_until_woken(state([]), 0) == :ok
      refute_received _
    end
  end

  describe "stop/0" do
    test "kills the host function still running" do
      test = self()

      functions = [
        {"env", "block", {[], []}, :kv,
         fn _ctx ->
           send(test, {:blocking, self()})
           receive do: (:never -> :ok)
         end}
      ]

      guest_calls(0, [])
      # Nothing wakes this driver: it gives up on the guest's deadline (now).
      assert Calls.serve_until_woken(state(functions), 0) == :ok
      assert_receive {:blocking, pid}
      ref = Process.monitor(pid)
      assert Calls.stop() == :ok
      assert_receive {:DOWN, ^ref, :process, ^pid, :killed}
      # Killed on purpose: no reply is made for it.
      refute_received {:replied, _, _}
      assert Calls.stop() == :ok
    end

    test "is harmless when nothing runs" do
      assert Calls.stop() == :ok
    end
  end

  describe "a host function's process" do
    test "dies with the driver, however the driver ends" do
      test = self()

      functions = [
        {"env", "block", {[], []}, :kv,
         fn _ctx ->
           send(test, {:blocking, self()})
           receive do: (:never -> :ok)
         end}
      ]

      driver = spawn(fn -> Calls.serve_until_woken(state(functions), 60_000) end)
      guest_calls(driver, 0, [])
      assert_receive {:blocking, pid}
      ref = Process.monitor(pid)
      Process.exit(driver, :kill)
      assert_receive {:DOWN, ^ref, :process, ^pid, :killed}
    end
  end

  describe "through fire/4" do
    @guest ~s{(module (import "env" "h" (func $h)) (func (export "f") call $h))}

    defp fire(fun) do
      # The deadline is far: a host error must come from the process's end,
      # not from the guest's time running out.
      Munition.fire(@guest, "f", [],
        host_functions: [{"env", "h", {[], []}, :h, fun}],
        capabilities: [:h],
        timeout: 60_000
      )
    end

    test "a host function whose process dies is a host error at once, not a timeout" do
      assert {:crash, :host_error, %Dump{trap: :host_error, message: message}} =
               fire(fn _ctx -> Process.exit(self(), :kill) end)

      assert message == "h: the host function's process ended without replying: :killed"
    end

    test "a host function whose process exits normally without replying is a host error too" do
      assert {:crash, :host_error, %Dump{message: message}} =
               fire(fn _ctx -> Process.exit(self(), :normal) end)

      assert message == "h: the host function's process ended without replying: :normal"
    end

    test "a host function's process dies with a caller that is killed" do
      test = self()

      caller =
        spawn(fn ->
          fire(fn _ctx ->
            send(test, {:blocking, self()})
            receive do: (:never -> :ok)
          end)
        end)

      assert_receive {:blocking, host}
      # The caller drives the guest itself: no process of its own.
      assert {:links, []} = Process.info(caller, :links)
      host_ref = Process.monitor(host)
      Process.exit(caller, :kill)
      assert_receive {:DOWN, ^host_ref, :process, ^host, :killed}
    end

    test "a caller with a busy mailbox has a driver of its own, and its host function dies with it" do
      test = self()

      caller =
        spawn(fn ->
          for n <- 1..101, do: send(self(), {:queued, n})

          fire(fn _ctx ->
            send(test, {:blocking, self()})
            receive do: (:never -> :ok)
          end)
        end)

      assert_receive {:blocking, host}
      # The driver: the task fire/4 started, linked to the caller.
      assert {:links, [driver]} = Process.info(caller, :links)
      host_ref = Process.monitor(host)
      driver_ref = Process.monitor(driver)
      Process.exit(caller, :kill)
      assert_receive {:DOWN, ^driver_ref, :process, ^driver, :killed}
      assert_receive {:DOWN, ^host_ref, :process, ^host, :killed}
    end
  end
end

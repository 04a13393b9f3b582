defmodule Munition.Instance.StateTest.Recorder do
  @moduledoc false
  # A runtime that runs nothing: it hands the State that fire/4 built (and the
  # process that drives the guest) to the test process that called fire/4,
  # and refuses to instantiate. The rest, built-ins included, is Wasmtime's.
  use Munition.DelegatingRuntime

  @impl true
  def instantiate(module, state) do
    # The caller drives its guest itself, or through a task of its own when
    # there are host functions.
    test = with [caller | _] <- Process.get(:"$callers", [self()]), do: caller
    send(test, {:instantiate, module, state, self()})
    {:error, {:instantiation_failed, "fake"}}
  end
end

defmodule Munition.Instance.StateTest do
  # What fire/4 puts into the State it carries to the runtime.
  use ExUnit.Case, async: true

  alias Munition.Host.Function
  alias Munition.Instance.State
  alias Munition.Instance.StateTest.Recorder

  @plain """
  (module (memory (export "memory") 1)
    (func (export "f") (param i32 i32) (result i32 i32) i32.const 0 i32.const 0)
    (func (export "alloc") (param i32) (result i32) i32.const 0))
  """

  @importing """
  (module
    (import "env" "kv" (func (param i32) (result i32)))
    (import "munition" "get_time_ms" (func (result i64)))
    (func (export "f")))
  """

  # Fires `wat` with the recorder as runtime; returns the State it got and
  # the process that called it.
  def recorded(wat, args, opts \\ []) do
    {:ok, module} = Munition.compile(wat)

    assert Munition.fire(module, "f", args, [runtime: Recorder] ++ opts) ==
             {:error, {:instantiation_failed, "fake"}}

    assert_receive {:instantiate, ^module, %State{module: ^module} = state, driver}
    {state, driver}
  end

  test "the :runtime option runs the call on another runtime, with the defaults" do
    before = System.monotonic_time(:millisecond)
    {state, driver} = recorded(@plain, [1, 2])

    assert %State{
             function: "f",
             args: [1, 2],
             runtime: Recorder,
             fuel: 10_000_000,
             timeout: 5_000,
             max_memory: 67_108_864,
             capabilities: [],
             links: [],
             host_functions: [],
             forensics: :full,
             result: :values,
             alloc: "alloc",
             log_limit: 65_536,
             host_pid: nil,
             started_at: started_at
           } = state

    assert started_at >= before and started_at <= System.monotonic_time(:millisecond)
    # Without host functions the caller drives its guest itself.
    assert driver == self()
  end

  test "the options, checked and resolved" do
    {state, _driver} =
      recorded(@plain, ["bytes", 7],
        fuel: :strict,
        timeout: 777,
        max_memory: 2 * 65_536,
        forensics: :minimal,
        result: :binary,
        alloc: "alloc"
      )

    assert %State{
             args: ["bytes", 7],
             fuel: 1_000_000,
             timeout: 777,
             max_memory: 131_072,
             forensics: :minimal,
             result: :binary,
             alloc: "alloc"
           } = state

    assert {%State{fuel: 1234, forensics: false}, _} = recorded(@plain, [1, 2], fuel: 1234, forensics: false)
    assert {%State{fuel: fuel}, _} = recorded(@plain, [1, 2], fuel: :auto)
    {:ok, module} = Munition.compile(@plain)
    assert fuel == Munition.Fuel.Policy.resolve!(:auto, module, "f")
  end

  test "granted capabilities are expanded" do
    assert {%State{capabilities: capabilities}, _} = recorded(@plain, [1, 2], capabilities: [:basic])
    assert Enum.sort(capabilities) == [:abort, :log, :time]
  end

  test "imports are linked, and the process serving host functions is the one driving the guest" do
    kv = {"env", "kv", {[:i32], [:i32]}, :kv, fn _ctx, key -> key end}
    {state, driver} = recorded(@importing, [], host_functions: [kv], capabilities: [:kv, :time])

    assert state.links == [{:elixir, "env", "kv", 0, [:i32], [:i32]}, {:builtin, "munition", "get_time_ms"}]

    assert [%Function{module: "env", name: "kv", capability: :kv}] = state.host_functions
    assert Enum.sort(state.capabilities) == [:kv, :time]
    assert state.host_pid == driver
  end

  test "the binary ABI is checked before the runtime is asked" do
    {:ok, module} = Munition.compile(@plain)
    assert {:error, {:bad_args, _}} = Munition.fire(module, "f", ["bytes"], runtime: Recorder, alloc: "none")
    refute_received {:instantiate, _, _, _}
  end
end

defmodule Munition.Instance.StateConfigTest do
  # The defaults that come from the application environment: not async.
  use ExUnit.Case, async: false
  import Munition.AppEnv

  alias Munition.Instance.State
  alias Munition.Instance.StateTest.Recorder

  @plain ~s{(module (func (export "f")))}

  test "timeout, max_memory, log_limit and the runtime default to the application environment" do
    # Compiled first: the recorder compiles nothing.
    {:ok, module} = Munition.compile(@plain)
    put_env(:default_timeout, 1_234)
    put_env(:default_max_memory, 65_536)
    put_env(:log_limit, 99)
    put_env(:runtime, Recorder)

    assert Munition.fire(module, "f", []) == {:error, {:instantiation_failed, "fake"}}

    assert_receive {:instantiate, _module,
                    %State{runtime: Recorder, timeout: 1_234, max_memory: 65_536, log_limit: 99}, _driver}
  end
end

defmodule Munition.ReasonTest do
  # Provoking :overloaded fills every instance slot of the node: runs alone.
  use ExUnit.Case, async: false
  import Bitwise

  alias Munition.Reason
  alias Munition.Runtime.Wasmtime

  @add ~s{(module (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))}
  @spin ~s{(module (func (export "f") (loop br 0)))}

  # A runtime that fails in itself.
  defmodule Raising do
    use Munition.DelegatingRuntime

    @impl true
    def instantiate(_module, _state), do: raise("the runtime is on fire")
  end

  test "the lists" do
    assert Reason.crash_reasons() == [:fuel_exhausted, :trap, :timeout, :memory_limit, :host_error]

    assert Reason.trap_kinds() == [
             :unreachable,
             :integer_divide_by_zero,
             :integer_overflow,
             :memory_out_of_bounds,
             :stack_overflow,
             :indirect_call_to_null,
             :bad_signature,
             :table_out_of_bounds,
             :bad_conversion_to_integer,
             :heap_misaligned,
             :null_reference,
             :allocation_too_large,
             :out_of_fuel,
             :interrupt,
             :memory_limit,
             :abort,
             :host_error,
             :unknown
           ]

    assert Reason.error_kinds() == [
             :invalid_module,
             :unsupported,
             :module_limit,
             :timeout,
             :function_not_found,
             :bad_args,
             :bad_result,
             :capability_denied,
             :memory_limit,
             :instantiation_failed,
             :overloaded,
             :pool_unavailable,
             :not_capturable,
             :runtime_failure,
             :nodedown,
             :node_down_during_call,
             :no_answer
           ]
  end

  test "every crash reason is reachable, and each crash says one that is listed" do
    host = {"env", "h", {[], []}, :h, fn _ctx -> raise "no" end}

    crashes = [
      Munition.fire(@spin, "f", [], fuel: 1_000),
      Munition.fire(~s{(module (func (export "f") unreachable))}, "f", []),
      Munition.fire(@spin, "f", [], fuel: 1 <<< 50, timeout: 50),
      Munition.fire(~s{(module (memory 1) (func (export "f") (drop (memory.grow (i32.const 2)))))}, "f", [],
        max_memory: 2 * 65_536
      ),
      Munition.fire(~s{(module (import "env" "h" (func)) (func (export "f") call 0))}, "f", [],
        host_functions: [host],
        capabilities: [:h]
      )
    ]

    reasons = for {:crash, reason, _dump} <- crashes, do: reason
    assert length(reasons) == length(crashes)
    assert Enum.sort(reasons) == Enum.sort(Reason.crash_reasons())

    for {:crash, reason, dump} <- crashes do
      assert dump.reason == reason
      assert dump.trap in Reason.trap_kinds()
    end
  end

  test "every trap kind a guest can provoke is listed" do
    trap = fn wat, opts ->
      assert {:crash, _reason, %{trap: trap}} = Munition.fire(wat, "f", [], opts)
      trap
    end

    guest = fn body ->
      """
      (module
        (import "env" "abort" (func $abort (param i32 i32 i32 i32)))
        (memory (export "memory") 1)
        (table 2 funcref)
        (type $v (func))
        (type $i (func (result i32)))
        (func $ret (result i32) i32.const 1)
        (elem (i32.const 0) $ret)
        (func $down call $down)
        (func (export "f") #{body}))
      """
    end

    provoked =
      for {body, opts} <- [
            {"unreachable", []},
            {"i32.const 1 i32.const 0 i32.div_s drop", []},
            {"i32.const -2147483648 i32.const -1 i32.div_s drop", []},
            {"i32.const 70000 i32.load drop", []},
            {"call $down", []},
            {"i32.const 1 call_indirect (type $v)", []},
            {"i32.const 0 call_indirect (type $v)", []},
            {"i32.const 5 call_indirect (type $i) drop", []},
            {"f64.const nan i32.trunc_f64_s drop", []},
            {"(loop br 0)", [fuel: 1_000]},
            {"(loop br 0)", [fuel: 1 <<< 50, timeout: 50]},
            {"(drop (memory.grow (i32.const 2)))", [max_memory: 2 * 65_536]},
            {"(call $abort (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 2))", []}
          ] do
        trap.(guest.(body), [capabilities: [:abort]] ++ opts)
      end

    assert provoked == [
             :unreachable,
             :integer_divide_by_zero,
             :integer_overflow,
             :memory_out_of_bounds,
             :stack_overflow,
             :indirect_call_to_null,
             :bad_signature,
             :table_out_of_bounds,
             :bad_conversion_to_integer,
             :out_of_fuel,
             :interrupt,
             :memory_limit,
             :abort
           ]

    assert provoked -- Reason.trap_kinds() == []
  end

  test "every error kind is reachable from the API, and each error says one that is listed" do
    {:ok, module} = Munition.compile(@add)

    errors = [
      Munition.fire("garbage", "f", []),
      Munition.compile(~s{(module (memory 1) (memory 1) (memory 1) (memory 1) (memory 1))}),
      Munition.fire(~s{(module (func) (func) (func (export "f")))}, "f", [], limits: [functions: 2]),
      # 3,000 functions never seen before: far more than a millisecond of compiling.
      Munition.compile(many_functions(3_000), timeout: 1),
      Munition.fire(module, "nope", []),
      Munition.fire(module, "add", [1]),
      Munition.fire(module, "add", [1, 2], result: :binary),
      Munition.fire(~s{(module (import "env" "secret" (func)) (func (export "f")))}, "f", []),
      Munition.fire(~s{(module (memory 100) (func (export "f")))}, "f", [], max_memory: 65_536),
      Munition.fire(
        ~s{(module (import "munition" "get_time_ms" (func (result i32))) (func (export "f")))},
        "f",
        [],
        capabilities: [:time]
      ),
      # A call waits for a slot until its deadline, then is :overloaded.
      overloaded(fn -> Munition.fire(module, "add", [1, 2], timeout: 10) end),
      Munition.fire_pooled(:no_such_pool, "add", [1, 2]),
      Munition.snapshot(~s{(module (import "env" "memory" (memory 1)) (func (export "f")))}, "f", []),
      Munition.fire(module, "add", [1, 2], runtime: Raising)
    ]

    kinds = for {:error, {kind, _detail}} <- errors, do: kind
    assert length(kinds) == length(errors), "not all errors: #{inspect(errors)}"
    # The three of a call on another node need peer nodes: test/munition/cluster/
    # reaches them.
    assert kinds ++ [:nodedown, :node_down_during_call, :no_answer] == Reason.error_kinds()
    assert {:error, {:runtime_failure, "the runtime is on fire"}} = List.last(errors)
  end

  defp many_functions(n) do
    body = "local.get 0 i32.const 3 i32.mul i32.const 7 i32.add local.get 0 i32.xor"
    funcs = for i <- 1..n, do: "(func (param i32) (result i32) #{body} i32.const #{i} i32.add)"

    "(module #{Enum.join(funcs, " ")} (func (export \"f\") (result i32) i32.const #{System.unique_integer([:positive])}))"
  end

  # Runs `fun` while every instance slot of the node is taken.
  defp overloaded(fun) do
    {:ok, module} = Wasmtime.compile(~s{(module)}, [])

    state = %Munition.Instance.State{
      module: module,
      function: "f",
      args: [],
      runtime: Wasmtime,
      fuel: 1,
      timeout: 60_000,
      max_memory: 65_536
    }

    instances = take_every_slot(module, state, [])

    try do
      fun.()
    after
      Enum.each(instances, &Wasmtime.cleanup/1)
    end
  end

  defp take_every_slot(module, state, taken) do
    case Wasmtime.instantiate(module, state) do
      {:ok, instance, :ready} when length(taken) < 10_000 ->
        take_every_slot(module, state, [instance | taken])

      {:error, {:overloaded, _}} ->
        taken
    end
  end

  # The native side produces the crash reasons and trap kinds; what it can
  # produce must be in the vocabulary. Runtimes say so in info/0, once the
  # Rust side lists them there: until then the test says it is skipped.
  @vocabulary Map.has_key?(Wasmtime.info(), :crash_reasons)

  @tag skip: not @vocabulary && "the runtime's info/0 does not list its vocabulary yet"
  test "the runtime produces no reason or trap kind that is not listed" do
    info = Wasmtime.info()
    assert info.crash_reasons -- Reason.crash_reasons() == []
    assert info.trap_kinds -- Reason.trap_kinds() == []
  end
end

defmodule Munition.RuntimeTest do
  # The behaviour itself: what a runtime must implement. Each callback is
  # tested against the adapter in test/munition/runtime/wasmtime_test.exs.
  use ExUnit.Case, async: true

  @callbacks [
    builtins: 0,
    cache_stats: 0,
    call: 3,
    capture: 2,
    cleanup: 1,
    compile: 2,
    configure: 1,
    host_read: 3,
    host_reply: 3,
    host_write: 3,
    info: 0,
    instantiate: 2,
    live_count: 0,
    read_memory: 3,
    resume: 1,
    snapshot: 3,
    snapshot_instrument: 1,
    write_memory: 3
  ]

  test "the callbacks a runtime implements" do
    # A new callback needs a test in wasmtime_test.exs: add it here too.
    assert Enum.sort(Munition.Runtime.behaviour_info(:callbacks)) == @callbacks

    assert Enum.sort(Munition.Runtime.behaviour_info(:optional_callbacks)) == [
             cache_stats: 0,
             configure: 1,
             snapshot: 3,
             snapshot_instrument: 1
           ]
  end

  test "every callback is documented" do
    {:docs_v1, _, _, _, _, _, docs} = Code.fetch_docs(Munition.Runtime)

    documented = for {{:callback, name, arity}, _, _, %{"en" => doc}, _} <- docs, doc != "", do: {name, arity}

    assert Enum.sort(documented) == @callbacks
  end

  # Exports instantiate/2, which was all the old check looked for.
  defmodule OnlyInstantiates do
    def instantiate(_module, _state), do: {:error, {:instantiation_failed, "never"}}
  end

  test "a runtime is checked against the whole behaviour, naming what it lacks" do
    message =
      assert_raise ArgumentError, fn ->
        Munition.fire(~s{(module (func (export "f")))}, "f", [], runtime: OnlyInstantiates)
      end

    missing =
      (Munition.Runtime.behaviour_info(:callbacks) -- Munition.Runtime.behaviour_info(:optional_callbacks)) --
        [instantiate: 2]

    assert message.message =~ "runtime must be a module implementing Munition.Runtime"
    assert message.message =~ inspect(OnlyInstantiates)
    assert message.message =~ "which does not export "

    for {name, arity} <- missing, do: assert(message.message =~ "#{name}/#{arity}")
    refute message.message =~ "instantiate/2"

    assert_raise ArgumentError, ~r/OnlyInstantiates, which does not export builtins\/0, call\/3/, fn ->
      Munition.compile(~s{(module)}, runtime: OnlyInstantiates)
    end

    assert_raise ArgumentError, ~r/OnlyInstantiates, which does not export/, fn ->
      Munition.Pool.start_link(name: :lacking_runtime, wasm: ~s{(module)}, runtime: OnlyInstantiates)
    end
  end

  defmodule RequiredOnly do
    use Munition.DelegatingRuntime, optional: false
  end

  test "a runtime without the optional callbacks is a runtime" do
    for {name, arity} <- Munition.Runtime.behaviour_info(:optional_callbacks),
        do: refute(function_exported?(RequiredOnly, name, arity))

    add = ~s{(module (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))}
    assert {:ok, 5, _} = Munition.fire(add, "add", [2, 3], runtime: RequiredOnly)
  end

  test "fire/4 and compile/2 refuse a :runtime that is not one" do
    assert_raise ArgumentError, ~r/runtime must be a module implementing Munition.Runtime, got: String/, fn ->
      Munition.fire(~s{(module (func (export "f")))}, "f", [], runtime: String)
    end

    assert_raise ArgumentError, ~r/runtime must be a module, got: "wasmtime"/, fn ->
      Munition.compile(~s{(module)}, runtime: "wasmtime")
    end
  end
end

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
    host_read: 3,
    host_reply: 3,
    host_write: 3,
    info: 0,
    instantiate: 2,
    live_count: 0,
    read_memory: 3,
    resume: 1,
    write_memory: 3
  ]

  test "the callbacks a runtime implements" do
    # A new callback needs a test in wasmtime_test.exs: add it here too.
    assert Enum.sort(Munition.Runtime.behaviour_info(:callbacks)) == @callbacks
    assert Munition.Runtime.behaviour_info(:optional_callbacks) == [cache_stats: 0]
  end

  test "every callback is documented" do
    {:docs_v1, _, _, _, _, _, docs} = Code.fetch_docs(Munition.Runtime)

    documented = for {{:callback, name, arity}, _, _, %{"en" => doc}, _} <- docs, doc != "", do: {name, arity}

    assert Enum.sort(documented) == @callbacks
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

defmodule Munition.Runtime.WasmtimeVocabularyTest do
  # The native side produces crash reasons and trap kinds from its own enums;
  # Munition.Reason is the Elixir vocabulary. These must not drift apart.
  use ExUnit.Case, async: true

  alias Munition.Runtime.Wasmtime

  test "info/0 reports the engine, its version and features, and its vocabulary" do
    assert %{
             engine: :wasmtime,
             version: "48.0.8",
             features: features,
             crash_reasons: reasons,
             trap_kinds: kinds
           } = Wasmtime.info()

    assert Enum.sort(features) == [:coredump, :fibers, :fuel, :pooling]
    assert reasons != [] and kinds != []
    assert Enum.uniq(reasons) == reasons
    assert Enum.uniq(kinds) == kinds
  end

  test "every crash reason the native side can produce is one of Munition.Reason's" do
    %{crash_reasons: native} = Wasmtime.info()
    assert native -- Munition.Reason.crash_reasons() == []
  end

  test "every trap kind the native side can produce is one of Munition.Reason's" do
    %{trap_kinds: native} = Wasmtime.info()
    assert native -- Munition.Reason.trap_kinds() == []
  end
end

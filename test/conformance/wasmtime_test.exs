defmodule Munition.Conformance.WasmtimeTest do
  # fire/4's contract on the Wasmtime engine (the cases: test/support/conformance.ex).
  use Munition.Conformance, runtime: Munition.Runtime.Wasmtime
end

defmodule Munition.Conformance.WasmiTest do
  # fire/4's contract on the Wasmi engine (the cases: test/support/conformance.ex).
  use Munition.Conformance, runtime: Munition.Runtime.Wasmi
end

defmodule Munition.Property.FuzzRegressionsTest do
  use ExUnit.Case, async: true

  alias Munition.Test.Fuzz

  # Every module `make fuzz` kept in test/fixtures/fuzz (see the README
  # there), fired with the options of its index and the checks of the
  # generated-module test.

  for path <- Path.wildcard(Path.join(Fuzz.fixtures_dir(), "*.wasm")) do
    name = Path.basename(path)

    test "kept module #{name}" do
      index =
        case Regex.run(~r/index-(\d+)\.wasm$/, unquote(name)) do
          [_, index] -> String.to_integer(index)
          nil -> 0
        end

      wasm = File.read!(unquote(path))
      assert {:ok, _tally} = Munition.Test.Smith.check_module(wasm, index)
    end
  end
end

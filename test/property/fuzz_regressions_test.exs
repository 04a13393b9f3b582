defmodule Munition.Property.FuzzRegressionsTest do
  use ExUnit.Case, async: true

  alias Munition.Test.{Fuzz, Smith}

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

      assert {:ok, _tally} = Smith.check_module(File.read!(unquote(path)), Smith.fire_opts(index))
    end
  end
end

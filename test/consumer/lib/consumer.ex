defmodule Consumer do
  @moduledoc "Smoke test of Munition used as a dependency."

  def smoke do
    wat = ~s{(module (func (export "mul") (param i32 i32) (result i32) local.get 0 local.get 1 i32.mul))}

    case Munition.fire(wat, "mul", [6, 7]) do
      {:ok, 42, _meta} ->
        IO.puts("consumer: Munition as a dependency fired a module: 6 * 7 = 42")

      other ->
        IO.puts(:stderr, "consumer: unexpected result #{inspect(other)}")
        System.halt(1)
    end
  end
end

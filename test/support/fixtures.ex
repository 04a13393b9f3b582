defmodule Munition.Fixtures do
  @moduledoc false
  # Guests shared by several test modules.

  @doc """
  A guest whose `f(n)` runs its loop `n` times: exactly 4 + 8 * n fuel, and
  whose `boom()` traps. `tag` makes the bytes (and so the module hash)
  distinct per test.
  """
  def counter_wat(tag) do
    ~s{(module (; #{tag} ;) (func (export "f") (param i32)
      (block (loop
        (br_if 1 (i32.eqz (local.get 0)))
        (local.set 0 (i32.sub (local.get 0) (i32.const 1)))
        (br 0))))
      (func (export "boom") unreachable))}
  end
end

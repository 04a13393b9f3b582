defmodule Munition.Host.Function do
  @moduledoc false
  # An Elixir function a guest may import, under a capability of its own.
  #
  # Build one with `Munition.Host.Functions.new!/1`. Fields: `:module` and `:name`
  # (the import), `:params` and `:results` (wasm types among `:i32`, `:i64`,
  # `:f32`, `:f64`), `:capability` (the atom that must be granted), `:fun` (called
  # as `fun.(context, arg1, ..., argN)`, see `Munition.Host.Context`).

  @enforce_keys [:module, :name, :params, :results, :capability, :fun]
  defstruct [:module, :name, :params, :results, :capability, :fun]

  @type t :: %__MODULE__{
          module: String.t(),
          name: String.t(),
          params: [atom()],
          results: [atom()],
          capability: atom(),
          fun: function()
        }
end

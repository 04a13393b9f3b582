defmodule Munition.Instance.State do
  @moduledoc """
  Where one execution is in its lifecycle, and what it knows so far.

  The manager moves it through `:compiled -> :instantiated -> :called` and ends
  in `:returned`, `:crashed` or `:failed`. The forensic capture reads the
  context from it (function, arguments, capabilities, fuel given), and a future
  pool will keep one per pooled instance.
  """

  @type phase :: :compiled | :instantiated | :called | :returned | :crashed | :failed

  @enforce_keys [:module, :function, :args]
  defstruct [
    :module,
    :function,
    :args,
    :instance,
    phase: :compiled,
    capabilities: [],
    fuel: 0,
    started_at: nil
  ]

  @type t :: %__MODULE__{
          module: Munition.Module.t(),
          function: String.t(),
          args: list(),
          instance: term(),
          phase: phase(),
          capabilities: [atom()],
          fuel: non_neg_integer(),
          started_at: integer() | nil
        }

  @doc "Moves to `phase`."
  @spec advance(t(), phase()) :: t()
  def advance(%__MODULE__{} = state, phase), do: %{state | phase: phase}
end

defmodule Munition.DelegatingRuntime do
  @moduledoc false
  # A runtime for tests that change one step: `use Munition.DelegatingRuntime`
  # defines every callback of Munition.Runtime as a delegation to `:to`
  # (Munition.Runtime.Wasmtime by default), each overridable. A runtime is
  # checked against the whole behaviour before a call uses it, so a test
  # runtime must be complete: this keeps it complete as the behaviour grows.
  # Optional callbacks are delegated when `:to` has them, unless
  # `optional: false`.

  defmacro __using__(opts) do
    quote bind_quoted: [
            to: Keyword.get(opts, :to, Munition.Runtime.Wasmtime),
            with_optional: Keyword.get(opts, :optional, true)
          ] do
      @behaviour Munition.Runtime

      Code.ensure_loaded!(to)
      optional = Munition.Runtime.behaviour_info(:optional_callbacks)

      for {name, arity} <- Munition.Runtime.behaviour_info(:callbacks),
          {name, arity} not in optional or (with_optional and function_exported?(to, name, arity)) do
        args = Macro.generate_arguments(arity, __MODULE__)

        @impl true
        def unquote(name)(unquote_splicing(args)), do: unquote(to).unquote(name)(unquote_splicing(args))

        defoverridable [{name, arity}]
      end
    end
  end
end

defmodule Munition.Runtime do
  @moduledoc """
  The contract between `Munition.Instance.Manager` and a WebAssembly engine.

  `Munition.Runtime.Wasmtime` is the implementation Munition ships. A runtime
  owns compiling, instantiating in a fresh store, calling, capturing the state of
  a failed store, and releasing it; the manager owns the order of those steps,
  the timeout and the forensics. A runtime must never reuse a store between
  instances.
  """

  @type instance :: term()
  @type instance_config :: %{
          fuel: pos_integer(),
          timeout_ms: non_neg_integer(),
          max_memory: pos_integer(),
          links: [map()],
          log_limit: non_neg_integer(),
          host_pid: pid() | nil
        }
  @type crash_reason :: :fuel_exhausted | :trap | :timeout | :memory_limit | :host_error

  @callback compile(bytes :: binary(), opts :: keyword()) ::
              {:ok, Munition.Module.t()} | {:error, {:invalid_module, String.t()}}

  @typedoc """
  The guest is suspended until an Elixir host function answers: serve the
  `{:munition_host_call, call, index, args, fuel}` messages sent to the
  instance's `host_pid` (the process driving it), wait for `:munition_wake` (or at most `ms`
  milliseconds, its deadline), then `resume/1`.
  """
  @type waiting :: {:waiting, ms :: non_neg_integer()}

  @callback instantiate(Munition.Module.t(), instance_config()) ::
              {:ok, instance()}
              | {:crash, crash_reason(), instance()}
              | {:waiting, non_neg_integer(), instance()}
              | {:error, term()}

  @callback call(instance(), function :: String.t(), args :: [number()]) ::
              {:ok, [term()], map()} | {:crash, crash_reason()} | waiting() | {:error, term()}

  @doc "Continues a guest that was waiting: `:ready` when it was instantiating."
  @callback resume(instance()) ::
              :ready | {:ok, [term()], map()} | {:crash, crash_reason()} | waiting() | {:error, term()}

  @callback read_memory(instance(), ptr :: non_neg_integer(), len :: non_neg_integer()) ::
              {:ok, binary()} | {:error, term()}

  @callback write_memory(instance(), ptr :: non_neg_integer(), binary()) :: :ok | {:error, term()}

  @callback capture(instance(), :full | :minimal) :: {:ok, map()} | {:error, term()}

  @callback cleanup(instance()) :: :ok

  @callback info() :: map()
end

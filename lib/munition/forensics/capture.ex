defmodule Munition.Forensics.Capture do
  @moduledoc false
  # Turns the state of a failed store into a `Munition.Forensics.Dump`.
  #
  # The manager calls `capture/3` on every failure path (a trap in a call or in a
  # start function, fuel exhaustion, timeout, memory limit, a failing host
  # function), right after the failure and before anything else runs in the
  # store, and before the store is released. It must never raise: a capture that
  # cannot read the store still returns a dump with what is known.

  alias Munition.Forensics.Dump
  alias Munition.Instance.State

  @munition_version Mix.Project.config()[:version]

  @doc """
  Captures `instance` (a failed store of `state.runtime`) into a dump, with
  `mode` `:full` (memory bytes included) or `:minimal` (everything but memory
  bytes).
  """
  @spec capture(State.t(), Munition.Runtime.instance(), :full | :minimal) :: Dump.t()
  def capture(%State{} = state, instance, mode) do
    base = base(state)

    case state.runtime.capture(instance, mode) do
      {:ok, native} ->
        %{
          base
          | reason: native.reason,
            trap: native.trap,
            message: native.message,
            backtrace: native.backtrace,
            fuel_given: native.fuel_given,
            fuel_consumed: native.fuel_consumed,
            fuel_remaining: native.fuel_remaining,
            execution_time_us: native.execution_time_us,
            memories: native.memories,
            globals: native.globals,
            log: native.log,
            replay: replay(state, native)
        }
        |> Map.merge(native[:output] || %{})

      {:error, {_kind, message}} ->
        %{base | message: "capture failed: #{message}"}
    end
  end

  @doc """
  A dump for a failure that left no store to read (the native call did not
  answer in time and was abandoned): the context and the reason only.
  """
  @spec without_store(State.t(), atom(), atom(), String.t()) :: Dump.t()
  def without_store(%State{} = state, reason, trap, message) do
    %{base(state) | reason: reason, trap: trap, message: message, fuel_given: state.fuel}
  end

  defp base(%State{module: module} = state) do
    %Dump{
      module_hash: module.hash,
      snapshot: snapshot_of(module),
      imports: module.imports,
      exports: module.exports,
      function: state.function,
      args: state.args,
      capabilities: state.capabilities,
      inert_links: state.inert_links,
      fuel_given: state.fuel,
      wasmtime_version: engine_version(state.runtime),
      munition_version: @munition_version,
      captured_at: DateTime.utc_now()
    }
  end

  # What a replay needs besides the module, the function and the arguments
  # (see `Munition.Replay`): the log of the call's host calls and the bounds
  # it ran under, or why it cannot be replayed.
  defp replay(%State{journal: {:record, _}} = state, native) do
    case native.journal do
      {:log, log, host_calls} ->
        %{
          log: log,
          host_calls: host_calls,
          unavailable: nil,
          engine: engine(state.runtime),
          max_memory: state.max_memory,
          log_limit: state.log_limit,
          result: state.result,
          alloc: state.alloc,
          stdout_limit: state.wasi && state.wasi.stdout_limit,
          stderr_limit: state.wasi && state.wasi.stderr_limit
        }

      {:unavailable, why} ->
        %{log: nil, unavailable: why}
    end
  end

  # A replay's own dump says how far it followed its log, for
  # `Munition.Replay`, which gives it the recorded call's `replay` back.
  defp replay(%State{journal: {:replay, _, _}}, native), do: native.journal

  defp engine(runtime) do
    runtime.info().engine
  rescue
    _ -> nil
  end

  # The version of the engine that ran the guest. A dump must come back even
  # if the runtime cannot say (its native library failed to load).
  # Wasmtime's is its version alone (the field is `wasmtime_version`); another
  # engine's is named: "wasmi 2.0.0".
  defp engine_version(runtime) do
    case runtime.info() do
      %{engine: :wasmtime, version: version} -> version
      %{engine: engine, version: version} -> "#{engine} #{version}"
    end
  rescue
    _ -> nil
  end

  # A call on a snapshot names the snapshot (its hash is `module_hash`) and
  # where it comes from; its bytes stay with the module.
  defp snapshot_of(%Munition.Module{snapshot: %{of: of, function: function}}),
    do: %{of: of, function: function}

  defp snapshot_of(_module), do: nil
end

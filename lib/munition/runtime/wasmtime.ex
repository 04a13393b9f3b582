defmodule Munition.Runtime.Wasmtime do
  @moduledoc """
  The Wasmtime runtime, through Munition's NIF.

  Turns native results into Munition's vocabulary; holds no state of its own.
  Guests run on a fiber stack the NIF owns (so deep recursion is a
  `:stack_overflow` trap, not a crash of the VM), metered by fuel and stopped at
  their deadline by epoch interruption.
  """

  @behaviour Munition.Runtime

  alias Munition.Native

  @impl true
  def compile(bytes, opts \\ []) do
    cache_size = Keyword.get_lazy(opts, :cache_size, &Munition.Runtime.Config.module_cache_size/0)

    case Native.module_compile(bytes, cache_size) do
      {:ok, {resource, info}} ->
        {:ok,
         %Munition.Module{
           resource: resource,
           hash: info.hash,
           imports: info.imports,
           exports: info.exports,
           memories: info.memories,
           stats: info.stats
         }}

      {:error, _} = error ->
        error
    end
  end

  @impl true
  def instantiate(%Munition.Module{resource: resource}, config) do
    case Native.instance_new(resource, config) do
      {:ok, {:ready, instance}} -> {:ok, instance}
      {:ok, {:crashed, reason, instance}} -> {:crash, reason, instance}
      {:error, {:instantiation_failed, message}} -> {:error, {:instantiation_failed, message}}
      {:error, _} = error -> error
    end
  end

  @impl true
  def call(instance, function, args) do
    case Native.instance_call(instance, function, args) do
      {:ok, {:returned, values, meta}} -> {:ok, values, meta}
      {:ok, {:crashed, reason}} -> {:crash, reason}
      {:error, {:function_not_found, name}} -> {:error, {:function_not_found, name}}
      {:error, _} = error -> error
    end
  end

  @impl true
  def read_memory(instance, ptr, len), do: Native.instance_memory_read(instance, ptr, len)

  @impl true
  def write_memory(instance, ptr, bytes) do
    case Native.instance_memory_write(instance, ptr, bytes) do
      {:ok, :ok} -> :ok
      {:error, _} = error -> error
    end
  end

  @impl true
  def capture(instance, mode) when mode in [:full, :minimal] do
    Native.instance_capture(instance, mode)
  end

  @impl true
  def cleanup(instance), do: Native.instance_cleanup(instance)

  @impl true
  def info do
    {version, features} = Native.engine_info()
    %{engine: :wasmtime, version: version, features: features}
  end
end

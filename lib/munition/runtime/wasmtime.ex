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

    # A cache hit is answered on this scheduler; only compiling goes dirty.
    case Native.module_lookup(bytes, cache_size) do
      {resource, info} -> {:ok, to_module(resource, info)}
      nil -> compile_dirty(bytes, cache_size)
    end
  end

  defp compile_dirty(bytes, cache_size) do
    case Native.module_compile(bytes, cache_size) do
      {:ok, {resource, info}} -> {:ok, to_module(resource, info)}
      {:error, _} = error -> error
    end
  end

  defp to_module(resource, info) do
    %Munition.Module{
      resource: resource,
      hash: info.hash,
      imports: info.imports,
      exports: info.exports,
      memories: info.memories,
      stats: info.stats
    }
  end

  @impl true
  def instantiate(%Munition.Module{resource: resource}, config) do
    with {:ok, {instance, progress}} <- Native.instance_new(resource, config) do
      case finish(instance, progress) do
        :ready -> {:ok, instance}
        {:crashed, reason} -> {:crash, reason, instance}
        {:waiting, ms} -> {:waiting, ms, instance}
        {:error, _} = error -> error
      end
    end
  end

  @impl true
  def call(instance, function, args) do
    with {:ok, progress} <- Native.instance_call(instance, function, args) do
      outcome(instance, progress)
    end
  end

  @impl true
  def resume(instance) do
    with {:ok, progress} <- Native.instance_resume(instance) do
      outcome(instance, progress)
    end
  end

  defp outcome(instance, progress) do
    case finish(instance, progress) do
      {:returned, values, meta} -> {:ok, values, meta}
      {:crashed, reason} -> {:crash, reason}
      other -> other
    end
  end

  # The guest runs in slices of a few milliseconds; between them the dirty
  # scheduler is free for other work. Resume until it finishes one way or the
  # other (the native deadline bounds how long that takes), or until it waits
  # for an Elixir host function, which is the caller's to serve.
  defp finish(instance, :yielded) do
    with {:ok, progress} <- Native.instance_resume(instance), do: finish(instance, progress)
  end

  defp finish(_instance, progress), do: progress

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
  def cleanup(instance) do
    # A large memory is released on a dirty scheduler (see the NIF).
    case Native.instance_cleanup(instance) do
      :ok -> :ok
      :large -> Native.instance_cleanup_dirty(instance)
    end
  end

  @impl true
  def info, do: Native.engine_info()

  @doc """
  The built-in host functions of the native side, one map per import:
  `%{capability: atom, module: string, name: string, params: [type], results: [type]}`.
  `Munition.Host.Capabilities` grants by this table.
  """
  def builtins, do: Native.host_builtins()

  # Captured memory: compressed in dumps, scanned by the analyser.

  def compress_memory(bytes), do: Native.zstd_compress(bytes)
  def decompress_memory(data, max_size), do: Native.zstd_decompress(data, max_size)
  def decompressed_size(data), do: Native.zstd_frame_size(data)
  def search_memory(bytes, pattern, limit), do: Native.memory_search(bytes, pattern, limit)
  def memory_regions(bytes, min_gap, limit), do: Native.memory_regions(bytes, min_gap, limit)
  def diff_memory(a, b, min_gap, limit), do: Native.memory_diff(a, b, min_gap, limit)

  def memory_strings(bytes, min_len, max_len, utf8, limit),
    do: Native.memory_strings(bytes, min_len, max_len, utf8, limit)
end

defmodule Munition.Cluster.Server do
  @moduledoc false
  # One per node, started by Munition.Application. It owns what a node keeps
  # for calls that come from other nodes (Munition.Cluster.Call):
  #
  #   * the modules it compiled for them, keyed by content hash and the
  #     compile limits they were checked against, so that a repeat call sends
  #     the hash, never the bytes again. At most `module_cache_size` of them
  #     are kept (the least recently used goes first); they hold compiled code, never an
  #     instance;
  #   * the node's counters: module hits and misses, bytes received and sent
  #     as module code, calls served for other nodes.
  #
  # It joins the :pg group of Munition nodes (in the Munition.Cluster scope),
  # which is how Munition.Cluster.stats/0 finds every node. Calls never go
  # through this process: the table and the counters are read and written
  # directly.

  use GenServer

  @table __MODULE__
  @counters {__MODULE__, :counters}

  # Indexes in the :counters.
  @indexes %{hits: 1, misses: 2, bytes_received: 3, served: 4, bytes_shipped: 5}

  @doc false
  # The :pg scope of Munition's cluster and the group its nodes' servers join.
  def scope, do: Munition.Cluster
  def group, do: :munition_nodes

  def start_link(opts \\ []), do: GenServer.start_link(__MODULE__, opts, name: __MODULE__)

  @doc false
  # The module compiled here from the bytes hashed as `hash` for
  # `compiled_for` (its runtime and limits), or nil (counted as a hit or a
  # miss). A hit makes it the most recently used: eviction takes the least.
  @spec lookup(String.t(), term()) :: Munition.Module.t() | nil
  def lookup(hash, compiled_for) do
    key = {hash, compiled_for}

    found =
      case :ets.lookup(@table, key) do
        [{_key, module, _seq}] ->
          # Evicted in between: nothing to refresh, the module still serves.
          :ets.update_element(@table, key, {3, System.unique_integer([:monotonic])})
          module

        [] ->
          nil
      end

    count(if(found, do: :hits, else: :misses), 1)
    found
  rescue
    # Without the application there is no table: every call ships its bytes.
    ArgumentError -> nil
  end

  @doc false
  # Keeps `module` for later calls; the least recently used entries go past
  # the capacity.
  # Every caller evicts until the table is within it: calls that insert at
  # once may pick the same oldest entry, and the capacity would then hold
  # only for one of them.
  @spec remember(Munition.Module.t(), term()) :: :ok
  def remember(%Munition.Module{hash: hash} = module, compiled_for) do
    :ets.insert(@table, {{hash, compiled_for}, module, System.unique_integer([:monotonic])})
    evict(Munition.Runtime.Config.module_cache_size())
  rescue
    ArgumentError -> :ok
  end

  defp evict(capacity) do
    if :ets.info(@table, :size) > capacity do
      {oldest, _seq} =
        :ets.foldl(
          fn {key, _module, seq}, {_, best} = acc -> if seq < best, do: {key, seq}, else: acc end,
          {nil, :infinity},
          @table
        )

      :ets.delete(@table, oldest)
      evict(capacity)
    else
      :ok
    end
  end

  @doc false
  # Adds `n` to one of the node's counters (see @indexes).
  @spec count(atom(), integer()) :: :ok
  def count(name, n) do
    case :persistent_term.get(@counters, nil) do
      nil -> :ok
      counters -> :counters.add(counters, Map.fetch!(@indexes, name), n)
    end
  end

  @doc false
  # The node's counters, and how many modules it keeps.
  @spec counters() :: map()
  def counters do
    case :persistent_term.get(@counters, nil) do
      nil ->
        Map.new(@indexes, fn {name, _} -> {name, 0} end) |> Map.put(:modules, 0)

      counters ->
        @indexes
        |> Map.new(fn {name, index} -> {name, :counters.get(counters, index)} end)
        |> Map.put(:modules, :ets.info(@table, :size))
    end
  end

  @impl true
  def init(_opts) do
    @table = :ets.new(@table, [:set, :public, :named_table, read_concurrency: true])
    :persistent_term.put(@counters, :counters.new(map_size(@indexes), [:write_concurrency]))
    :ok = :pg.join(scope(), group(), self())
    {:ok, nil}
  end
end

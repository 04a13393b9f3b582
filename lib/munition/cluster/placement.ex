defmodule Munition.Cluster.Placement do
  @moduledoc false
  # Where a pooled call placed among a pool's members (`node: :any`) goes:
  # the local member first when it has room (a free place and no one waiting),
  # otherwise the member with the fewest waiting calls (then the fewest
  # running, then the local one). Members are the pool's processes in the :pg
  # group `{Munition.Pool, name}`: a pool that stops, or whose node goes down
  # or disconnects, leaves it, and so stops receiving calls.

  alias Munition.Cluster.Server

  @doc false
  # The nodes where pool `name` has a member, local first.
  @spec member_nodes(atom()) :: [node()]
  def member_nodes(name) do
    nodes = Server.scope() |> :pg.get_members(group(name)) |> Enum.map(&node/1) |> Enum.uniq()
    if node() in nodes, do: [node() | List.delete(nodes, node())], else: nodes
  rescue
    # No :pg scope: the application is not started, only a local pool can run.
    ArgumentError -> [node()]
  end

  @doc false
  # The :pg group of pool `name`'s members.
  @spec group(atom()) :: {module(), atom()}
  def group(name), do: {Munition.Pool, name}

  @doc false
  # `nodes` in the order a call should try them, given each one's pool
  # stats (`Munition.Pool.stats/1`'s map, nil when it has no such pool any more,
  # `:no_answer` when it did not answer the query in time). The local node's
  # stats decide alone when it has room: the others are asked only when it
  # has none (see `order/3`). Members that did not answer go last, in the
  # order given: they may only be slow.
  @spec order([node()], map()) :: [node()]
  def order(nodes, stats) do
    local = stats[node()]

    if is_map(local) and room?(local) do
      [node() | List.delete(nodes, node())]
    else
      answered =
        nodes
        |> Enum.filter(&is_map(stats[&1]))
        |> Enum.sort_by(fn node -> {stats[node].waiting, stats[node].running, node != node()} end)

      answered ++ Enum.filter(nodes, &(stats[&1] == :no_answer))
    end
  end

  # How long the stats query may take of the time a call has left: one
  # member that does not answer (frozen, overloaded) must not use up the
  # call's deadline while another one is idle.
  @query_share 4
  @query_max_ms 250

  # How long the stats query may take of a call that has until `deadline`.
  defp query_ms(deadline) do
    min(div(max(deadline - System.monotonic_time(:millisecond), 0), @query_share), @query_max_ms)
  end

  # A window under this is the deadline: a call with so little time left
  # waits for the member it tries rather than spawning on one after another.
  @min_window_ms 10

  @doc false
  # How long a member may take to be ready for a call that has until
  # `deadline`, when other members could take it, in round `round` (0 for
  # a member's first try): the stats query's share of the time left,
  # doubled each round; `nil` (wait until the deadline) once that reaches
  # the time left, or when it is too short to be worth another spawn.
  @spec ready_window(integer(), non_neg_integer()) :: pos_integer() | nil
  def ready_window(deadline, round) do
    left = deadline - System.monotonic_time(:millisecond)
    window = query_ms(deadline) * Integer.pow(2, round)
    if window >= @min_window_ms and window < left, do: window
  end

  @doc false
  # The order of `nodes` for a call of pool `name` that may wait until
  # `deadline`: the local stats first; the others' only when the local pool
  # has no room, asked all at once with `:erpc.multicall/5` for at most a
  # quarter of the time left and #{@query_max_ms} ms. A member that does not
  # answer by then goes last.
  @spec order(atom(), [node()], integer()) :: [node()]
  def order(name, nodes, deadline) do
    local = if node() in nodes, do: pool_stats(Munition.Pool.stats(name))

    if local && room?(local) do
      order(nodes, %{node() => local})
    else
      remote = List.delete(nodes, node())

      answers =
        remote
        |> :erpc.multicall(Munition.Pool, :stats, [name], query_ms(deadline))
        |> Enum.map(fn
          {:ok, answer} -> pool_stats(answer)
          {:error, {:erpc, :timeout}} -> :no_answer
          _failed -> nil
        end)

      order(nodes, Map.new(Enum.zip(remote, answers)) |> Map.put(node(), local))
    end
  end

  defp pool_stats({:ok, stats}), do: stats
  defp pool_stats({:error, {:pool_unavailable, _}}), do: nil

  defp room?(%{running: running, size: size, waiting: waiting}), do: running < size and waiting == 0
end

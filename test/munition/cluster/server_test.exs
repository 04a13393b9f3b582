defmodule Munition.Cluster.ServerTest do
  # What a node keeps for calls from other nodes, on a real peer node.
  use ExUnit.Case, async: false

  alias Munition.Cluster.Server
  alias Munition.Peers

  setup_all do
    {peer, node} = Peers.start!("cluster_server")
    on_exit(fn -> Peers.stop(peer) end)
    %{peer: node}
  end

  test "the modules kept for remote calls stay within module_cache_size under concurrent calls", %{peer: peer} do
    capacity = 8
    :ok = :erpc.call(peer, Application, :put_env, [:munition, :module_cache_size, capacity])

    # Modules that arrive at once, as concurrent calls with new modules
    # remember them: every one past the capacity evicts an older one. Only
    # their hashes matter here (no compiled code: a resource cannot travel).
    for round <- 1..20 do
      modules =
        for i <- 1..64,
            do: {Server, :remember, [%{__struct__: Munition.Module, hash: "#{round}_#{i}"}, %{}]}

      :ok = :erpc.call(peer, Peers, :race, [modules])
      # At most the capacity; concurrent evictions may each take one more
      # than needed (a cache may keep fewer, never more).
      assert :erpc.call(peer, Server, :counters, []).modules <= capacity
    end
  end
end

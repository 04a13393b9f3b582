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

  test "the least recently used module goes first", %{peer: peer} do
    :ok = :erpc.call(peer, Application, :put_env, [:munition, :module_cache_size, 2])
    on_exit(fn -> :erpc.call(peer, Application, :delete_env, [:munition, :module_cache_size]) end)
    module = fn hash -> %{__struct__: Munition.Module, hash: hash} end
    kept? = fn hash -> :erpc.call(peer, Server, :lookup, [hash, :lru]) != nil end

    :ok = :erpc.call(peer, Server, :remember, [module.("lru_a"), :lru])
    :ok = :erpc.call(peer, Server, :remember, [module.("lru_b"), :lru])
    # a, remembered first, was used since: b goes.
    assert kept?.("lru_a")
    :ok = :erpc.call(peer, Server, :remember, [module.("lru_c"), :lru])

    assert kept?.("lru_a")
    refute kept?.("lru_b")
    assert kept?.("lru_c")
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

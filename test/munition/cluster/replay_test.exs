defmodule Munition.Cluster.ReplayTest do
  # A crash captured on one node replays on another: the dump crosses nodes
  # whole (it is data), and the module is named by its hash, which the
  # replay checks wherever it runs.
  use ExUnit.Case, async: false

  alias Munition.Peers

  # Reads the clock and random numbers into memory, then traps.
  @wat ~s{(module
    (import "munition" "get_time_ms" (func $now (result i64)))
    (import "munition" "get_random" (func $random (result i64)))
    (memory (export "memory") 1)
    (func (export "run")
      (i64.store (i32.const 0) (call $now))
      (i64.store (i32.const 8) (call $random))
      (i64.store (i32.const 16) (call $random))
      unreachable))}

  setup_all do
    Peers.distribute!()
    {peer, node} = Peers.start!("cluster_replay")
    on_exit(fn -> Peers.stop(peer) end)
    %{node: node}
  end

  test "a crash on another node replays here, and one from here replays there", %{node: node} do
    opts = [capabilities: [:time, :random]]
    assert {:crash, :trap, remote} = Munition.fire(@wat, "run", [], [node: node] ++ opts)
    assert {:crash, :trap, here} = Munition.fire(@wat, "run", [], opts)

    # The random numbers differ from call to call: each replay is its own.
    assert Munition.Forensics.Dump.memory(remote) != Munition.Forensics.Dump.memory(here)

    assert {:crash, :trap, replayed} = Munition.replay(remote, @wat)
    assert Munition.Forensics.Dump.memory(replayed) == Munition.Forensics.Dump.memory(remote)

    assert {:crash, :trap, replayed} = :erpc.call(node, Munition, :replay, [here, @wat])
    assert Munition.Forensics.Dump.memory(replayed) == Munition.Forensics.Dump.memory(here)
    assert replayed.fuel_consumed == here.fuel_consumed
  end

  test "another module is a divergence on any node", %{node: node} do
    assert {:crash, :trap, dump} = Munition.fire(@wat, "run", [], capabilities: [:time, :random])
    other = ~s{(module (func (export "run") unreachable))}

    assert {:error, {:replay_diverged, %{at: :module}}} = :erpc.call(node, Munition, :replay, [dump, other])
  end
end

defmodule Munition.Cluster.FailureTest do
  # Peer nodes that go down: before a call starts (another member is tried,
  # or {:nodedown, node}) and while it runs ({:node_down_during_call, node},
  # never retried). Each test halts its own peers.
  use ExUnit.Case, async: false
  # Nodes that go down make global and net_kernel log warnings.
  @moduletag :capture_log

  alias Munition.Peers

  @add ~s{(module (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))}
  @wat ~s{(module (import "env" "block" (func $b (result i32)))
    (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add)
    (func (export "block") (result i32) (call $b)))}

  setup_all do
    Peers.distribute!()
  end

  defp peer!(name) do
    {peer, node} = Peers.start!(name)
    on_exit(fn -> Peers.stop(peer) end)
    node
  end

  defp deadline, do: System.monotonic_time(:millisecond) + 30_000

  test "a node down before the call starts is {:nodedown, node}: nothing ran" do
    node = peer!("cluster_down_before")
    Peers.halt!(node)

    assert Munition.fire(@add, "add", [1, 2], node: node) == {:error, {:nodedown, node}}
    assert Munition.fire_pooled(:any_pool, "add", [1, 2], node: node) == {:error, {:nodedown, node}}

    nobody = :"nobody_#{System.pid()}@localhost"
    assert Munition.fire(@add, "add", [1, 2], node: nobody) == {:error, {:nodedown, nobody}}
  end

  test "a pooled call tries the next member when one is down or gone before it starts" do
    down = peer!("cluster_member_down")
    gone = peer!("cluster_member_gone")
    up = peer!("cluster_member_up")
    opts = [name: :failover, wasm: @add, size: 1]
    Enum.each([down, gone, up], &Peers.start_pool!(&1, opts))

    # Listed as members, then: one node halts, one pool stops.
    Peers.halt!(down)
    Peers.stop_pool!(gone, :failover)

    assert {:ok, 3, _} =
             Munition.Cluster.try_members([down, gone, up], :failover, "add", [1, 2], [], deadline())

    assert :erpc.call(up, Munition.Pool, :stats, [:failover]).completed == 1
  end

  test "a node that stops answering holds the caller no longer than the timeout and the margin" do
    node = peer!("cluster_frozen")
    os_pid = :erpc.call(node, :os, :getpid, [])
    # Frozen, not gone: the connection stays up, nothing answers.
    {_, 0} = System.cmd("kill", ["-STOP", List.to_string(os_pid)])
    on_exit(fn -> System.cmd("kill", ["-CONT", List.to_string(os_pid)]) end)

    assert {:error, {:timeout, message}} = Munition.fire(@add, "add", [1, 2], node: node, timeout: 50)
    assert message =~ "did not answer within the call's timeout"
  end

  test "a node down while the guest runs is {:node_down_during_call, node}, and no other member is tried" do
    test = self()
    doomed = peer!("cluster_down_during")
    other = peer!("cluster_down_other")

    opts = [name: :doomed, wasm: @wat, size: 1, host_functions: [Peers.block(test)], capabilities: [:block]]
    Enum.each([doomed, other], &Peers.start_pool!(&1, opts))

    pooled =
      Task.async(fn -> Munition.Cluster.try_members([doomed, other], :doomed, "block", [], [], deadline()) end)

    assert_receive {:blocked, ^doomed, _fun}

    # A call with a host function on this node, running on the same node.
    fired =
      Task.async(fn ->
        Munition.fire(@wat, "block", [],
          node: doomed,
          host_functions: [Peers.block(test)],
          capabilities: [:block]
        )
      end)

    assert_receive {:blocked, here, fun}
    assert here == node()

    Peers.halt!(doomed)
    assert Task.await(pooled, 30_000) == {:error, {:node_down_during_call, doomed}}
    assert Task.await(fired, 30_000) == {:error, {:node_down_during_call, doomed}}
    assert :erpc.call(other, Munition.Pool, :stats, [:doomed]).completed == 0
    # The host function here was waiting for a guest that is gone.
    assert Munition.Sync.await_down(fun) in [:killed, :noproc]
  end
end

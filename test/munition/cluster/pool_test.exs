defmodule Munition.Cluster.PoolTest do
  # Pools of one name on this node and a real peer node form one group
  # (:pg); placement, members leaving, and the cluster's stats.
  use ExUnit.Case, async: false

  alias Munition.Sync

  alias Munition.Cluster.Placement
  alias Munition.Peers

  @wat ~s{(module (import "env" "block" (func $b (result i32)))
    (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add)
    (func (export "block") (result i32) (call $b)))}

  setup_all do
    {peer, node} = Peers.start!("cluster_pool")
    on_exit(fn -> Peers.stop(peer) end)
    %{peer: node}
  end

  setup %{peer: peer} do
    name = :"cluster_pool_#{System.unique_integer([:positive])}"
    opts = [name: name, wasm: @wat, size: 1, host_functions: [Peers.block(self())], capabilities: [:block]]

    on_exit(fn ->
      for node <- [node(), peer],
          match?({:ok, _}, :erpc.call(node, Munition.Pool, :stats, [name])),
          do: Peers.stop_pool!(node, name)
    end)

    %{name: name, opts: opts}
  end

  defp completed(node, name) do
    {:ok, %{completed: completed}} = :erpc.call(node, Munition.Pool, :stats, [name])
    completed
  end

  test "the local member goes first when it has room", %{peer: peer, name: name, opts: opts} do
    Peers.start_pool!(node(), opts)
    Peers.start_pool!(peer, opts)
    assert Placement.member_nodes(name) == [node(), peer]

    assert {:ok, 3, _} = Munition.fire_pooled(name, "add", [1, 2], node: :any)
    assert completed(node(), name) == 1
    assert completed(peer, name) == 0
  end

  test "a full local member sends the call to the member with room", %{peer: peer, name: name, opts: opts} do
    Peers.start_pool!(node(), opts)
    Peers.start_pool!(peer, opts)

    blocked = Task.async(fn -> Munition.fire_pooled(name, "block", []) end)
    assert_receive {:blocked, node, fun}
    assert node == node()

    assert {:ok, 3, _} = Munition.fire_pooled(name, "add", [1, 2], node: :any)
    assert completed(peer, name) == 1

    send(fun, :release)
    assert {:ok, 1, _} = Task.await(blocked)
    assert completed(node(), name) == 1
  end

  test "a member that leaves stops receiving calls", %{peer: peer, name: name, opts: opts} do
    Peers.start_pool!(peer, opts)
    assert {:ok, 3, _} = Munition.fire_pooled(name, "add", [1, 2], node: :any)
    assert completed(peer, name) == 1

    Peers.stop_pool!(peer, name)
    assert Placement.member_nodes(name) == []
    assert {:error, {:pool_unavailable, _}} = Munition.fire_pooled(name, "add", [1, 2], node: :any)
  end

  test "per-call options reach a remote member, wasi: among them", %{peer: peer, name: name, opts: opts} do
    Peers.start_pool!(peer, opts)

    for node <- [peer, :any] do
      assert {:ok, 3, _} =
               Munition.fire_pooled(name, "add", [1, 2], node: node, wasi: [args: ["x"]], fuel: 1_000)
    end

    assert completed(peer, name) == 2
  end

  test "a caller's mistake raises here", %{name: name} do
    assert_raise ArgumentError, ~r/fixed when the pool starts/, fn ->
      Munition.fire_pooled(name, "add", [1, 2], node: :any, capabilities: [:time])
    end

    for at <- [:node, :caller] do
      assert_raise ArgumentError, ~r/host_functions_at is fixed by each pool.*got: #{inspect(at)}/, fn ->
        Munition.fire_pooled(name, "add", [1, 2], node: :any, host_functions_at: at)
      end
    end

    # Shapes are checked here; a node's own directories there.
    assert_raise ArgumentError, ~r/got: -1/, fn ->
      Munition.fire_pooled(name, "add", [1, 2], node: :any, fuel: -1)
    end
  end

  test "node: names the member, whose host functions run on its node; stats/0 reports it running", %{
    peer: peer,
    name: name,
    opts: opts
  } do
    Peers.start_pool!(peer, opts)
    blocked = Task.async(fn -> Munition.fire_pooled(name, "block", [], node: peer) end)
    assert_receive {:blocked, ^peer, fun}

    stats = Munition.Cluster.stats()
    assert %{running: 1, waiting: 0, pools: %{^name => %{running: 1, size: 1}}} = stats[peer]
    assert %{running: _, waiting: _, served: _, modules: %{hits: _, misses: _}} = stats[node()]

    send(fun, :release)
    assert {:ok, 1, _} = Task.await(blocked)
    assert %{running: 0, pools: %{^name => %{running: 0, completed: 1}}} = Munition.Cluster.stats()[peer]
  end

  test "a pool of a component on a member: WIT values both ways, its host function on its node", %{
    peer: peer,
    name: name
  } do
    wat = Munition.Fixtures.plugin_wat(:component, 1, name)

    opts = [
      name: name,
      wasm: wat,
      size: 1,
      host_functions: [Peers.twice(:component, self())],
      capabilities: [:twice]
    ]

    Peers.start_pool!(peer, opts)

    assert {:ok, 43, _} = Munition.fire_pooled(name, "run", [21], node: peer)
    assert_receive {:twice, ^peer, 21}
    assert {:ok, "héllo", _} = Munition.fire_pooled(name, "greet", ["héllo"], node: :any)
    assert {:error, {:bad_args, _}} = Munition.fire_pooled(name, "run", ["x"], node: peer)

    assert {:crash, :fuel_exhausted, %{fuel_consumed: 1_000}} =
             Munition.fire_pooled(name, "spin", [], node: peer, fuel: 1_000)

    assert completed(peer, name) == 2
  end

  test "a pooled call without :timeout leaves each member's pool its own; one with it is cut to what is left" do
    deadline = System.monotonic_time(:millisecond) + 100
    assert Munition.Cluster.Call.time_left([fuel: 10], deadline) == [fuel: 10]
    assert [timeout: left, fuel: 10] = Munition.Cluster.Call.time_left([timeout: 5_000, fuel: 10], deadline)
    assert left in 1..100
  end

  describe "Placement.order/2" do
    test "the local member alone decides when it has room" do
      stats = %{node() => %{size: 2, running: 1, waiting: 0}}
      assert Placement.order([:a@x, node(), :b@x], stats) == [node(), :a@x, :b@x]
    end

    test "otherwise the fewest waiting, then the fewest running; members without a pool are left out, silent ones go last" do
      stats = %{
        node() => %{size: 1, running: 1, waiting: 2},
        a@x: %{size: 4, running: 4, waiting: 1},
        b@x: %{size: 4, running: 3, waiting: 0},
        c@x: %{size: 4, running: 2, waiting: 0},
        d@x: nil,
        e@x: :no_answer
      }

      assert Placement.order([node(), :e@x, :a@x, :b@x, :c@x, :d@x], stats) == [
               :c@x,
               :b@x,
               :a@x,
               node(),
               :e@x
             ]
    end
  end

  test "a pool and the node's server join their groups again when the :pg scope restarts" do
    name = :"rejoin_#{System.unique_integer([:positive])}"
    add = ~s{(module (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))}
    pool = start_supervised!({Munition.Pool, name: name, wasm: add})
    scope = Process.whereis(Munition.Cluster)
    assert pool in :pg.get_members(Munition.Cluster, Placement.group(name))

    monitor = Process.monitor(scope)
    Process.exit(scope, :kill)
    assert_receive {:DOWN, ^monitor, :process, _, :killed}

    # Restarted empty by its supervisor; the pool and the server join again.
    Sync.until(fn ->
      Process.whereis(Munition.Cluster) not in [nil, scope] and
        pool in :pg.get_members(Munition.Cluster, Placement.group(name)) and
        Process.whereis(Munition.Cluster.Server) in :pg.get_members(Munition.Cluster, :munition_nodes)
    end)

    assert Placement.member_nodes(name) == [node()]
    assert {:ok, 3, _} = Munition.fire_pooled(name, "add", [1, 2], node: :any)
  end

  describe "Placement.ready_window/2" do
    test "a share of the time left, doubled each round; the deadline once it reaches it or is too short" do
      in_a_minute = System.monotonic_time(:millisecond) + 60_000
      assert Placement.ready_window(in_a_minute, 0) == 250
      assert Placement.ready_window(in_a_minute, 1) == 500
      assert Placement.ready_window(in_a_minute, 3) == 2_000

      # A quarter of about a second, then eight times that: past the deadline.
      in_a_second = System.monotonic_time(:millisecond) + 1_000
      assert Placement.ready_window(in_a_second, 0) in 10..250
      assert Placement.ready_window(in_a_second, 3) == nil

      # A quarter of 20 ms is not worth another spawn.
      assert Placement.ready_window(System.monotonic_time(:millisecond) + 20, 0) == nil
    end
  end
end

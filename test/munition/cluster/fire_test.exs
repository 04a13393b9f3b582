defmodule Munition.Cluster.FireTest do
  # Calls on a real peer node (one, shared by the module's tests); the VM
  # becomes distributed here only.
  use ExUnit.Case, async: false
  import Bitwise

  alias Munition.Forensics.Dump
  alias Munition.Host.Context
  alias Munition.Peers

  @add ~s{(module (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))}
  @spin ~s{(module (func (export "f") (loop br 0)))}
  @crash ~s{(module (memory (export "memory") 1) (data (i32.const 16) "remote secret")
    (global $g (mut i32) (i32.const 42))
    (func $inner (param i32) (result i32) (global.set $g (local.get 0)) unreachable)
    (func (export "boom") (param i32) (result i32) (call $inner (local.get 0))))}
  @where ~s{(module (import "env" "where" (func $w (result i32))) (func (export "run") (result i32) (call $w)))}
  @block ~s{(module (import "env" "block" (func $b (result i32))) (func (export "run") (result i32) (call $b)))}
  @peek ~s{(module (import "env" "peek" (func $peek (param i32 i32) (result i32)))
    (memory (export "memory") 1) (data (i32.const 0) "hello")
    (func (export "run") (result i32)
      (i32.add (call $peek (i32.const 0) (i32.const 5)) (i32.load8_u (i32.const 100)))))}

  setup_all do
    {peer, node} = Peers.start!("cluster_fire")
    on_exit(fn -> Peers.stop(peer) end)
    %{peer: node}
  end

  defp stats(node), do: :erpc.call(node, Munition.Cluster, :local_stats, [])

  describe "fire/4 with node:" do
    test "returns the tuple the local call returns, and runs there", %{peer: peer} do
      served = stats(peer).served
      assert {:ok, 5, remote} = Munition.fire(@add, "add", [2, 3], node: peer)
      assert {:ok, 5, local} = Munition.fire(@add, "add", [2, 3])
      assert Map.delete(remote, :execution_time_us) == Map.delete(local, :execution_time_us)
      assert stats(peer).served == served + 1
    end

    test "a crash comes back with its whole dump, data only", %{peer: peer} do
      assert {:crash, :trap, remote} = Munition.fire(@crash, "boom", [7], node: peer)
      assert {:crash, :trap, local} = Munition.fire(@crash, "boom", [7])

      comparable = &Map.drop(Map.from_struct(&1), [:captured_at, :execution_time_us])
      assert comparable.(remote) == comparable.(local)
      assert remote.trap == :unreachable
      assert [%{func_name: "inner"} | _] = remote.backtrace
      assert Enum.any?(remote.globals, &(&1.value == 7))
      # A field holding a pid, a reference or a resource would not serialize.
      assert {:ok, ^remote} = remote |> Dump.serialize() |> Dump.deserialize()
      assert {:ok, [_match]} = Munition.Forensics.Analyser.search(remote, "remote secret")
    end

    test "a snapshot travels with its bytes: it runs there from its state, and its dump names it", %{
      peer: peer
    } do
      n = System.unique_integer([:positive]) &&& 0xFFFF

      wat = ~s{(module (global $n (mut i32) (i32.const 0))
        (func (export "init") (param i32) (global.set $n (local.get 0)))
        (func (export "get") (result i32) (global.get $n))
        (func (export "boom") unreachable))}

      assert {:ok, snapshot, _} = Munition.snapshot(wat, "init", [n])
      assert {:ok, ^n, %{module_hash: hash}} = Munition.fire(snapshot, "get", [], node: peer)
      assert hash == snapshot.hash
      assert {:crash, :trap, dump} = Munition.fire(snapshot, "boom", [], node: peer)
      assert dump.module_hash == snapshot.hash
      assert dump.snapshot == Map.take(snapshot.snapshot, [:of, :function])
    end

    test "a module travels once: a repeat call sends its hash only", %{peer: peer} do
      wat = ~s{(module (func (export "k") (result i32) i32.const #{System.unique_integer([:positive])}))}
      before = stats(peer).modules
      shipped = Munition.Cluster.local_stats().modules.bytes_shipped

      assert {:ok, _, _} = Munition.fire(wat, "k", [], node: peer)
      first = stats(peer).modules
      assert first.misses == before.misses + 1
      assert first.bytes_received == before.bytes_received + byte_size(wat)
      assert Munition.Cluster.local_stats().modules.bytes_shipped == shipped + byte_size(wat)

      assert {:ok, _, _} = Munition.fire(wat, "k", [], node: peer)
      repeat = stats(peer).modules
      assert repeat.hits == first.hits + 1
      assert repeat.misses == first.misses
      assert repeat.bytes_received == first.bytes_received
      assert Munition.Cluster.local_stats().modules.bytes_shipped == shipped + byte_size(wat)
    end

    test "other compile limits check the module again", %{peer: peer} do
      wat =
        ~s{(module (func) (func (export "k") (result i32) i32.const #{System.unique_integer([:positive])}))}

      assert {:ok, _, _} = Munition.fire(wat, "k", [], node: peer)
      assert {:error, {:module_limit, _}} = Munition.fire(wat, "k", [], node: peer, limits: [functions: 1])
    end

    test "a module is kept per engine: a call on the other engine compiles it for that one", %{peer: peer} do
      wat = ~s{(module (func (export "k") (result i32) i32.const #{System.unique_integer([:positive])}))}
      wasmi = [node: peer, runtime: Munition.Runtime.Wasmi]

      assert {:ok, k, _} = Munition.fire(wat, "k", [], node: peer)
      before = stats(peer).modules
      assert {:ok, ^k, _} = Munition.fire(wat, "k", [], wasmi)
      assert stats(peer).modules.misses == before.misses + 1
      assert {:ok, ^k, _} = Munition.fire(wat, "k", [], wasmi)
      assert {:ok, ^k, _} = Munition.fire(wat, "k", [], node: peer)
      assert stats(peer).modules.misses == before.misses + 1
    end

    test "an invalid module is the local error", %{peer: peer} do
      assert Munition.fire(<<0, 97, 115, 109, 9>>, "f", [], node: peer) ==
               Munition.fire(<<0, 97, 115, 109, 9>>, "f", [])
    end

    test "the timeout holds: the node stops the guest at its deadline", %{peer: peer} do
      assert {:crash, :timeout, dump} =
               Munition.fire(@spin, "f", [], node: peer, timeout: 100, fuel: 1 <<< 50)

      assert dump.trap == :interrupt
    end

    test "node() runs the call here", %{peer: _peer} do
      served = Munition.Cluster.local_stats().served
      assert {:ok, 5, _} = Munition.fire(@add, "add", [2, 3], node: node())
      assert Munition.Cluster.local_stats().served == served
    end

    test "a caller's mistake raises here", %{peer: peer} do
      assert_raise ArgumentError, ~r/node must be a node name/, fn ->
        Munition.fire(@add, "add", [1, 2], node: "x")
      end

      assert_raise ArgumentError, ~r/:any places pooled calls only/, fn ->
        Munition.fire(@add, "add", [1, 2], node: :any)
      end

      assert_raise ArgumentError, ~r/fuel/, fn -> Munition.fire(@add, "add", [1, 2], node: peer, fuel: -1) end

      {:ok, module} = Munition.compile(@add)

      assert_raise ArgumentError, ~r/takes the module's bytes/, fn ->
        Munition.fire(module, "add", [1, 2], node: peer)
      end

      # Checked on the node that runs the guest, raised here all the same.
      assert_raise ArgumentError, ~r/no host function is registered as :nowhere_registered/, fn ->
        Munition.fire(@where, "run", [],
          node: peer,
          host_functions: [:nowhere_registered],
          host_functions_at: :node
        )
      end
    end

    test "a caller's mistake raises whether or not the node is up, in either host_functions_at" do
      nobody = :"nobody_#{System.pid()}@localhost"

      for at <- [:caller, :node] do
        opts = [node: nobody, host_functions_at: at]

        assert_raise ArgumentError, ~r/got: -1/, fn ->
          Munition.fire(@add, "add", [1, 2], [fuel: -1] ++ opts)
        end

        assert_raise ArgumentError, ~r/:bogus/, fn ->
          Munition.fire(@add, "add", [1, 2], [bogus: 1] ++ opts)
        end

        assert_raise ArgumentError, ~r/got: :sometimes/, fn ->
          Munition.fire(@add, "add", [1, 2], [forensics: :sometimes] ++ opts)
        end

        assert_raise ArgumentError, ~r/compile_timeout must be a positive integer .* got: 0/, fn ->
          Munition.fire(@add, "add", [1, 2], [compile_timeout: 0] ++ opts)
        end
      end

      # A good :compile_timeout is an option of a call on another node too.
      assert Munition.fire(@add, "add", [1, 2], node: nobody, compile_timeout: 100) ==
               {:error, {:nodedown, nobody}}

      # What names the node's own resources is checked there, not here.
      preopens = [wasi: [preopens: [{"/d", "/nonexistent_#{System.pid()}"}]]]
      assert Munition.fire(@add, "add", [1, 2], [node: nobody] ++ preopens) == {:error, {:nodedown, nobody}}

      assert_raise ArgumentError, ~r/node must be a node name \(name@host\) or :any, got: :notanode/, fn ->
        Munition.fire(@add, "add", [1, 2], node: :notanode)
      end
    end

    test "with host_functions_at: :node, a function given inline raises naming it: it never travels", %{
      peer: peer
    } do
      for node <- [peer, node()] do
        assert_raise ArgumentError, ~r/never travels, got: \{"env", "where"/, fn ->
          Munition.fire(@where, "run", [],
            node: node,
            host_functions: [Peers.where(self())],
            capabilities: [:where],
            host_functions_at: :node
          )
        end
      end
    end
  end

  describe "host functions of a call on another node" do
    test "run on the caller's node by default, reading and writing guest memory there", %{peer: peer} do
      test = self()

      peek =
        {"env", "peek", {[:i32, :i32], [:i32]}, :peek,
         fn ctx, ptr, len ->
           {:ok, bytes} = Context.read(ctx, ptr, len)
           :ok = Context.write(ctx, 100, "x")
           send(test, {:peeked, node(), bytes})
           byte_size(bytes)
         end}

      assert {:ok, 125, _meta} =
               Munition.fire(@peek, "run", [], node: peer, host_functions: [peek], capabilities: [:peek])

      assert_receive {:peeked, node, "hello"}
      assert node == node()
    end

    test "run on the node that runs the guest, by name, with host_functions_at: :node", %{peer: peer} do
      :ok = :erpc.call(peer, Munition.Host.Functions, :register, [:cluster_where, Peers.where(self())])

      assert {:ok, 7, _} =
               Munition.fire(@where, "run", [],
                 node: peer,
                 host_functions: [:cluster_where],
                 capabilities: [:where],
                 host_functions_at: :node
               )

      assert_receive {:ran_on, ^peer, _fuel}
    end

    test "the capability gate is the local one", %{peer: peer} do
      where = Peers.where(self())
      local = Munition.fire(@where, "run", [], host_functions: [where])
      assert {:error, {:capability_denied, [%{name: "where", needs: :where}]}} = local
      assert Munition.fire(@where, "run", [], node: peer, host_functions: [where]) == local
      refute_received {:ran_on, _, _}
    end

    test "one that raises on the caller's node is a host error with its message", %{peer: peer} do
      boom = {"env", "where", {[], [:i32]}, :where, fn _ctx -> raise "not today" end}

      assert {:crash, :host_error, dump} =
               Munition.fire(@where, "run", [], node: peer, host_functions: [boom], capabilities: [:where])

      assert dump.message =~ "not today"
    end

    test "one blocked on the caller's node is stopped by the deadline there", %{peer: peer} do
      assert {:crash, :timeout, _dump} =
               Munition.fire(@block, "run", [],
                 node: peer,
                 host_functions: [Peers.block(self())],
                 capabilities: [:block],
                 timeout: 200
               )

      assert_receive {:blocked, _node, fun}
      assert Munition.Sync.await_down(fun) in [:killed, :noproc]
    end

    test "a dying caller cancels its guest on the other node", %{peer: peer} do
      test = self()

      caller =
        spawn(fn ->
          Munition.fire(@block, "run", [],
            node: peer,
            host_functions: [Peers.block(test)],
            capabilities: [:block],
            timeout: 60_000
          )
        end)

      assert_receive {:blocked, _node, fun}
      ref = Process.monitor(fun)
      Process.exit(caller, :kill)
      # The guard on the node saw the caller go and killed the guest's
      # driver; its host-function proxy went with it, and the fun's watchdog
      # here with that.
      assert_receive {:DOWN, ^ref, :process, ^fun, :killed}
    end
  end

  describe "components on another node" do
    test "travel by hash, take and return WIT values, and call host functions on the caller's node",
         %{peer: peer} do
      wat = Munition.Fixtures.plugin_wat(:component, 1, System.unique_integer([:positive]))
      test = self()

      twice =
        Munition.Fixtures.twice_function(:component, fn x ->
          send(test, {:twice, node(), x})
          2 * x
        end)

      opts = [node: peer, host_functions: [twice], capabilities: [:twice]]
      before = stats(peer).modules

      assert {:ok, 43, remote} = Munition.fire(wat, "run", [21], opts)
      assert_receive {:twice, here, 21}
      assert here == node()
      assert stats(peer).modules.misses == before.misses + 1

      # The module is kept there: the next call sends its hash only.
      assert {:ok, "héllo", _} = Munition.fire(wat, "greet", ["héllo"], opts)
      assert stats(peer).modules.hits == before.hits + 1
      assert stats(peer).modules.misses == before.misses + 1

      assert {:ok, 43, local} = Munition.fire(wat, "run", [21], Keyword.delete(opts, :node))
      assert Map.delete(remote, :execution_time_us) == Map.delete(local, :execution_time_us)

      # What the value table refuses, the node says, as locally.
      assert {:error, {:bad_args, message}} = Munition.fire(wat, "run", [-1], opts)
      assert message =~ "out of range for u32"

      assert {:crash, :trap, dump} = Munition.fire(wat, "boom", [], opts)
      assert dump.trap == :unreachable

      # The capability gate and the arity check are the node's, as locally.
      assert {:error, {:capability_denied, [%{name: "twice", needs: :twice}]}} =
               Munition.fire(wat, "run", [1], Keyword.delete(opts, :capabilities))

      wrong = {"my:host/api", "twice", :wit, :twice, fn _ctx, _x, _y -> 0 end}
      local = Munition.fire(wat, "run", [1], host_functions: [wrong], capabilities: [:twice])
      assert {:error, {:instantiation_failed, _}} = local
      assert Munition.fire(wat, "run", [1], Keyword.put(opts, :host_functions, [wrong])) == local
    end
  end
end

defmodule Munition.Peers do
  @moduledoc false
  # Real peer nodes on this machine for the tests of Munition.Cluster
  # (test/munition/cluster/), started with OTP's :peer: loopback only
  # (127.0.0.1 through `localhost`, distribution bound to it), shortnames,
  # names that include the OS pid so that concurrent VMs never collide.
  #
  # This module is compiled into the test build, so peers load it from
  # their code path: the funs below (host functions that report where they
  # ran, or block until released) work on either node.

  import ExUnit.Assertions

  @doc """
  Makes this VM a distributed node (once), starting epmd if none runs.
  """
  def distribute! do
    unless Node.alive?() do
      # `epmd -daemon` returns at once, whether or not one already runs.
      {_, 0} = System.cmd("epmd", ["-daemon"])
      Application.put_env(:kernel, :inet_dist_use_interface, {127, 0, 0, 1})
      {:ok, _} = :net_kernel.start([:"munition_test_#{System.pid()}@localhost", :shortnames])
    end

    :ok
  end

  @doc """
  Starts a peer node named after `name` and this VM's OS pid, with this
  project's code paths and Munition's application started. Returns
  `{peer, node}`. Not linked: a test may halt the node.
  """
  def start!(name) do
    distribute!()
    otp = List.to_string(:code.lib_dir())

    paths =
      Enum.flat_map(:code.get_path(), fn path ->
        if String.starts_with?(List.to_string(path), otp), do: [], else: [~c"-pa", path]
      end)

    args =
      [
        ~c"-kernel",
        ~c"inet_dist_use_interface",
        ~c"{127,0,0,1}",
        ~c"-setcookie",
        Atom.to_charlist(Node.get_cookie())
      ] ++
        paths

    {:ok, peer, node} =
      :peer.start(%{name: :"#{name}_#{System.pid()}", host: ~c"localhost", args: args, wait_boot: 60_000})

    {:ok, _} = :erpc.call(node, Application, :ensure_all_started, [:munition])
    {peer, node}
  end

  @doc "Stops a peer started by `start!/1`, if it still runs."
  def stop(peer) do
    if Process.alive?(peer), do: :peer.stop(peer)
    :ok
  end

  @doc """
  Halts `node` at once (no shutdown: its connections just break, as when a
  machine dies) and waits until this node has seen it go.
  """
  def halt!(node) do
    true = Node.monitor(node, true)
    :erpc.cast(node, :erlang, :halt, [])
    assert_receive {:nodedown, ^node}
    :ok
  end

  @doc """
  Starts a `Munition.Pool` under Munition's supervisor on `node` (this node
  included), so it outlives the call that started it.
  """
  def start_pool!(node, opts) do
    {:ok, pid} = :erpc.call(node, Supervisor, :start_child, [Munition.Supervisor, {Munition.Pool, opts}])
    pid
  end

  @doc "Stops the pool `name` started by `start_pool!/2` on `node`."
  def stop_pool(node, name) do
    :erpc.call(node, Supervisor, :terminate_child, [Munition.Supervisor, {Munition.Pool, name}])
    :erpc.call(node, Supervisor, :delete_child, [Munition.Supervisor, {Munition.Pool, name}])
    :ok
  end

  @doc """
  A host function `env.where` (`() -> i32`, capability `:where`) that sends
  `{:ran_on, node, fuel_remaining}` to `test` and returns 7.
  """
  def where(test) do
    {"env", "where", {[], [:i32]}, :where,
     fn ctx ->
       send(test, {:ran_on, node(), Munition.Host.Context.fuel_remaining(ctx)})
       7
     end}
  end

  @doc """
  A host function `env.block` (`() -> i32`, capability `:block`) that sends
  `{:blocked, node, self()}` to `test` and waits for `:release`, then
  returns 1.
  """
  def block(test) do
    {"env", "block", {[], [:i32]}, :block,
     fn _ctx ->
       send(test, {:blocked, node(), self()})

       receive do
         :release -> 1
       end
     end}
  end
end

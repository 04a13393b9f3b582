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
    if Node.alive?() do
      :ok
    else
      # `epmd -daemon` returns at once, whether or not one already runs.
      {_, 0} = System.cmd("epmd", ["-daemon"])
      Application.put_env(:kernel, :inet_dist_use_interface, {127, 0, 0, 1})
      {:ok, _} = :net_kernel.start([:"munition_test_#{System.pid()}@localhost", :shortnames])
      :ok
    end
  end

  @doc """
  Starts a peer node named after `name` and this VM's OS pid, with this
  project's code paths, `vm_flags` (emulator flags such as `["+sbwt",
  "none"]`) and Munition's application started. Returns `{peer, node}`.
  Not linked: a test may halt the node.
  """
  def start!(name, vm_flags \\ []) do
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
        Enum.map(vm_flags, &String.to_charlist/1) ++ paths

    {:ok, peer, node} =
      :peer.start(%{name: :"#{name}_#{System.pid()}", host: ~c"localhost", args: args, wait_boot: 60_000})

    {:ok, _} = :erpc.call(node, Application, :ensure_all_started, [:munition])
    {peer, node}
  end

  @doc "Stops a peer started by `start!/2`, if it still runs."
  def stop(peer) do
    :peer.stop(peer)
  catch
    # A peer whose node was halted ends by itself, maybe during the stop.
    :exit, _reason -> :ok
  end

  @doc """
  Halts `node` at once (no shutdown: its connections just break, as when a
  machine dies) and waits until this node has seen it go.
  """
  def halt!(node) do
    true = Node.monitor(node, true)
    :ok = :erpc.cast(node, :erlang, :halt, [])

    receive do
      {:nodedown, ^node} -> :ok
    after
      30_000 -> flunk("#{node} did not go down")
    end
  end

  @doc """
  Starts a `Munition.Pool` under Munition's supervisor on `node` (this node
  included), so that it outlives the call that started it, and waits until
  this node's `:pg` lists it among the pool's members.
  """
  def start_pool!(node, opts) do
    until_members(opts[:name], &(&1 == :join), fn ->
      {:ok, pid} = :erpc.call(node, Supervisor, :start_child, [Munition.Supervisor, {Munition.Pool, opts}])
      pid
    end)
  end

  @doc """
  Stops the pool `name` started by `start_pool!/2` on `node`, and waits until
  this node's `:pg` no longer lists it.
  """
  def stop_pool!(node, name) do
    until_members(name, &(&1 == :leave), fn ->
      [pid] =
        for {{Munition.Pool, ^name}, pid, _, _} <-
              :erpc.call(node, Supervisor, :which_children, [Munition.Supervisor]),
            do: pid

      :ok = :erpc.call(node, Supervisor, :terminate_child, [Munition.Supervisor, {Munition.Pool, name}])
      :ok = :erpc.call(node, Supervisor, :delete_child, [Munition.Supervisor, {Munition.Pool, name}])
      pid
    end)

    :ok
  end

  # Runs `fun`, which returns a pool's pid, and waits for the :pg event
  # (`:join` or `:leave`) of that pid in the pool's group, seen from here.
  defp until_members(name, event?, fun) do
    group = Munition.Cluster.Placement.group(name)
    {ref, _members} = :pg.monitor(Munition.Cluster, group)
    pid = fun.()
    await_event(ref, group, pid, event?)
    :pg.demonitor(Munition.Cluster, ref)
    pid
  end

  defp await_event(ref, group, pid, event?) do
    receive do
      {^ref, event, ^group, pids} ->
        if event?.(event) and pid in pids, do: :ok, else: await_event(ref, group, pid, event?)
    after
      30_000 -> flunk("#{inspect(pid)} never showed in the :pg group #{inspect(group)}")
    end
  end

  @doc """
  The processes of this node whose initial call is `mfa`.
  """
  def processes_running(mfa) do
    for pid <- Process.list(), Process.info(pid, :initial_call) == {:initial_call, mfa}, do: pid
  end

  @doc """
  Runs each `{module, function, args}` in a process of its own, all released
  at once, and returns when all are done.
  """
  def race(mfas) do
    parent = self()

    pids =
      for {m, f, a} <- mfas do
        spawn_link(fn ->
          receive do
            :go -> apply(m, f, a)
          end

          send(parent, {:raced, self()})
        end)
      end

    Enum.each(pids, &send(&1, :go))
    Enum.each(pids, fn pid -> assert_receive {:raced, ^pid}, 30_000 end)
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
  The host function of `Munition.Fixtures.plugin_wat/3`'s `twice` import
  for `kind` (`:module` or `:component`), capability `:twice`: sends
  `{:twice, node, x}` to `test` and returns `2 * x`.
  """
  def twice(kind, test) do
    Munition.Fixtures.twice_function(kind, fn x ->
      send(test, {:twice, node(), x})
      2 * x
    end)
  end

  @doc "A call's options that give it `block/1`, with its capability."
  def blocking(test), do: [host_functions: [block(test)], capabilities: [:block]]

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

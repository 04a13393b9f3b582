defmodule Munition.Cluster do
  @moduledoc """
  Calls on other nodes of an Erlang cluster, with Erlang distribution: no
  transport of Munition's own.

      Munition.fire(wasm, "run", [21], node: :"worker@host2")
      Munition.fire_pooled(:rules, "check", [total], node: :any)   # placed among the pool's members
      Munition.fire_pooled(:rules, "check", [total], node: :"worker@host2")
      Munition.Cluster.stats()

  A call on another node returns exactly the tuple it would return there as
  a local call, its `%Munition.Forensics.Dump{}` included (a dump is data:
  it crosses nodes whole). Every node needs Munition's application started
  (it serves the calls that come to it) and the same Munition version.

  ## Modules travel by content hash

  A module is named by the SHA-256 of its bytes (`Munition.Module`'s
  `:hash`). The caller sends the hash, the function, the arguments and the
  options; a node that has compiled those bytes (under the same compile
  limits) runs them at once. Only a node that has not answers with a miss,
  and the caller sends the bytes once: the node compiles them and keeps the
  compiled module for the next calls (at most `module_cache_size` modules,
  the least recently used going first). A `%Munition.Module{}` is compiled code of the
  node that compiled it and cannot travel: a call on another node takes the
  module's bytes (or WAT text). A component travels the same way, its
  arguments and results (WIT values) as the terms they are.

  ## Pools on several nodes

  Each `Munition.Pool` joins the `:pg` group of its name (scope
  `Munition.Cluster`): pools of the same name on several nodes form one
  group. `fire_pooled(name, function, args, node: :any)` places the call:
  the local member first when it has room (a free place and no one waiting),
  otherwise the member with the fewest waiting calls, asked with
  `:erpc.multicall/5` (then the fewest running) for at most a quarter of
  the time left and 250 ms; a member that has not answered by then is tried
  last. A member that leaves (its
  pool stopped, its node down or disconnected) stops receiving calls; a
  member found down or stopped before the call starts there is skipped for
  the next one. Each pool keeps its own module, capabilities and host
  functions: a remote pool's host functions run on its node.

  ## Failures

    * A node that is down or unreachable before the call starts is
      `{:error, {:nodedown, node}}`: nothing ran. A placed pooled call tries
      the next member instead.
    * Nothing runs on the other node without the caller's go-ahead, sent
      only while the call's deadline has not passed: a node that has not
      answered by then is `{:error, {:timeout, message}}`, and nothing ran,
      then or later (a frozen node that thaws ends the call's process
      without running it). A node lost before the go-ahead is
      `{:error, {:nodedown, node}}`.
    * After the go-ahead the guest may have run, and its host functions may
      have had effects; such a call is never retried, whether to try again
      is the caller's decision. A node that goes down (or whose connection
      breaks) then is `{:error, {:node_down_during_call, node}}`; a node
      whose answer has not come by the call's timeout plus
      #{Munition.Cluster.Call.reply_margin_ms()} ms (the node's own backstop and the reply's
      travel) is `{:error, {:no_answer, node}}`: the caller kills the call
      there, which a frozen or partitioned node sees only once it is back,
      and a host function running for it on the caller's node.
    * The call's `:timeout` holds across nodes: the node that runs the guest
      stops it at its deadline (`{:crash, :timeout, dump}`, as locally). A
      pooled call without `:timeout` runs under the member pool's own, and
      the caller waits for its own pool of that name's (or the default).
    * A caller that dies cancels its guest on the other node: the node
      monitors the caller, and a connection that breaks counts as a death.

  ## Elixir host functions

  `host_functions_at:` decides where they run:

    * `:caller` (the default) - on the caller's node. The node running the
      guest gets only their description (import, types, capability) and
      links a proxy in their place, so import resolution and the capability
      gate happen on the guest's node, unchanged; each call of the guest
      sends its arguments to the caller, which runs the fun in a process of
      its own and sends the result back. `Munition.Host.Context` reads and
      writes the guest's memory through that node. Funs never travel. Each
      host call costs a round trip between the nodes; functions of at most 16
      parameters. A component's functions (`:wit`) too: their description
      is the arity of their fun, which the node checks against the import.
    * `:node` - on the node that runs the guest: `host_functions:` then lists
      names registered there with `Munition.Host.Functions.register/2`; a
      function given inline raises `ArgumentError` (it would have to travel).

  ## Options

  `:node` (and `:host_functions_at` for `fire/4`) are given to
  `Munition.fire/4` and `Munition.fire_pooled/4` along with their usual
  options. `:dump_dir`, `:runtime` and `:limits` apply on the node that runs
  the guest, whose application environment also gives the defaults. A
  caller's mistake raises `ArgumentError` before anything travels, whether
  or not the node is up, as far as the option's shape tells it (an unknown
  key, a fuel of `-1`); what names the node's own resources (the runtime
  module, wasi preopens' directories, fuel profiles, host functions
  registered there) is checked there, and raised here when the node says
  so. `node:` takes `name@host` (or `:any` for a pooled call).
  """

  alias Munition.Cluster.{Call, HostProxy, Placement, Server}
  alias Munition.Options

  @doc false
  # Munition.fire/4 with a `:node` option.
  @spec fire(Munition.wasm(), String.t(), list(), keyword()) :: Call.result()
  def fire(wasm, function, args, opts) do
    {cluster, opts} = Options.cluster!(opts)

    cond do
      cluster.node == :any ->
        raise ArgumentError,
              "node: :any places pooled calls only (Munition.fire_pooled/4); fire/4 takes a node name"

      cluster.node == node() ->
        # The same mistakes raise as for another node (an inline function
        # with host_functions_at: :node).
        _ = Options.remote!(opts, cluster.host_functions_at)
        Munition.fire(wasm, function, args, opts)

      true ->
        fire_remote(cluster, wasm, function, args, opts)
    end
  end

  defp fire_remote(cluster, wasm, function, args, opts) do
    bytes = bytes!(wasm)

    # Checked here, so a caller's mistake raises before anything travels,
    # whether or not the node is up; the node checks what depends on it.
    host = Options.remote!(opts, cluster.host_functions_at)

    {request_host, opts} =
      case cluster.host_functions_at do
        :caller -> {HostProxy.describe(host), Keyword.delete(opts, :host_functions)}
        # Names registered on the other node, with the capabilities they bring.
        :node -> {:node, opts}
      end

    timeout = Options.timeout!(Keyword.get_lazy(opts, :timeout, &Munition.Runtime.Config.default_timeout/0))
    opts = Keyword.put(opts, :timeout, timeout)

    request = %{
      kind: :fire,
      module: {:hash, hash(bytes)},
      function: function,
      args: args,
      opts: opts,
      host: request_host
    }

    Call.run(cluster.node, request, bytes, System.monotonic_time(:millisecond) + timeout, host)
  end

  defp bytes!(bytes) when is_binary(bytes), do: bytes

  # A snapshot carries its bytes: it travels as any module does.
  defp bytes!(%Munition.Module{snapshot: %{bytes: bytes}}), do: bytes

  defp bytes!(%Munition.Module{} = module) do
    raise ArgumentError,
          "a call on another node takes the module's bytes (or WAT text): #{inspect(module)} is compiled code of this node"
  end

  defp bytes!(other) do
    raise ArgumentError, "wasm must be wasm bytes, WAT text or a %Munition.Module{}, got: #{inspect(other)}"
  end

  # The content hash Munition.Module names a module by.
  defp hash(bytes), do: :sha256 |> :crypto.hash(bytes) |> Base.encode16(case: :lower)

  @doc false
  # Munition.fire_pooled/4 with a `:node` option.
  @spec fire_pooled(atom(), String.t(), list(), keyword()) :: Call.result()
  def fire_pooled(name, function, args, opts) do
    if Keyword.has_key?(opts, :host_functions_at) do
      raise ArgumentError,
            "host_functions_at is fixed by each pool (a pool's host functions run on its node), got: " <>
              inspect(Keyword.get(opts, :host_functions_at))
    end

    {cluster, opts} = Options.cluster!(opts)

    # Checked here, so a caller's mistake raises before anything travels.
    # Without a :timeout, each member's pool applies its own; this node
    # waits for its own idea of it (its pool of that name's, or the default).
    [] = Options.remote!(opts, :pooled)
    timeout = Options.timeout!(Keyword.get_lazy(opts, :timeout, fn -> default_timeout(name) end))
    deadline = System.monotonic_time(:millisecond) + timeout

    case cluster.node do
      :any ->
        name
        |> Placement.order(Placement.member_nodes(name), deadline)
        |> try_members(name, function, args, opts, deadline)

      node ->
        fire_pooled_on(node, name, function, args, opts, deadline)
    end
  end

  @doc false
  # Tries `nodes` in order for a pooled call, going to the next one where
  # nothing ran: the node was down, its pool gone, or its call's process
  # not there within its window (a frozen or overloaded node must not take
  # the whole deadline while another member could serve). Members given up
  # on that way are tried again, in the same order, with windows twice as
  # long each round (`Placement.ready_window/2`), so a member that is only
  # slow still gets its turn; a window that would reach the deadline is the
  # deadline. A member alone is waited for until the deadline. Nothing runs
  # on a member given up on (it never gets the go-ahead). Public for the
  # tests, which hand it members that went down or froze after they were
  # listed.
  @spec try_members([node()], atom(), String.t(), list(), keyword(), integer()) :: Call.result()
  def try_members(nodes, name, function, args, opts, deadline) do
    none = {:error, {:pool_unavailable, "no member of pool #{inspect(name)} is running on any node"}}
    try_members(nodes, [], 0, {name, function, args, opts, deadline}, none)
  end

  defp try_members([], [], _round, _call, last), do: last

  defp try_members([], given_up, round, call, last),
    do: try_members(Enum.reverse(given_up), [], round + 1, call, last)

  defp try_members([node | rest], given_up, round, {name, function, args, opts, deadline} = call, _last) do
    ready_by =
      if rest != [] or given_up != [] do
        with window when window != nil <- Placement.ready_window(deadline, round),
             do: System.monotonic_time(:millisecond) + window
      end

    case fire_pooled_on(node, name, function, args, opts, deadline, ready_by) do
      {:error, {:not_ready, _}} = error ->
        try_members(rest, [node | given_up], round, call, error)

      {:error, {kind, _}} = error when kind in [:nodedown, :pool_unavailable] ->
        try_members(rest, given_up, round, call, error)

      result ->
        result
    end
  end

  defp fire_pooled_on(node, name, function, args, opts, deadline, _ready_by \\ nil)

  defp fire_pooled_on(node, name, function, args, opts, deadline, _ready_by) when node == node() do
    Munition.fire_pooled(name, function, args, Call.time_left(opts, deadline))
  end

  defp fire_pooled_on(node, name, function, args, opts, deadline, ready_by) do
    request = %{kind: :pooled, pool: name, function: function, args: args, opts: opts}
    Call.run(node, request, nil, deadline, [], ready_by)
  end

  defp default_timeout(name) do
    case Munition.Pool.fetch(name) do
      nil -> Munition.Runtime.Config.default_timeout()
      pool -> pool.options.timeout
    end
  end

  @doc """
  What every node of the cluster running Munition is doing, by node:

    * `:running` - guests running there now (live instances), whatever
      node called them;
    * `:waiting` - calls waiting there: for an instance slot (when every
      one of the engine's `:max_instances` is in use) and in its pools' lines;
    * `:pools` - the stats of each pool running there, by name (as
      `Munition.Pool.stats/1` returns them in `{:ok, stats}`);
    * `:served` - calls it has run for other nodes, since it started;
    * `:modules` - modules it keeps for calls from other nodes, with
      `:hits` and `:misses` (a miss makes the caller send the bytes),
      `:bytes_received` and `:bytes_shipped` (module bytes in and out).

  Nodes are found through the `:pg` group Munition's application joins on
  each node; one that does not answer within `timeout` ms is left out.
  """
  @spec stats(timeout()) :: %{node() => map()}
  def stats(timeout \\ 5_000) do
    nodes =
      Server.scope()
      |> :pg.get_members(Server.group())
      |> Enum.map(&node/1)
      |> Enum.uniq()

    nodes
    |> :erpc.multicall(__MODULE__, :local_stats, [], timeout)
    |> Enum.zip(nodes)
    |> Enum.flat_map(fn
      {{:ok, stats}, node} -> [{node, stats}]
      {_failed, _node} -> []
    end)
    |> Map.new()
  end

  @doc false
  # This node's part of stats/1.
  @spec local_stats() :: map()
  def local_stats do
    pools =
      for {Munition.Pool, name} = group <- :pg.which_groups(Server.scope()),
          :pg.get_local_members(Server.scope(), group) != [],
          # Also a filter: a pool that stopped since it was listed
          # ({:error, _}) is left out, and the node's stats still answer.
          {:ok, stats} <- [Munition.Pool.stats(name)],
          into: %{},
          do: {name, stats}

    counters = Server.counters()

    %{
      running: Munition.Runtime.Config.runtime().live_count(),
      waiting: Munition.Instance.Slots.waiting() + Enum.sum(Enum.map(Map.values(pools), & &1.waiting)),
      pools: pools,
      served: counters.served,
      modules: Map.take(counters, [:modules, :hits, :misses, :bytes_received, :bytes_shipped])
    }
  end

  @doc false
  # Called by each Munition.Pool as it starts: its process joins the group of
  # its name (and leaves it when it stops). Returns a monitor of the :pg
  # scope, whose groups go if it restarts: the pool joins again on its
  # :DOWN (see Munition.Pool); nil without a scope (the application is not
  # started: only local calls).
  @spec join_pool(atom()) :: reference() | nil
  def join_pool(name) do
    case Process.whereis(Server.scope()) do
      nil ->
        nil

      scope ->
        # Monitored first: a scope that goes before or while this joins is a
        # :DOWN too, and the pool tries again.
        monitor = Process.monitor(scope)

        # Joined already when the scope restarted between the lookup above
        # and a join by name of an earlier try: once is enough.
        try do
          unless self() in :pg.get_local_members(Server.scope(), Placement.group(name)),
            do: :pg.join(Server.scope(), Placement.group(name), self())
        catch
          :exit, _gone -> :ok
        end

        monitor
    end
  end
end

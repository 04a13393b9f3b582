defmodule Munition.Cluster.Call do
  @moduledoc false
  # One call on another node, both sides of it, over Erlang distribution: no
  # transport of Munition's own.
  #
  # The caller spawns the call's process on the node, monitored
  # (`:erlang.spawn_request/5`: a node that is down or unreachable answers
  # `:noconnection`, and so does a connection that breaks later) and
  # waits for tagged messages sent to an alias of its own (dropped once the
  # call is over, so a late answer never reaches its mailbox):
  #
  #   * `:miss` - the node has not compiled this module (the request carried
  #     its hash only): the caller sends the request again with the bytes;
  #   * `:started` - the guest is about to run. A connection lost before it
  #     is `{:nodedown, node}` (nothing ran: a pool tries another member); a
  #     connection lost after it is `{:node_down_during_call, node}`, never
  #     retried, since host functions may have had effects;
  #   * `:host_call` - the guest called a host function that runs on the
  #     caller's node (Munition.Cluster.HostProxy);
  #   * `:result` - exactly what the call returned there; `:raise` - the
  #     call was the caller's mistake (an ArgumentError there, raised here).
  #
  # On the node, the call's process (`serve/3`) runs the call (it drives the
  # guest, or waits for its pool's place) with a linked watchdog that
  # monitors the caller (Munition.Host.Calls.watch/1): a caller that dies, or
  # a connection that breaks, makes the watchdog kill the call's process, and
  # the guest goes with it (its store is on that process's heap). The
  # watchdog is off the call's path: nothing waits for it. The node enforces the call's deadline on the guest as any
  # call does; the caller waits for the answer until that deadline plus
  # `reply_margin_ms/0`, then kills the call's process and answers
  # `{:error, {:timeout, message}}`.

  alias Munition.Cluster.{HostProxy, Server}
  alias Munition.Host.Calls

  # The node's own backstop for a guest the engine failed to stop (twice the
  # manager's grace of one second, see Munition.Instance.Manager) and half a
  # second for the answer to travel.
  @reply_margin_ms 2_500

  @doc false
  def reply_margin_ms, do: @reply_margin_ms

  @typedoc "What fire/4 returns."
  @type result ::
          {:ok, term(), map()}
          | {:crash, Munition.Reason.crash(), Munition.Forensics.Dump.t() | nil}
          | {:error, Munition.Reason.error()}

  ## The caller's side

  @doc false
  # Runs `request` on `node` until `deadline` (monotonic ms). A `:fire`
  # request carries the module's hash; `bytes` are sent only if the node
  # answers that it has not compiled them. `host` holds the host functions
  # that run here, in the order of the request's descriptions.
  @spec run(node(), map(), binary() | nil, integer(), [Munition.Host.Function.t()]) :: result()
  def run(node, request, bytes, deadline, host) do
    case start(node, request, deadline, List.to_tuple(host)) do
      :miss ->
        Server.count(:bytes_shipped, byte_size(bytes))
        request = %{request | module: {:bytes, elem(request.module, 1), bytes}}
        start(node, request, deadline, List.to_tuple(host))

      result ->
        result
    end
  end

  defp start(node, request, deadline, host) do
    case deadline - System.monotonic_time(:millisecond) do
      left when left > 0 ->
        reply = :erlang.alias([:explicit_unalias])
        request = %{request | opts: time_left(request.opts, deadline, left)}
        # Answered by {:spawn_reply, ...} only when it fails (:noconnection
        # for a node down or unreachable); the process says when it starts.
        monitor =
          :erlang.spawn_request(node, __MODULE__, :serve, [self(), reply, request], [
            :monitor,
            {:reply, :error_only}
          ])

        try do
          await(%{node: node, pid: nil, monitor: monitor, reply: reply, host: host, started: false}, deadline)
        after
          :erlang.unalias(reply)
        end

      _passed ->
        {:error, {:timeout, "the call's deadline passed before #{node} could start it: nothing ran"}}
    end
  end

  defp await(%{reply: reply, monitor: monitor} = call, deadline) do
    receive do
      {:spawn_reply, ^monitor, :error, :noconnection} ->
        {:error, {:nodedown, call.node}}

      {:spawn_reply, ^monitor, :error, reason} ->
        {:error, {:runtime_failure, "the call could not start on #{call.node}: #{inspect(reason)}"}}

      {^reply, :started, pid} ->
        await(%{call | started: true, pid: pid}, deadline)

      {^reply, :host_call, proxy, ref, index, args, fuel} ->
        HostProxy.run(elem(call.host, index), proxy, ref, args, fuel)
        await(call, deadline)

      {^reply, :result, result} ->
        Process.demonitor(monitor, [:flush])
        result

      {^reply, :miss} ->
        Process.demonitor(monitor, [:flush])
        :miss

      {^reply, :raise, message} ->
        Process.demonitor(monitor, [:flush])
        raise ArgumentError, message

      {:DOWN, ^monitor, :process, _pid, :noconnection} ->
        if call.started,
          do: {:error, {:node_down_during_call, call.node}},
          else: {:error, {:nodedown, call.node}}

      {:DOWN, ^monitor, :process, _pid, reason} ->
        {:error,
         {:runtime_failure, "the call's process on #{call.node} ended without answering: #{inspect(reason)}"}}
    after
      max(deadline + @reply_margin_ms - System.monotonic_time(:millisecond), 0) ->
        if call.pid, do: Process.exit(call.pid, :kill), else: :erlang.spawn_request_abandon(monitor)
        Process.demonitor(monitor, [:flush])

        {:error,
         {:timeout,
          "#{call.node} did not answer within the call's timeout and #{@reply_margin_ms} ms: the call there was killed"}}
    end
  end

  @doc false
  # A call's options with its :timeout, if it gives one, cut to what is left
  # until `deadline` (at least 1 ms: the call then ends as its timeout says).
  # A call without one keeps its pool's own.
  @spec time_left(keyword(), integer(), integer() | nil) :: keyword()
  def time_left(opts, deadline, left \\ nil) do
    if Keyword.has_key?(opts, :timeout),
      do: Keyword.put(opts, :timeout, max(left || deadline - System.monotonic_time(:millisecond), 1)),
      else: opts
  end

  ## The node's side

  @doc false
  # The call's process on the node that runs it (spawned by the caller).
  @spec serve(pid(), reference(), map()) :: term()
  def serve(caller, reply, request) do
    case prepare(request) do
      :miss ->
        send(reply, {reply, :miss})

      {:ok, job} ->
        # Before anything runs: a caller that is already gone (or whose
        # connection broke) kills this process, and the guest with it.
        watchdog = Calls.watch(caller)
        Server.count(:served, 1)
        send(reply, {reply, :started, self()})
        answer = run_job(job, reply)
        Calls.unwatch(watchdog)
        send(reply, answer)
    end
  end

  defp prepare(%{kind: :fire, module: {:hash, hash}} = request) do
    case Server.lookup(hash, limits(request.opts)) do
      nil -> :miss
      module -> {:ok, %{request | module: module}}
    end
  end

  defp prepare(%{kind: :fire, module: {:bytes, _hash, bytes}} = request) do
    Server.count(:bytes_received, byte_size(bytes))
    {:ok, request}
  end

  defp prepare(%{kind: :pooled} = request), do: {:ok, request}

  # The limits a module was checked against: part of its key here, so a
  # call with other limits compiles (and checks) again.
  defp limits(opts) do
    Munition.Runtime.Config.limits!(Keyword.get(opts, :limits, []))
  rescue
    # The caller checked them; one the node refuses is reported by fire/4.
    ArgumentError -> :unchecked
  end

  defp run_job(%{kind: :fire} = job, reply) do
    opts =
      case job.host do
        :node -> job.opts
        descriptions -> Keyword.put(job.opts, :host_functions, HostProxy.functions(descriptions, reply))
      end

    {wasm, hash} =
      case job.module do
        {:bytes, hash, bytes} -> {bytes, hash}
        %Munition.Module{} = module -> {module, nil}
      end

    answer(reply, fn ->
      result = Munition.fire(wasm, job.function, job.args, opts)
      :ok = if hash, do: remember(wasm, hash, job.opts, result), else: :ok
      result
    end)
  end

  defp run_job(%{kind: :pooled} = job, reply) do
    answer(reply, fn -> Munition.fire_pooled(job.pool, job.function, job.args, job.opts) end)
  end

  defp answer(reply, fun) do
    {reply, :result, fun.()}
  rescue
    exception in ArgumentError -> {reply, :raise, Exception.message(exception)}
  end

  # A module that compiled (the call ran, or failed in the guest) is kept
  # for the next call, which sends only its hash. Compiling again here is a
  # hit in the runtime's module cache.
  defp remember(bytes, hash, opts, result) when elem(result, 0) in [:ok, :crash] do
    limits = limits(opts)

    with true <- limits != :unchecked,
         {:ok, %Munition.Module{hash: ^hash} = module} <-
           Munition.compile(bytes, limits: Keyword.get(opts, :limits, [])) do
      Server.remember(module, limits)
    else
      # Not kept: the next call ships the bytes again.
      _other -> :ok
    end
  end

  defp remember(_bytes, _hash, _opts, _result), do: :ok
end

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
  #   * `:ready` - the call's process is there and waits for the caller's
  #     go-ahead. Nothing runs on the node without it: the caller sends it
  #     only while its deadline has not passed, so a caller that gave up
  #     (`{:timeout, _}`) or saw the node go (`{:nodedown, _}`, a pool then
  #     tries another member) knows that nothing ran, even if a frozen or
  #     slow node spawns the process later. That costs one message each way
  #     per call;
  #   * `:host_call` - the guest called a host function that runs on the
  #     caller's node (Munition.Cluster.HostProxy);
  #   * `:result` - exactly what the call returned there; `:raise` - the
  #     call was the caller's mistake (an ArgumentError there, raised here).
  #
  # After the go-ahead the guest may have run: a connection lost then is
  # `{:node_down_during_call, node}`, and an answer that does not come by the
  # deadline plus `reply_margin_ms/0` is `{:no_answer, node}` (the caller
  # kills the call's process there, which may be too late). Neither is ever
  # retried.
  #
  # On the node, the call's process (`serve/3`) runs the call (it drives the
  # guest, or waits for its pool's place) with a linked watchdog that
  # monitors the caller (Munition.Host.Calls.watch/1): a caller that dies, or
  # a connection that breaks, makes the watchdog kill the call's process, and
  # the guest goes with it (its store is on that process's heap). The
  # watchdog is off the call's path: nothing waits for it. A go-ahead that
  # does not come within the time the caller had left plus the margin (as
  # measured there) ends the process without running anything. The node
  # enforces the call's deadline on the guest as any call does.

  alias Munition.Cluster.{HostProxy, Server}
  alias Munition.Host.Calls
  alias Munition.Options

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
  #
  # With `ready_by` (monotonic ms, before the deadline), a node whose call's
  # process has not said `:ready` by then is given up on with
  # `{:error, {:not_ready, node}}`: nothing ran there, and a placed call
  # tries its next member instead of spending its whole deadline on a
  # frozen one (see Munition.Cluster.try_members/6).
  @spec run(node(), map(), binary() | nil, integer(), [Munition.Host.Function.t()], integer() | nil) ::
          result() | {:error, {:not_ready, node()}}
  def run(node, request, bytes, deadline, host, ready_by \\ nil) do
    case start(node, request, deadline, List.to_tuple(host), ready_by) do
      :miss ->
        Server.count(:bytes_shipped, byte_size(bytes))
        request = %{request | module: {:bytes, elem(request.module, 1), bytes}}
        start(node, request, deadline, List.to_tuple(host), ready_by)

      result ->
        result
    end
  end

  defp start(node, request, deadline, host, ready_by) do
    case deadline - System.monotonic_time(:millisecond) do
      left when left > 0 ->
        reply = :erlang.alias([:explicit_unalias])

        # How long the node's process waits for the go-ahead: as long as the
        # caller may still send it.
        may_go =
          if ready_by, do: max(min(ready_by, deadline) - System.monotonic_time(:millisecond), 0), else: left

        request =
          Map.put(
            %{request | opts: time_left(request.opts, deadline, left)},
            :wait,
            may_go + @reply_margin_ms
          )

        # Answered by {:spawn_reply, ...} only when it fails (:noconnection
        # for a node down or unreachable); the process says when it is there.
        monitor =
          :erlang.spawn_request(node, __MODULE__, :serve, [self(), reply, request], [
            :monitor,
            {:reply, :error_only}
          ])

        # `pid` is known, and `go` true, once the go-ahead is sent.
        call = %{
          node: node,
          pid: nil,
          monitor: monitor,
          reply: reply,
          host: host,
          go: false,
          host_pid: nil,
          ready_by: ready_by && min(ready_by, deadline)
        }

        try do
          await(call, deadline)
        after
          :erlang.unalias(reply)
        end

      _passed ->
        {:error, {:timeout, not_started(node)}}
    end
  end

  defp not_started(node), do: "the call's deadline passed before #{node} could start it: nothing ran"

  defp await(%{reply: reply, monitor: monitor} = call, deadline) do
    receive do
      {:spawn_reply, ^monitor, :error, :noconnection} ->
        {:error, {:nodedown, call.node}}

      {:spawn_reply, ^monitor, :error, reason} ->
        {:error, {:runtime_failure, "the call could not start on #{call.node}: #{inspect(reason)}"}}

      {^reply, :ready, pid} ->
        if System.monotonic_time(:millisecond) < deadline do
          send(pid, {:munition_cluster_go, reply})
          await(%{call | go: true, pid: pid}, deadline)
        else
          # No go-ahead: it never runs. Killed rather than left to wait.
          Process.exit(pid, :kill)
          Process.demonitor(monitor, [:flush])
          {:error, {:timeout, not_started(call.node)}}
        end

      {^reply, :host_call, proxy, ref, index, args, fuel} ->
        host_pid = HostProxy.run(elem(call.host, index), proxy, ref, args, fuel)
        await(%{call | host_pid: host_pid}, deadline)

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
        if call.go,
          do: unanswered(call, {:error, {:node_down_during_call, call.node}}),
          else: {:error, {:nodedown, call.node}}

      {:DOWN, ^monitor, :process, _pid, reason} ->
        unanswered(
          call,
          {:error,
           {:runtime_failure,
            "the call's process on #{call.node} ended without answering: #{inspect(reason)}"}}
        )
    after
      max(wait_until(call, deadline) - System.monotonic_time(:millisecond), 0) ->
        Process.demonitor(monitor, [:flush])

        cond do
          call.go ->
            # Too late, maybe: the guest may have run, or may still run.
            Process.exit(call.pid, :kill)
            unanswered(call, {:error, {:no_answer, call.node}})

          # A process spawned after this never gets the go-ahead.
          call.ready_by && call.ready_by < deadline ->
            give_up(call)
            {:error, {:not_ready, call.node}}

          true ->
            give_up(call)
            {:error, {:timeout, not_started(call.node)}}
        end
    end
  end

  # Nothing more of a call given up on before its go-ahead reaches the
  # caller's mailbox (a caller may be a GenServer that goes on to other
  # work): the alias goes, and what it or the spawn answered in between is
  # dropped.
  defp give_up(%{reply: reply, monitor: monitor}) do
    :erlang.unalias(reply)

    unless :erlang.spawn_request_abandon(monitor) do
      receive do
        {:spawn_reply, ^monitor, _, _} -> :ok
      after
        0 -> :ok
      end
    end

    flush(reply)
  end

  defp flush(reply) do
    receive do
      message when is_tuple(message) and tuple_size(message) > 1 and elem(message, 0) == reply -> flush(reply)
    after
      0 -> :ok
    end
  end

  # Before the go-ahead nothing runs there: the caller stops waiting at the
  # deadline, or at `ready_by` when it has one. After it, the node stops the
  # guest at its deadline and the caller allows the margin for that and for
  # the answer.
  defp wait_until(%{go: true}, deadline), do: deadline + @reply_margin_ms
  defp wait_until(%{ready_by: nil}, deadline), do: deadline
  defp wait_until(%{ready_by: ready_by}, _deadline), do: ready_by

  # A host function running here for a call that ended without its answer
  # (at most one at a time: the guest waits for each) goes with it. A call
  # that answered has no host function left running: its guest waited for
  # each.
  defp unanswered(call, error) do
    if call.host_pid, do: Process.exit(call.host_pid, :kill)
    error
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
        send(reply, {reply, :ready, self()})

        receive do
          {:munition_cluster_go, ^reply} ->
            Server.count(:served, 1)
            answer = run_job(job, reply)
            Calls.unwatch(watchdog)
            send(reply, answer)
        after
          # The caller has given up (or will, before it could send it):
          # nothing runs. It answers only a caller that sent it too late.
          request.wait ->
            Calls.unwatch(watchdog)

            send(
              reply,
              {reply, :result, {:error, {:timeout, "no go-ahead from the caller in time: nothing ran"}}}
            )
        end
    end
  end

  defp prepare(%{kind: :fire, module: {:hash, hash}} = request) do
    case Server.lookup(hash, compiled_for(request.opts)) do
      nil -> :miss
      module -> {:ok, %{request | module: module}}
    end
  end

  defp prepare(%{kind: :fire, module: {:bytes, _hash, bytes}} = request) do
    Server.count(:bytes_received, byte_size(bytes))
    {:ok, request}
  end

  defp prepare(%{kind: :pooled} = request), do: {:ok, request}

  # What a module was compiled for here, part of its key: the runtime (a
  # module is one engine's code) and the limits it was checked against, so
  # a call on the other engine or with other limits compiles (and checks)
  # again.
  defp compiled_for(opts) do
    {Options.runtime!(opts[:runtime]), Munition.Runtime.Config.limits!(Keyword.get(opts, :limits, []))}
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
    compiled_for = compiled_for(opts)

    with {runtime, _limits} <- compiled_for,
         {:ok, %Munition.Module{hash: ^hash} = module} <-
           Munition.compile(bytes, runtime: runtime, limits: Keyword.get(opts, :limits, [])) do
      Server.remember(module, compiled_for)
    else
      # Not kept: the next call ships the bytes again.
      _other -> :ok
    end
  end

  defp remember(_bytes, _hash, _opts, _result), do: :ok
end

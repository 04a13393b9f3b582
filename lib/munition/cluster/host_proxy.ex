defmodule Munition.Cluster.HostProxy do
  @moduledoc false
  # Elixir host functions of a call on another node that run on the caller's
  # node (`host_functions_at: :caller`, the default; see Munition.Cluster).
  #
  # The funs never travel. The caller sends the node that runs the guest a
  # description of each function (import, types, capability); that node
  # gives the guest a proxy in its place, with the same import, types and
  # capability, so the capability gate, import resolution and the checking
  # of results happen there, as for a local call. When the guest calls it,
  # the proxy (in the host-function process Munition.Host.Calls spawned)
  # sends the arguments to the caller, which runs the real fun in a process
  # of its own on its node and sends the reply back. The fun's
  # Munition.Host.Context reads and writes guest memory through the proxy,
  # which does the real access on the guest's node: this module is that
  # context's runtime (`host_read/3`, `host_write/3`).
  #
  # Every process dies with its call: the proxy is killed by Host.Calls at
  # the deadline or when the guest's driver goes; the caller's process is
  # killed by a watchdog on the proxy (Host.Calls.watch/1), which also fires
  # when the connection breaks, and by the caller (Munition.Cluster.Call)
  # when the call ends unanswered: a node that stops answering neither
  # kills the proxy nor breaks the connection.

  alias Munition.Host.{Calls, Context, Function}

  # Proxies are funs of the import's arity, built for each arity up to this.
  @max_params 16

  @doc false
  # What the node running the guest needs to build the proxies: no fun.
  # A component's function (`:wit`) is typed by the component, which only
  # the guest's node compiles: it travels as `{:wit, arity}`, the number of
  # WIT arguments its fun takes, so the proxy has the fun's arity and the
  # guest's node checks it against the import as it checks a local fun.
  @spec describe([Function.t()]) :: [tuple()]
  def describe(functions) do
    Enum.map(functions, fn %Function{} = function ->
      {types, arity} =
        case function.params do
          :wit ->
            {:arity, arity} = Elixir.Function.info(function.fun, :arity)
            {{:wit, arity - 1}, arity - 1}

          params ->
            {{params, function.results}, length(params)}
        end

      if arity > @max_params do
        raise ArgumentError,
              "host function #{function.module}.#{function.name} takes #{arity} " <>
                "arguments; one that runs on the caller's node for a call on another node takes at most " <>
                "#{@max_params} (or register it on that node and pass host_functions_at: :node)"
      end

      {function.module, function.name, types, function.capability}
    end)
  end

  @doc false
  # On the node running the guest: the proxies of `descriptions`, which send
  # each host call to `reply` (the caller's alias for this call).
  @spec functions([tuple()], reference()) :: [tuple()]
  def functions(descriptions, reply) do
    descriptions
    |> Enum.with_index()
    |> Enum.map(fn
      # A fun without even the context: refused by the guest's node as a
      # local one is (its arity is not the import's).
      {{module, name, {:wit, -1}, capability}, _index} ->
        {module, name, :wit, capability, fn -> :never_called end}

      {{module, name, {:wit, arity}, capability}, index} ->
        {module, name, :wit, capability, proxy(arity, reply, index)}

      {{module, name, {params, _results} = types, capability}, index} ->
        {module, name, types, capability, proxy(length(params), reply, index)}
    end)
  end

  for arity <- 0..@max_params do
    args = Macro.generate_arguments(arity, __MODULE__)

    defp proxy(unquote(arity), reply, index) do
      fn context, unquote_splicing(args) -> call_caller(reply, index, context, unquote(args)) end
    end
  end

  # Runs in the host-function process on the guest's node: asks the caller to
  # run function `index`, and serves its memory accesses until it answers.
  defp call_caller(reply, index, context, args) do
    ref = make_ref()
    send(reply, {reply, :host_call, self(), ref, index, args, context.fuel_remaining})
    serve(context, ref)
  end

  defp serve(context, ref) do
    receive do
      {:munition_cluster_host_reply, ^ref, {:ok, value}} ->
        value

      # Host.Calls turns what this raises into the call's host error, with
      # the caller's message.
      {:munition_cluster_host_reply, ^ref, {:error, message}} ->
        raise message

      {:munition_cluster_memory, from, tag, {:read, ptr, len}} ->
        send(from, {:munition_memory, tag, Context.read(context, ptr, len)})
        serve(context, ref)

      {:munition_cluster_memory, from, tag, {:write, ptr, bytes}} ->
        send(from, {:munition_memory, tag, Context.write(context, ptr, bytes)})
        serve(context, ref)
    end
  end

  @doc false
  # On the caller's node: runs `function` for the proxy `proxy`, in a process
  # of its own (the caller goes on serving its call), and answers the proxy.
  @spec run(Function.t(), pid(), reference(), list(), non_neg_integer()) :: pid()
  def run(%Function{} = function, proxy, ref, args, fuel_remaining) do
    spawn(fn ->
      watchdog = Calls.watch(proxy)

      context = %Context{
        call: proxy,
        runtime: __MODULE__,
        function: function.name,
        fuel_remaining: fuel_remaining
      }

      send(proxy, {:munition_cluster_host_reply, ref, Calls.apply_function(function, context, args)})
      Calls.unwatch(watchdog)
    end)
  end

  @doc false
  # Munition.Host.Context's memory access, for a context on the caller's
  # node: the proxy does it and answers as the runtime would.
  @spec host_read(pid(), non_neg_integer(), non_neg_integer()) :: {:ok, reference()}
  def host_read(proxy, ptr, len), do: ask(proxy, {:read, ptr, len})

  @doc false
  @spec host_write(pid(), non_neg_integer(), binary()) :: {:ok, reference()}
  def host_write(proxy, ptr, bytes), do: ask(proxy, {:write, ptr, bytes})

  defp ask(proxy, request) do
    tag = make_ref()
    send(proxy, {:munition_cluster_memory, self(), tag, request})
    {:ok, tag}
  end
end

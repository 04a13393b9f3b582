defmodule Munition.Application do
  @moduledoc false
  use Application

  require Logger

  @impl true
  def start(_type, _args) do
    # The engine's capacity is read once, before anything builds the engine
    # (see Munition.Runtime.Config): first thing, then.
    with :ok <- configure_engines() do
      children = [
        Munition.Fuel.Meter,
        Munition.Instance.Slots,
        # The :pg scope of pools on several nodes, and the server of calls
        # from other nodes (Munition.Cluster). A scope that restarts starts
        # with no groups: the server restarts after it (rest_for_one) and so
        # joins its group again; pools watch the scope themselves
        # (Munition.Cluster.join_pool/1).
        %{
          id: Munition.Cluster,
          type: :supervisor,
          start:
            {Supervisor, :start_link,
             [
               [
                 %{id: :pg, start: {:pg, :start_link, [Munition.Cluster.Server.scope()]}},
                 Munition.Cluster.Server
               ],
               [strategy: :rest_for_one]
             ]}
        }
      ]

      Supervisor.start_link(children, strategy: :one_for_one, name: Munition.Supervisor)
    end
  end

  @doc false
  # Hands the engine capacity of the application environment to every
  # runtime of the node that takes one (the optional callback
  # Munition.Runtime.configure/1): `:ok`, or the first `{:error,
  # {:bad_config, message}}`, which stops the application from starting.
  @spec configure_engines([module()], map()) :: :ok | {:error, {:bad_config, String.t()}}
  def configure_engines(
        runtimes \\ Munition.Runtime.Config.runtimes(),
        wanted \\ Munition.Runtime.Config.engine!()
      ) do
    Enum.reduce_while(runtimes, :ok, fn runtime, :ok ->
      case configure(runtime, wanted) do
        :ok -> {:cont, :ok}
        error -> {:halt, error}
      end
    end)
  end

  defp configure(runtime, wanted) do
    if is_atom(runtime) and Code.ensure_loaded?(runtime) and function_exported?(runtime, :configure, 1) do
      case runtime.configure(wanted) do
        :ok ->
          :ok

        # The engine was built before this start (the application restarted in
        # a running VM, or something used it first): what it has stays.
        {:error, {:too_late, message}} ->
          info = runtime.info()

          unless Enum.all?(wanted, fn {key, value} ->
                   value == nil or not Map.has_key?(info, key) or value == Map.get(info, key)
                 end) do
            Logger.warning("Munition's engine capacity is unchanged (#{inspect(runtime)}): #{message}")
          end

          :ok

        # A capacity the machine cannot hold: the application does not start.
        {:error, {:bad_config, message}} ->
          {:error, {:bad_config, message}}

        # The native library is not loaded (its loading said why): nothing to
        # configure, and every call will say so.
        {:error, :nif_not_loaded} ->
          :ok
      end
    else
      # A runtime without settings, or one that is not a module (which the
      # first call that uses it will say).
      :ok
    end
  end
end

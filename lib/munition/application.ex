defmodule Munition.Application do
  @moduledoc false
  use Application

  @impl true
  def start(_type, _args) do
    children = [
      Munition.Fuel.Meter,
      Munition.Instance.Slots
    ]

    Supervisor.start_link(children, strategy: :one_for_one, name: Munition.Supervisor)
  end
end

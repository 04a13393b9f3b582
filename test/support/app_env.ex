defmodule Munition.AppEnv do
  @moduledoc false
  # Sets a `:munition` application-environment key for one test and restores
  # what was there (or its absence) when the test exits. Tests using it change
  # global state, so they must not be `async: true`.

  import ExUnit.Callbacks, only: [on_exit: 1]

  def put_env(key, value) do
    previous = Application.fetch_env(:munition, key)
    Application.put_env(:munition, key, value)

    on_exit(fn ->
      case previous do
        {:ok, old} -> Application.put_env(:munition, key, old)
        :error -> Application.delete_env(:munition, key)
      end
    end)
  end
end

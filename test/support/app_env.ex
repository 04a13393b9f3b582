defmodule Munition.AppEnv do
  @moduledoc false
  # Sets a `:munition` application-environment key and restores what was
  # there (or its absence): when the test exits (`put_env/2`), or when a
  # function returns (`with_env/3`). Tests using it change global state, so
  # they must not be `async: true`.

  import ExUnit.Callbacks, only: [on_exit: 1]

  def put_env(key, value) do
    previous = Application.fetch_env(:munition, key)
    Application.put_env(:munition, key, value)
    on_exit(fn -> restore(key, previous) end)
  end

  @doc "Runs `fun` with `key` set to `value`, restored after it however it ends."
  def with_env(key, value, fun) do
    previous = Application.fetch_env(:munition, key)
    Application.put_env(:munition, key, value)

    try do
      fun.()
    after
      restore(key, previous)
    end
  end

  defp restore(key, {:ok, old}), do: Application.put_env(:munition, key, old)
  defp restore(key, :error), do: Application.delete_env(:munition, key)
end

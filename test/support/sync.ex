defmodule Munition.Sync do
  @moduledoc false
  # Synchronisation for tests that must not flake on a loaded machine: wait for
  # a message (a monitor's DOWN, a guest's own signal), never sleep for a
  # guessed time, and assert on what happened, never on how long it took. The
  # bounds below only turn a hang into a failure; they are not what a test
  # checks, and are far beyond any wait they guard.

  import ExUnit.Assertions

  # A message that must come is waited for this long before the test fails.
  @patience 30_000

  @doc """
  Waits until `pid` is down (monitoring it: a process already gone is down
  with `:noproc`) and returns the exit reason.
  """
  def await_down(pid) do
    ref = Process.monitor(pid)

    receive do
      {:DOWN, ^ref, :process, ^pid, reason} -> reason
    after
      @patience -> flunk("#{inspect(pid)} did not go down")
    end
  end

  @doc """
  Waits until `Munition.Runtime.Wasmtime.live_count/0` is `expected`.

  A last resort: a store is released when the last reference to its
  instance goes (the NIF resource's destructor), which sends no message. Call it after the process that held the instance is known
  to be down (`await_down/1`), so the poll only covers the few microseconds
  between that process's exit and the release of its heap. Each try yields for
  a millisecond; the number of tries only turns a leaked store into a failure.
  """
  def await_live_count(expected, tries \\ 20_000) do
    await(fn -> Munition.Runtime.Wasmtime.live_count() == expected end, tries, fn ->
      "#{Munition.Runtime.Wasmtime.live_count()} stores are alive, expected #{expected}: a store outlived its call"
    end)
  end

  @doc """
  Waits until `condition` (a function of no arguments) holds: for a state the
  system reaches on its own and announces with no message (a pool's queue, a
  `:pg` membership). Tried every millisecond; the number of tries only turns a
  state never reached into a failure.
  """
  def until(condition, tries \\ @patience) do
    await(condition, tries, fn -> "the awaited condition never held" end)
  end

  defp await(condition, tries, failure) do
    cond do
      condition.() ->
        :ok

      tries == 0 ->
        flunk(failure.())

      true ->
        receive do
        after
          1 -> await(condition, tries - 1, failure)
        end
    end
  end
end

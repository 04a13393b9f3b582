Code.require_file("guests.exs", __DIR__)

defmodule Munition.Guests.LuaReplayTest do
  # Munition.replay/3 on a real interpreter: the Lua 5.4 reactor built from
  # the lua-src crate's sources (examples/guests/interpreters/lua.c,
  # `make interpreters`). Lua seeds math.random from the clock as its state
  # starts (time(NULL), WASI's clock_time_get, in seconds), and every Lua
  # error is a trap with its message on stderr (wasi-libc has no longjmp):
  # a script that prints random numbers and fails crashes with output that
  # changes with the clock, and its replay gives back the first crash's
  # output exactly, whenever it runs.
  #
  # Not async, and compiled once up front with a bound of its own, as the
  # other interpreter tests are.
  use ExUnit.Case, async: false

  import Munition.Guests, only: [read!: 1]

  alias Munition.Forensics.Dump

  @wait 300_000
  @script """
  print("rolled", math.random(1, 1000000000), math.random(1, 1000000000), math.random())
  local t = {}
  for i = 1, 8 do t[#t + 1] = math.random(0, 9) end
  print(table.concat(t, " "))
  error("no luck today")
  """

  setup_all do
    compile = fn runtime ->
      {:ok, module} =
        Munition.compile(read!("interpreters/lua_reactor"),
          runtime: runtime,
          timeout: @wait,
          compile_timeout: @wait
        )

      module
    end

    %{wasmtime: compile.(Munition.Runtime.Wasmtime), wasmi: compile.(Munition.Runtime.Wasmi)}
  end

  defp eval(module),
    do:
      Munition.fire(module, "eval", [@script],
        runtime: module.runtime,
        result: :binary,
        capabilities: [:wasi],
        fuel: 2_000_000_000,
        timeout: @wait
      )

  defp assert_same_crash(replayed, dump) do
    for field <- [:reason, :trap, :message, :fuel_consumed, :globals, :stdout, :stderr, :backtrace] do
      assert Map.fetch!(replayed, field) == Map.fetch!(dump, field), "#{field} differs"
    end

    assert Dump.memories_bytes(replayed) == Dump.memories_bytes(dump)
  end

  test "a script seeded by the clock that fails replays with the first call's output, even once the clock has moved",
       %{wasmtime: lua} do
    assert {:crash, :trap, first} = eval(lua)
    assert "rolled\t" <> _ = first.stdout
    assert first.stderr == "eval:5: no luck today\n"
    assert first.replay.log != nil

    assert {:crash, :trap, replayed} = Munition.replay(first, lua)
    assert_same_crash(replayed, first)

    # Fired again until the clock's second has turned: Lua's seed changed,
    # and so did what the script printed.
    later = fire_until_other_output(lua, first.stdout, 100_000)
    assert later.stdout != first.stdout
    assert later.stderr == first.stderr

    # The first crash still replays to its own output, a second later.
    assert {:crash, :trap, replayed_later} = Munition.replay(first, lua)
    assert_same_crash(replayed_later, first)
    # And read back from a file.
    assert {:ok, read} = first |> Dump.serialize() |> Dump.deserialize()
    assert {:crash, :trap, from_file} = Munition.replay(read, lua)
    assert_same_crash(from_file, first)
  end

  test "on Wasmi too", %{wasmi: lua} do
    assert {:crash, :trap, dump} = eval(lua)
    assert dump.replay.engine == :wasmi
    assert dump.stderr == "eval:5: no luck today\n"
    assert {:crash, :trap, replayed} = Munition.replay(dump, lua)
    assert_same_crash(replayed, dump)
  end

  # Fires until the script prints something else than `stdout` (Lua reads
  # the clock in seconds): a count bounds it, not a time.
  defp fire_until_other_output(lua, stdout, left) when left > 0 do
    assert {:crash, :trap, dump} = eval(lua)
    if dump.stdout == stdout, do: fire_until_other_output(lua, stdout, left - 1), else: dump
  end
end

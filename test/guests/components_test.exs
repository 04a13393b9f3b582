Code.require_file("guests.exs", __DIR__)

defmodule Munition.Guests.ComponentsTest do
  # Plugins as WebAssembly components (examples/guests/components: one WIT
  # world, plugin.wit, in JavaScript through componentize-js, in Python
  # through componentize-py and in C through wit-bindgen and the WASI
  # adapter; tools/build_components.sh), run by Munition on
  # Wasmtime: typed calls, errors as results, traps, fuel, deadline, stderr,
  # capabilities, an Elixir host function and dumps, and their compiled
  # code kept on disk. Compiling one takes seconds (tens on a loaded
  # machine): each is compiled once, up front, and the tests run on the
  # compiled module.
  use ExUnit.Case, async: false

  import Munition.Guests, only: [read!: 1]

  alias Munition.Runtime.Wasmtime

  @plugins ~w(components/plugin_js components/plugin_py components/plugin_c)
  @host "munition:plugin/host@0.1.0"

  setup_all do
    # Compiled into a directory of compiled code, and not into the module
    # cache (so the code is compiled and written whatever ran before): a
    # test loads it back as a restarted node would.
    dir = Munition.Tmp.path("components-test")

    on_exit(fn -> File.rm_rf!(dir) end)

    modules =
      for plugin <- @plugins, into: %{} do
        {:ok, module} =
          Wasmtime.compile(read!(plugin), cache_size: 0, compile_cache_dir: dir, timeout: 600_000)

        {plugin, module}
      end

    %{modules: modules, dir: dir}
  end

  # The plugin's `log` import, served by Elixir: each message goes to the test.
  defp log_to(pid),
    do: {@host, "log", :wit, :plugin_log, fn _ctx, message -> send(pid, {:logged, message}) end}

  defp opts(extra \\ []) do
    Keyword.merge(
      [
        capabilities: [:wasi, :plugin_log],
        host_functions: [log_to(self())],
        fuel: 2_000_000_000,
        timeout: 60_000
      ],
      extra
    )
  end

  test "the plugins are components with the world's exports, typed", %{modules: modules} do
    for {plugin, module} <- modules do
      assert module.kind == :component, plugin
      check = Munition.Module.export(module, "check")
      assert check.params == [{"amount", "u32"}, {"country", "string"}]
      assert check.results == ["bool"]
      assert %{results: ["result<u64, string>"]} = Munition.Module.export(module, "total")
      assert Enum.any?(module.imports, &(&1.module == @host and &1.name == "log"))
    end
  end

  test "typed calls: records in, variants, lists and results out", %{modules: modules} do
    for {plugin, module} <- modules do
      assert {:ok, true, _} = Munition.fire(module, "check", [1200, "DE"], opts()), plugin
      assert {:ok, false, _} = Munition.fire(module, "check", [1200, "FR"], opts()), plugin

      assert {:ok, "allow", _} =
               Munition.fire(module, "classify", [%{"amount" => 10, "country" => "FR"}], opts())

      assert {:ok, {"deny", "5000 is over the limit"}, _} =
               Munition.fire(module, "classify", [%{amount: 5000, country: "FR"}], opts())

      assert {:ok, {:ok, 3}, _} = Munition.fire(module, "total", [[1, 2]], opts()), plugin

      assert {:ok, {:error, "zero is not an amount"}, _} = Munition.fire(module, "total", [[0]], opts()),
             plugin
    end
  end

  test "an Elixir host function serves the plugin's import, under its capability", %{modules: modules} do
    for {plugin, module} <- modules do
      assert {:ok, ["hello", "world"], _} = Munition.fire(module, "tags", ["Hello, World"], opts()), plugin
      assert_received {:logged, "tags of 12 characters"}

      assert {:error, {:capability_denied, [%{module: @host, name: "log", needs: :plugin_log}]}} =
               Munition.fire(module, "check", [1, "DE"], opts(capabilities: [:wasi]))

      assert {:error, {:capability_denied, denied}} =
               Munition.fire(module, "check", [1, "DE"], opts(capabilities: [:wasi], host_functions: []))

      assert Enum.any?(denied, &match?(%{module: @host, name: "log", needs: nil}, &1))
    end
  end

  test "a host function that raises is a host_error crash", %{modules: modules} do
    raising = {@host, "log", :wit, :plugin_log, fn _ctx, _message -> raise "no logging today" end}

    for {plugin, module} <- modules do
      assert {:crash, :host_error, dump} =
               Munition.fire(module, "tags", ["a b"], opts(host_functions: [raising]))

      assert dump.message =~ "no logging today", plugin
    end
  end

  test "arguments of the wrong type are bad_args, naming the parameter", %{modules: modules} do
    for {_plugin, module} <- modules do
      assert {:error, {:bad_args, message}} = Munition.fire(module, "check", [-1, "DE"], opts())
      assert message =~ "amount" and message =~ "out of range for u32"
      assert {:error, {:bad_args, message}} = Munition.fire(module, "check", [1, <<0xFF>>], opts())
      assert message =~ "country" and message =~ "UTF-8"
      assert {:error, {:bad_args, message}} = Munition.fire(module, "classify", [%{"amount" => 1}], opts())
      assert message =~ "country"

      # Names stay strings: an unknown one is refused without becoming an atom.
      key = "no-such-field-#{System.unique_integer([:positive])}"
      order = %{"amount" => 1, "country" => "DE", key => 1}
      assert {:error, {:bad_args, message}} = Munition.fire(module, "classify", [order], opts())
      assert message =~ key
      assert_raise ArgumentError, fn -> String.to_existing_atom(key) end
    end
  end

  test "a throw is a trap with the guest's stderr in the dump", %{modules: modules} do
    for {plugin, module} <- modules do
      assert {:crash, :trap, dump} = Munition.fire(module, "fail", ["oops"], opts())
      assert dump.stderr =~ "oops", plugin
      assert dump.backtrace != []
      assert dump.memories != []
    end
  end

  test "an endless loop ends at its fuel, and at its deadline", %{modules: modules} do
    live = Munition.Runtime.Wasmtime.live_count()

    for {plugin, module} <- modules do
      assert {:crash, :fuel_exhausted, dump} = Munition.fire(module, "spin", [], opts(fuel: 50_000_000)),
             plugin

      assert dump.fuel_consumed == 50_000_000

      assert {:crash, :timeout, _dump} =
               Munition.fire(module, "spin", [], opts(fuel: 10 ** 15, timeout: 300)),
             plugin
    end

    assert Munition.Runtime.Wasmtime.live_count() == live
  end

  test "a restarted node loads a plugin's code from the disk and answers its first call", %{dir: dir} do
    for plugin <- @plugins do
      before = Wasmtime.cache_stats()

      assert {:ok, module} = Wasmtime.compile(read!(plugin), cache_size: 0, compile_cache_dir: dir),
             plugin

      now = Wasmtime.cache_stats()

      assert {now.disk.hits - before.disk.hits, now.components.compilations - before.components.compilations} ==
               {1, 0},
             plugin

      assert {:ok, true, _} = Munition.fire(module, "check", [1200, "DE"], opts()), plugin
    end
  end

  test "Wasmi refuses a component by name", %{modules: _} do
    for plugin <- @plugins do
      assert {:error, {:unsupported, message}} =
               Munition.compile(read!(plugin), runtime: Munition.Runtime.Wasmi)

      assert message =~ "is a WebAssembly component"
    end
  end
end

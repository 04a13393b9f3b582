Code.require_file("guests.exs", __DIR__)

defmodule Munition.Guests.ComponentsTest do
  # Plugins as WebAssembly components (examples/guests/components: one WIT
  # world, plugin.wit, in JavaScript through componentize-js, in Python
  # through componentize-py and in C through wit-bindgen and wasm-tools;
  # tools/build_components.sh, which checks plugin_c under Wasmtime's own
  # component runtime). Munition runs core modules only so far: a component
  # is refused by name, on both engines and through every entry point, before
  # any limit or the parser can call a valid binary something it is not (a
  # 12 MB JavaScript plugin used to be `{:module_limit, "module_size: ..."}`,
  # and with the limits raised `{:invalid_module, ...}`; the 37 KB C plugin is
  # under every limit, so only the component check stands before the parser).
  use ExUnit.Case, async: true

  import Munition.Guests, only: [read!: 1]

  # Those that carry their language's interpreter, and the compiled one.
  @interpreted ~w(components/plugin_js components/plugin_py)
  @compiled ~w(components/plugin_c)
  @plugins @interpreted ++ @compiled
  @runtimes [Munition.Runtime.Wasmtime, Munition.Runtime.Wasmi]

  test "the plugins are components, the interpreted ones of real size" do
    for plugin <- @plugins do
      assert <<0, "asm", 0x0D, 0, 1, 0, _::binary>> = read!(plugin), plugin
    end

    for plugin <- @interpreted do
      wasm = read!(plugin)
      assert byte_size(wasm) > 8_000_000, "#{plugin} is #{byte_size(wasm)} bytes"
    end
  end

  test "the C plugin is compiled code, no interpreter" do
    for plugin <- @compiled do
      wasm = read!(plugin)
      assert byte_size(wasm) < 200_000, "#{plugin} is #{byte_size(wasm)} bytes"
    end
  end

  test "a component is refused as a component by fire/4, compile/2, validate/2 and run/2" do
    for plugin <- @plugins, runtime <- @runtimes do
      wasm = read!(plugin)

      for result <- [
            Munition.fire(wasm, "check", [1200, "DE"], runtime: runtime),
            Munition.compile(wasm, runtime: runtime),
            Munition.validate(wasm, runtime: runtime, capabilities: [:wasi]),
            Munition.run(wasm, runtime: runtime, capabilities: [:wasi])
          ] do
        assert {:error, {:unsupported, message}} = result, "#{plugin} on #{inspect(runtime)}"
        assert message =~ "is a WebAssembly component"
      end
    end
  end

  test "a core module's header is not taken for a component" do
    assert {:ok, 5, _} = Munition.fire(~s{(module (func (export "add") (param i32 i32) (result i32)
               local.get 0 local.get 1 i32.add))}, "add", [2, 3])
  end
end

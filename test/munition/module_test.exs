defmodule Munition.ModuleTest do
  use ExUnit.Case, async: true

  alias Munition.Module

  @hash "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

  defp module(fields) do
    struct!(Module, [resource: nil, hash: @hash] ++ fields)
  end

  defmodule WasmiWrapper do
    use Munition.DelegatingRuntime, to: Munition.Runtime.Wasmi
  end

  defmodule OtherEngine do
    use Munition.DelegatingRuntime

    @impl true
    def info, do: %{Munition.Runtime.Wasmtime.info() | engine: :other}
  end

  @add ~s{(module (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))}

  describe "runtime!/2" do
    test "a module runs on the runtime that compiled it" do
      {:ok, module} = Munition.compile(@add, runtime: Munition.Runtime.Wasmi)
      assert Munition.Module.runtime!(module, Munition.Runtime.Wasmi) == module
    end

    test "a module runs on any runtime of the same engine: a wrapper of Wasmi runs Wasmi's modules" do
      {:ok, module} = Munition.compile(@add, runtime: Munition.Runtime.Wasmi)
      assert Munition.Module.runtime!(module, WasmiWrapper) == module
      assert {:ok, 5, _} = Munition.fire(module, "add", [2, 3], runtime: WasmiWrapper)

      {:ok, wrapped} = Munition.compile(@add, runtime: WasmiWrapper)
      assert {:ok, 5, _} = Munition.fire(wrapped, "add", [2, 3], runtime: Munition.Runtime.Wasmi)
    end

    test "a module given to a runtime of another engine raises, naming both" do
      {:ok, module} = Munition.compile(@add)

      assert_raise ArgumentError,
                   ~r/compiled by Munition.Runtime.Wasmtime and cannot run on Munition.ModuleTest.OtherEngine/,
                   fn -> Munition.Module.runtime!(module, OtherEngine) end

      assert_raise ArgumentError, ~r/cannot run on Munition.Runtime.Wasmtime/, fn ->
        Munition.Module.runtime!(%{module | runtime: WasmiWrapper}, Munition.Runtime.Wasmtime)
      end
    end
  end

  describe "export/2" do
    test "finds an export by name, whatever its kind" do
      f = %{name: "f", kind: :func, params: [:i32], results: []}
      memory = %{name: "memory", kind: :memory, params: [], results: []}
      module = module(exports: [memory, f])

      assert Module.export(module, "f") == f
      assert Module.export(module, "memory") == memory
    end

    test "is nil for a name not exported" do
      assert Module.export(module(exports: []), "f") == nil
      assert Module.export(module(exports: [%{name: "F", kind: :func, params: [], results: []}]), "f") == nil
    end

    test "reads a compiled module's exports" do
      {:ok, module} =
        Munition.compile(~s{(module (func (export "add") (param i32 i64) (result f64) f64.const 0))})

      assert Module.export(module, "add") == %{
               name: "add",
               kind: :func,
               params: [:i32, :i64],
               results: [:f64]
             }
    end
  end

  describe "reactor" do
    test "is whether the module exports _initialize() -> (), worked out when it is compiled" do
      {:ok, reactor} = Munition.compile(~s{(module (func (export "_initialize")) (func (export "f")))})
      assert reactor.reactor

      {:ok, plain} = Munition.compile(~s{(module (func (export "f")))})
      refute plain.reactor

      {:ok, other} = Munition.compile(~s{(module (func (export "_initialize") (param i32)))})
      refute other.reactor
    end
  end

  describe "Inspect" do
    test "shows the start of the hash and counts exports and imports, not the resource" do
      import = %{module: "env", name: "x", kind: :func, params: [], results: []}
      export = %{name: "f", kind: :func, params: [], results: []}
      module = module(exports: [export, export], imports: [import], resource: make_ref())

      assert inspect(module) == ~s{#Munition.Module<hash: "0123456789ab…", exports: 2, imports: 1>}
    end

    test "of a compiled module" do
      {:ok, module} = Munition.compile(~s{(module (func (export "f")))})
      prefix = String.slice(module.hash, 0, 12)
      assert inspect(module) == ~s{#Munition.Module<hash: "#{prefix}…", exports: 1, imports: 0>}
    end
  end
end

defmodule Munition.Host.CapabilitiesTest.NoClock do
  @moduledoc false
  # A runtime whose engine offers every built-in of Wasmtime's but the clock.
  use Munition.DelegatingRuntime

  @impl true
  def builtins, do: Enum.reject(Munition.Runtime.Wasmtime.builtins(), &(&1.capability == :time))
end

defmodule Munition.Host.CapabilitiesTest do
  use ExUnit.Case, async: true
  doctest Munition.Host.Capabilities

  alias Munition.Forensics.Dump
  alias Munition.Host.Capabilities

  @time """
  (module
    (import "munition" "get_time_ms" (func $now (result i64)))
    (import "munition" "get_monotonic_ns" (func $mono (result i64)))
    (func (export "now") (result i64) call $now)
    (func (export "elapsed") (result i64) (local i64) (local.set 0 (call $mono)) (i64.sub (call $mono) (local.get 0))))
  """

  @random Munition.Fixtures.random_wat()

  @log Munition.Fixtures.log_wat()

  @abort Munition.Fixtures.abort_wat()

  describe "expand!/2" do
    test "expands groups and sorts" do
      assert Capabilities.expand!([:basic]) == [:abort, :log, :time]
      assert Capabilities.expand!([:all]) == [:abort, :log, :random, :time]
      assert Capabilities.expand!([]) == []
    end

    test "unknown capabilities raise ArgumentError naming them" do
      assert_raise ArgumentError, ~r/unknown capability: :network/, fn -> Capabilities.expand!([:network]) end
      assert_raise ArgumentError, ~r/got: "time"/, fn -> Capabilities.expand!(["time"]) end
      assert_raise ArgumentError, ~r/got: :time/, fn -> Capabilities.expand!(:time) end
    end

    test "the granted set is recorded in metadata and dumps" do
      assert {:ok, _, %{capabilities: [:abort, :log, :time]}} =
               Munition.fire(@time, "now", [], capabilities: [:basic])

      assert {:crash, :trap, %Dump{capabilities: [:log]}} =
               Munition.fire(@log, "then_trap", [], capabilities: [:log])
    end
  end

  describe ":time" do
    test "granted: wall clock and monotonic clock" do
      # Bracketed by the host's clock read before and after: no time bound.
      before = System.os_time(:millisecond)
      assert {:ok, now, _} = Munition.fire(@time, "now", [], capabilities: [:time])
      assert now >= before and now <= System.os_time(:millisecond)
      assert {:ok, elapsed, _} = Munition.fire(@time, "elapsed", [], capabilities: [:time])
      assert elapsed >= 0
    end

    test "denied: every missing import, with the capability that grants it" do
      assert {:error, {:capability_denied, denied}} = Munition.fire(@time, "now", [])

      assert denied == [
               %{module: "munition", name: "get_time_ms", needs: :time},
               %{module: "munition", name: "get_monotonic_ns", needs: :time}
             ]
    end
  end

  describe ":random" do
    test "a wild pointer is a crash, not a write outside the guest" do
      assert {:crash, :trap, %Dump{trap: :memory_out_of_bounds, message: message}} =
               Munition.fire(@random, "fill", [65_000, 1_000], capabilities: [:random])

      assert message =~ "random_bytes"
    end

    test "denied" do
      assert {:error, {:capability_denied, [%{needs: :random}, %{needs: :random}]}} =
               Munition.fire(@random, "two", [], capabilities: [:time])
    end
  end

  describe ":log" do
    test "the log is size-capped" do
      assert {:ok, nil, %{log: lines}} = Munition.fire(@log, "flood", [], capabilities: [:log])
      kept = lines |> Enum.map(fn {_, line} -> byte_size(line) end) |> Enum.sum()
      assert kept <= Munition.Runtime.Config.log_limit()
      assert length(lines) < 10_000
    end

    test "denied" do
      assert {:error, {:capability_denied, [%{module: "munition", name: "log", needs: :log}]}} =
               Munition.fire(@log, "twice", [])
    end
  end

  describe ":abort" do
    test "denied" do
      assert {:error, {:capability_denied, [%{module: "env", name: "abort", needs: :abort}]}} =
               Munition.fire(@abort, "run", [])
    end
  end

  describe "the built-in table" do
    test "comes from the runtime, one map per import" do
      builtins = Capabilities.builtins()
      assert builtins == Munition.Runtime.Wasmtime.builtins()
      # Munition's own six, then WASI's 41 (see Munition.Host.WASITest).
      assert length(builtins) == 47
      assert builtins |> Enum.take(6) |> Enum.map(& &1.module) |> Enum.uniq() == ["munition", "env"]

      for builtin <- builtins do
        assert %{capability: capability, module: module, name: name, params: params, results: results} =
                 builtin

        assert capability in Capabilities.builtin_capabilities()
        assert is_binary(module) and is_binary(name)
        assert Enum.all?(params ++ results, &(&1 in [:i32, :i64, :f32, :f64]))
      end
    end

    test "is the call's runtime's, not the node's" do
      # NoClock has Wasmtime's built-ins but for the :time ones.
      no_clock = Munition.Host.CapabilitiesTest.NoClock
      refute :time in Capabilities.builtin_capabilities(no_clock)
      assert :time in Capabilities.builtin_capabilities()

      assert Capabilities.builtins(no_clock) ==
               Enum.reject(Capabilities.builtins(), &(&1.capability == :time))

      # :basic names :time; NoClock has no built-in to link it to.
      assert Munition.fire(@time, "now", [], capabilities: [:basic], runtime: no_clock) ==
               {:error,
                {:capability_denied,
                 [
                   %{module: "munition", name: "get_time_ms", needs: nil},
                   %{module: "munition", name: "get_monotonic_ns", needs: nil}
                 ]}}

      assert {:error, {:capability_denied, [_, _]}} =
               Munition.validate(@time, capabilities: [:basic], runtime: no_clock)

      assert_raise ArgumentError, ~r/unknown capability: :time/, fn ->
        Munition.fire(@time, "now", [], capabilities: [:time], runtime: no_clock)
      end

      assert {:ok, _now, _meta} = Munition.fire(@time, "now", [], capabilities: [:time])
    end

    test "is the one the moduledocs document" do
      {:docs_v1, _, :elixir, _, %{"en" => moduledoc}, _, _} = Code.fetch_docs(Capabilities)
      {:docs_v1, _, :elixir, _, %{"en" => wasi_doc}, _, _} = Code.fetch_docs(Munition.Host.WASI)

      for %{capability: capability, module: module, name: name} <- Capabilities.builtins() do
        if module == "wasi_snapshot_preview1" do
          # One row per capability in Munition.Host.WASI, listing its functions.
          row = ~r/\|[^|\n]*`#{name}`[^|\n]*\|\s*`#{inspect(capability)}`\s*\|/
          assert wasi_doc =~ row, "no row for #{name} (#{inspect(capability)}) in Munition.Host.WASI"
        else
          row = ~r/\|\s*`#{inspect(capability)}`\s*\|\s*`"#{module}"`\s*\|\s*`#{name}`\s*\|/
          assert moduledoc =~ row, "no row for #{module}.#{name} (#{inspect(capability)}) in the moduledoc"
        end
      end
    end
  end

  describe "resolve/3" do
    test "links each import to a built-in by name, or to an Elixir host function by index" do
      {:ok, module} =
        Munition.compile("""
        (module
          (import "munition" "get_time_ms" (func (result i64)))
          (import "env" "double" (func (param i32) (result i32))))
        """)

      double =
        Munition.Host.Functions.new!({"env", "double", {[:i32], [:i32]}, :math, fn _ctx, x -> x * 2 end})

      assert Capabilities.resolve(module, [:math, :time], [double]) ==
               {:ok, [{:builtin, "munition", "get_time_ms"}, {:elixir, "env", "double", 0, [:i32], [:i32]}]}
    end

    test "each resolution answers for its own module, grants and host functions" do
      {:ok, module} =
        Munition.compile(
          ~s{(module (import "munition" "get_time_ms" (func (result i64))) (import "env" "double" (func (param i32) (result i32))))}
        )

      {:ok, other} = Munition.compile(~s{(module (import "env" "double" (func (param i32) (result i32))))})

      double =
        Munition.Host.Functions.new!({"env", "double", {[:i32], [:i32]}, :math, fn _ctx, x -> x * 2 end})

      halve =
        Munition.Host.Functions.new!({"env", "halve", {[:i32], [:i32]}, :math, fn _ctx, x -> div(x, 2) end})

      linked = {:ok, [{:builtin, "munition", "get_time_ms"}, {:elixir, "env", "double", 1, [:i32], [:i32]}]}

      for _ <- 1..2 do
        assert Capabilities.resolve(module, [:math, :time], [halve, double]) == linked

        assert {:error, {:capability_denied, [%{needs: :time}]}} =
                 Capabilities.resolve(module, [:math], [halve, double])

        assert {:error, {:capability_denied, [%{name: "double"}]}} =
                 Capabilities.resolve(module, [:math, :time], [halve])

        assert Capabilities.resolve(other, [:math], [double]) ==
                 {:ok, [{:elixir, "env", "double", 0, [:i32], [:i32]}]}
      end
    end

    test "the runtime refuses an import nothing links, whatever reaches it" do
      {:ok, module} = Munition.compile(~s{(module (import "munition" "get_time_ms" (func (result i64))))})

      state = %Munition.Instance.State{
        module: module,
        function: "f",
        args: [],
        runtime: Munition.Runtime.Wasmtime,
        fuel: 1_000,
        timeout: 1_000,
        max_memory: 65_536,
        links: []
      }

      assert {:error, {:instantiation_failed, message}} = Munition.Runtime.Wasmtime.instantiate(module, state)

      assert message =~ "munition.get_time_ms"
    end
  end

  describe "inert_links/3" do
    test "a component's WASI 0.2 links: only those that reach nothing, the others skipped" do
      links = [
        {:builtin, "wasi:io/poll@0.2.3", "[method]pollable.block"},
        {:builtin, "wasi:cli/stdout@0.2.3", "get-stdout"},
        {:builtin, "wasi:filesystem/preopens@0.2.3", "get-directories"},
        {:builtin, "wasi:sockets/tcp@0.2.3", "[method]tcp-socket.start-bind"},
        {:builtin, "wasi:http/types@0.2.3", "[method]fields.get"},
        {:builtin, "wasi:http/incoming-handler@0.2.3", "handle"},
        {:elixir, "munition:plugin/host@0.1.0", "log", 0, :wit, :wit}
      ]

      granted = Capabilities.expand!([:wasi])

      assert Capabilities.inert_links(links, granted, Munition.Runtime.Wasmtime) == [
               %{
                 module: "wasi:filesystem/preopens@0.2.3",
                 name: "get-directories",
                 needs: :wasi_fs,
                 reason: :no_preopen
               },
               %{
                 module: "wasi:sockets/tcp@0.2.3",
                 name: "[method]tcp-socket.start-bind",
                 needs: nil,
                 reason: :no_network
               },
               %{
                 module: "wasi:http/types@0.2.3",
                 name: "[method]fields.get",
                 needs: :wasi_http,
                 reason: :no_http_grant
               },
               %{
                 module: "wasi:http/incoming-handler@0.2.3",
                 name: "handle",
                 needs: nil,
                 reason: :not_implemented
               }
             ]
    end
  end

  test "an import of a built-in with the wrong signature cannot be linked" do
    wat = ~s{(module (import "munition" "get_time_ms" (func (result i32))))}
    assert {:error, {:instantiation_failed, message}} = Munition.fire(wat, "f", [], capabilities: [:time])
    assert message =~ "get_time_ms"
  end
end

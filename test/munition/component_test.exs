defmodule Munition.ComponentTest do
  # Components written in WAT, compiled in milliseconds: the value table of
  # `Munition.Component` both ways, and the guarantees every call keeps.
  # Not async: a test counts the node's live stores, which calls of other
  # tests running at once would change.
  use ExUnit.Case, async: false

  # Echo functions: each lifts a core function that returns its argument
  # (or the pointer to it, for values the canonical ABI passes in memory).
  @echo """
  (component
    (core module $m
      (memory (export "memory") 1)
      (global $bump (mut i32) (i32.const 1024))
      (func (export "realloc") (param i32 i32 i32 i32) (result i32)
        (local $p i32)
        (local.set $p (i32.and (i32.add (global.get $bump) (i32.sub (local.get 2) (i32.const 1)))
                               (i32.sub (i32.const 0) (local.get 2))))
        (global.set $bump (i32.add (local.get $p) (local.get 3)))
        (local.get $p))
      (func (export "id32") (param i32) (result i32) local.get 0)
      (func (export "id64") (param i64) (result i64) local.get 0)
      (func (export "idf64") (param f64) (result f64) local.get 0)
      (func (export "pair") (param i32 i32) (result i32)
        (i32.store (i32.const 0) (local.get 0))
        (i32.store (i32.const 4) (local.get 1))
        (i32.const 0))
      (func (export "opt") (param i32 i32) (result i32)
        (i32.store (i32.const 16) (local.get 0))
        (i32.store (i32.const 20) (local.get 1))
        (i32.const 16))
      (func (export "spin") (loop br 0))
      (func (export "boom") unreachable))
    (core instance $i (instantiate $m))
    (func (export "bool") (param "x" bool) (result bool) (canon lift (core func $i "id32")))
    (func (export "u8") (param "x" u8) (result u8) (canon lift (core func $i "id32")))
    (func (export "s64") (param "x" s64) (result s64) (canon lift (core func $i "id64")))
    (func (export "f64") (param "x" float64) (result float64) (canon lift (core func $i "idf64")))
    (func (export "char") (param "x" char) (result char) (canon lift (core func $i "id32")))
    (func (export "string") (param "x" string) (result string)
      (canon lift (core func $i "pair") (memory (core memory $i "memory")) (realloc (core func $i "realloc"))))
    (func (export "bytes") (param "x" (list u8)) (result (list u8))
      (canon lift (core func $i "pair") (memory (core memory $i "memory")) (realloc (core func $i "realloc"))))
    (func (export "words") (param "x" (list string)) (result (list string))
      (canon lift (core func $i "pair") (memory (core memory $i "memory")) (realloc (core func $i "realloc"))))
    (func (export "option") (param "x" (option u32)) (result (option u32))
      (canon lift (core func $i "opt") (memory (core memory $i "memory")) (realloc (core func $i "realloc"))))
    (func (export "nested") (param "x" (option (option bool))) (result (option (option bool)))
      (canon lift (core func $i "nested-id") (memory (core memory $i "memory")) (realloc (core func $i "realloc"))))
    (func (export "result") (param "x" (result u32 (error u32))) (result (result u32 (error u32)))
      (canon lift (core func $i "opt") (memory (core memory $i "memory")) (realloc (core func $i "realloc"))))
    (func (export "spin") (canon lift (core func $i "spin")))
    (func (export "boom") (canon lift (core func $i "boom")))
  )
  """

  setup_all do
    # `nested` needs a core function of three i32s; the WAT above names one
    # that the module does not have, so it is added here.
    wat =
      String.replace(
        @echo,
        ~s{(func (export "spin") (loop br 0))},
        ~s{(func (export "nested-id") (param i32 i32 i32) (result i32)
          (i32.store8 (i32.const 32) (local.get 0))
          (i32.store8 (i32.const 33) (local.get 1))
          (i32.store8 (i32.const 34) (local.get 2))
          (i32.const 32))
        (func (export "spin") (loop br 0))}
      )

    {:ok, module} = Munition.compile(wat)
    %{module: module}
  end

  defp echo(module, function, value) do
    assert {:ok, result, _meta} = Munition.fire(module, function, [value])
    result
  end

  test "a component is a Munition.Module of kind :component, its world typed", %{module: module} do
    assert module.kind == :component

    assert %{params: [{"x", "option<option<bool>>"}], results: ["option<option<bool>>"]} =
             Munition.Module.export(module, "nested")

    assert %{params: [{"x", "result<u32, u32>"}]} = Munition.Module.export(module, "result")

    assert inspect(module) =~ "component"
  end

  test "scalars both ways", %{module: module} do
    assert echo(module, "bool", true) == true
    assert echo(module, "u8", 255) == 255
    assert echo(module, "s64", -(2 ** 63)) == -(2 ** 63)
    assert echo(module, "f64", 1.5) == 1.5
    assert echo(module, "f64", :infinity) == :infinity
    assert echo(module, "f64", :nan) == :nan
    assert echo(module, "char", "é") == "é"
    assert echo(module, "char", ?z) == "z"
  end

  test "strings, bytes and lists", %{module: module} do
    assert echo(module, "string", "héllo") == "héllo"
    assert echo(module, "bytes", <<0, 1, 255>>) == <<0, 1, 255>>
    assert echo(module, "bytes", [7, 8]) == <<7, 8>>
    assert echo(module, "bytes", "") == ""
    assert echo(module, "words", ["a", "bc"]) == ["a", "bc"]
  end

  # Records and variants: the plugins' `classify` (test/guests/components_test.exs).
  test "options and results", %{module: module} do
    assert echo(module, "option", nil) == nil
    assert echo(module, "option", 5) == 5
    assert echo(module, "nested", nil) == nil
    assert echo(module, "nested", {:some, nil}) == {:some, nil}
    assert echo(module, "nested", {:some, true}) == {:some, true}
    assert echo(module, "result", {:ok, 1}) == {:ok, 1}
    assert echo(module, "result", {:error, 2}) == {:error, 2}
  end

  test "what does not fit is bad_args, naming where", %{module: module} do
    for {function, value, expected} <- [
          {"u8", 256, "out of range for u8"},
          {"bool", 1, "true or false"},
          {"string", <<0xC3>>, "UTF-8"},
          {"nested", true, "nested option"},
          {"result", :ok, "needs a payload"}
        ] do
      assert {:error, {:bad_args, message}} = Munition.fire(module, function, [value])
      assert message =~ expected, "#{function}(#{inspect(value)}): #{message}"
      assert message =~ "argument x"
    end

    assert {:error, {:bad_args, _}} = Munition.fire(module, "u8", [1, 2])
    assert {:error, {:function_not_found, "nope"}} = Munition.fire(module, "nope", [])
  end

  test "fuel, the deadline and traps end the call with a dump", %{module: module} do
    live = Munition.Runtime.Wasmtime.live_count()
    assert {:crash, :fuel_exhausted, dump} = Munition.fire(module, "spin", [], fuel: 1_000_000)
    assert dump.fuel_consumed == 1_000_000
    assert {:crash, :timeout, _} = Munition.fire(module, "spin", [], fuel: 10 ** 15, timeout: 100)
    assert {:crash, :trap, dump} = Munition.fire(module, "boom", [])
    assert dump.trap == :unreachable
    assert [%{} | _] = dump.backtrace
    assert [%{size: 65_536}] = dump.memories
    assert Munition.Runtime.Wasmtime.live_count() == live
  end

  test "the binary ABI is for core modules", %{module: module} do
    assert {:error, {:bad_result, message}} = Munition.fire(module, "u8", [1], result: :binary)
    assert message =~ "WIT values"
  end

  # A command: `wasi:cli/run`'s `run`, returning `ok`, `err`, or calling
  # `wasi:cli/exit` with an error (exit code 1).
  defp command(body) do
    """
    (component
      (import "wasi:cli/exit@0.2.0" (instance $e (export "exit" (func (param "status" (result))))))
      (core func $exit (canon lower (func $e "exit")))
      (core module $m
        (import "e" "exit" (func $exit (param i32)))
        (func (export "run") (result i32) #{body}))
      (core instance $ei (export "exit" (func $exit)))
      (core instance $i (instantiate $m (with "e" (instance $ei))))
      (func $run (result (result)) (canon lift (core func $i "run")))
      (instance $r (export "run" (func $run)))
      (export "wasi:cli/run@0.2.0" (instance $r))
    )
    """
  end

  test "run/2 runs a component's wasi:cli/run, its result an exit code" do
    assert {:ok, 0, %{exit_code: 0}} = Munition.run(command("(i32.const 0)"), capabilities: [:wasi])
    assert {:ok, 1, %{exit_code: 1}} = Munition.run(command("(i32.const 1)"), capabilities: [:wasi])

    assert {:ok, 1, %{exit_code: 1}} =
             Munition.run(command("(call $exit (i32.const 1)) (i32.const 0)"), capabilities: [:wasi])

    assert {:error, {:capability_denied, [%{module: "wasi:cli/exit@0.2.0", name: "exit", needs: :wasi_exit}]}} =
             Munition.run(command("(i32.const 0)"), capabilities: [])
  end

  test "an interface's function is called by name, with or without its version" do
    wat = command("(i32.const 0)")
    assert {:ok, :ok, _} = Munition.fire(wat, "wasi:cli/run@0.2.0#run", [], capabilities: [:wasi])
    assert {:ok, :ok, _} = Munition.fire(wat, "wasi:cli/run#run", [], capabilities: [:wasi])

    assert {:error, {:function_not_found, _}} =
             Munition.fire(wat, "wasi:cli/run@0.2.9#run", [], capabilities: [:wasi])
  end

  @host_import """
  (component
    (import "my:host/api" (instance $h (export "twice" (func (param "x" u32) (result u32)))))
    (import "wasi:sockets/network@0.2.3" (instance $net (export "network" (type (sub resource)))))
    (alias export $net "network" (type $network))
    (import "wasi:sockets/instance-network@0.2.3" (instance $in
      (alias outer 1 $network (type $n))
      (export "network" (type (eq $n)))
      (export "instance-network" (func (result (own $n))))))
    (core func $twice (canon lower (func $h "twice")))
    (core module $m
      (import "host" "twice" (func $t (param i32) (result i32)))
      (func (export "quad") (param i32) (result i32) (call $t (call $t (local.get 0)))))
    (core instance $hi (export "twice" (func $twice)))
    (core instance $i (instantiate $m (with "host" (instance $hi))))
    (func (export "quad") (param "x" u32) (result u32) (canon lift (core func $i "quad")))
  )
  """

  test "an Elixir host function serves an import with typed values; a wrong reply is a host_error" do
    twice = {"my:host/api", "twice", :wit, :twice, fn _ctx, x -> x * 2 end}

    assert {:ok, 20, meta} =
             Munition.fire(@host_import, "quad", [5], host_functions: [twice], capabilities: [:twice])

    # Sockets are linked and reach nothing: the audit trail says so.
    assert [
             %{
               module: "wasi:sockets/instance-network@0.2.3",
               name: "instance-network",
               needs: nil,
               reason: :no_network
             }
           ] = meta.inert_links

    wrong = {"my:host/api", "twice", :wit, :twice, fn _ctx, _x -> "twenty" end}

    assert {:crash, :host_error, dump} =
             Munition.fire(@host_import, "quad", [5], host_functions: [wrong], capabilities: [:twice])

    assert dump.message =~ "expected an integer (u32)"

    core_typed = {"my:host/api", "twice", {[:i32], [:i32]}, :twice, fn _ctx, x -> x end}

    assert {:error, {:instantiation_failed, message}} =
             Munition.fire(@host_import, "quad", [5], host_functions: [core_typed], capabilities: [:twice])

    assert message =~ ":wit"
  end

  @clock """
  (component
    (import "wasi:clocks/monotonic-clock@0.2.0" (instance $c (export "now" (func (result u64)))))
    (core func $now (canon lower (func $c "now")))
    (core module $m
      (import "c" "now" (func $now (result i64)))
      (func (export "elapsed") (result i64)
        (local $i i32)
        (loop $l (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $l (i32.lt_u (local.get $i) (i32.const 1000))))
        (call $now)))
    (core instance $ci (export "now" (func $now)))
    (core instance $i (instantiate $m (with "c" (instance $ci))))
    (func (export "elapsed") (result u64) (canon lift (core func $i "elapsed")))
  )
  """

  test "WASI 0.2's clocks are Munition's: deterministic, they count the fuel consumed" do
    opts = [capabilities: [:wasi], wasi: [clock: :deterministic]]
    assert {:ok, clock_ns, %{fuel_consumed: fuel}} = Munition.fire(@clock, "elapsed", [], opts)
    assert {:ok, ^clock_ns, %{fuel_consumed: ^fuel}} = Munition.fire(@clock, "elapsed", [], opts)
    # No wall clock: the deterministic clock reads one nanosecond per unit of
    # fuel, and was read before the last few instructions.
    assert clock_ns > 0 and clock_ns <= fuel
    assert {:ok, real, _} = Munition.fire(@clock, "elapsed", [], capabilities: [:wasi])
    assert is_integer(real)
  end

  @two_memories """
  (component
    (core module $a (memory 2) (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0))))
    (core module $b (memory 2) (func (export "f") (result i32) i32.const 7))
    (core instance $ia (instantiate $a))
    (core instance $ib (instantiate $b))
    (func (export "f") (result u32) (canon lift (core func $ib "f")))
    (func (export "grow") (param "n" u32) (result s32) (canon lift (core func $ia "grow")))
  )
  """

  test ":max_memory bounds all the component's memories together" do
    page = 65_536
    assert {:ok, 7, _} = Munition.fire(@two_memories, "f", [], max_memory: 4 * page)
    assert {:crash, :memory_limit, dump} = Munition.fire(@two_memories, "f", [], max_memory: 3 * page)
    assert dump.message =~ "other memories"
    assert {:crash, :memory_limit, _} = Munition.fire(@two_memories, "grow", [1], max_memory: 4 * page)
    assert {:ok, 2, _} = Munition.fire(@two_memories, "grow", [1], max_memory: 5 * page)
  end
end

Code.require_file("soak_helpers.exs", __DIR__)

defmodule Munition.Soak.HostileInputsTest do
  # Soak: hostile inputs. A guest filling a 4 GiB memory, a table-grow bomb,
  # 200,000 nested blocks (WAT text and binary), 256 MiB that are not a
  # module. Each ends in a result a caller can match (printed, with how long
  # it took), and the VM lives on.
  use ExUnit.Case, async: false

  import Bitwise

  alias Munition.Soak

  @moduletag :soak

  @gib 1 <<< 30
  @page 65_536
  @nesting 200_000
  @junk_size 256 <<< 20
  # An error message is for a person or a log line: this is plenty.
  @max_message 64 * 1024
  # A module that takes seconds to compile here.
  @slow_functions 15
  @slow_ops 20_000

  setup do
    add = Soak.compile!(Soak.add_wat())
    %{add: add, baseline: Soak.live()}
  end

  # The VM lives: a short call still works, and no store is left.
  defp assert_alive(%{add: add, baseline: baseline}, suite) do
    assert {:ok, 5, _} = Munition.fire(add, "f", [2, 3])
    assert Soak.live() == baseline
    Soak.say(suite, "the VM lives: a short call returns 5; stores alive #{Soak.live()}")
  end

  defp took(us), do: "#{Soak.ms(us)} ms"

  describe "a guest filling its memory" do
    @fill ~s{(module (memory (export "memory") 1)
      (func $fill (param $pages i32) (result i32) (local $i i32) (local $n i32)
        (drop (memory.grow (i32.sub (local.get $pages) (i32.const 1))))
        ;; one byte in every 4 KiB page
        (local.set $n (i32.shl (local.get $pages) (i32.const 4)))
        (block $done (loop $touch
          (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
          (i32.store8 (i32.shl (local.get $i) (i32.const 12)) (i32.const 1))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $touch)))
        (memory.size))
      (func (export "fill") (param i32) (result i32) (call $fill (local.get 0)))
      (func (export "fill_and_trap") (param i32) (drop (call $fill (local.get 0))) unreachable)
      (func (export "grow_past") (param i32) (result i32)
        (drop (memory.grow (i32.sub (local.get 0) (i32.const 1))))
        (memory.grow (i32.const 1))))}

    @tag timeout: 1_800_000
    test "4 GiB: grown to the maximum, every page touched; then with a trap and a full dump; then grown past it",
         context do
      pages = pages_to_fill()
      bytes = pages * @page
      {:ok, module} = Munition.compile(@fill)
      opts = [max_memory: bytes, fuel: 1_000_000_000, timeout: 600_000]
      {%{"VmRSS" => rss_before}, _waited} = Soak.settled_memory_kib()

      {us, result} = Soak.timed(fn -> Munition.fire(module, "fill", [pages], opts) end)
      rss_after = Soak.memory_kib()["VmRSS"]

      Soak.say(
        "hostile",
        "fill #{div(bytes, 1 <<< 20)} MiB (#{pages} pages, one byte in every 4 KiB): #{summary(result)} " <>
          "in #{took(us)}; RSS #{rss_before} KiB before, #{rss_after} KiB after the call"
      )

      assert {:ok, ^pages, %{fuel_consumed: _}} = result
      # The memory went back with the store (not a time bound: it is released when fire/4 returns).
      assert rss_after - rss_before < div(bytes, 1024) |> div(4)

      {us, result} = Soak.timed(fn -> Munition.fire(module, "fill_and_trap", [pages], opts) end)
      assert {:crash, :trap, %{trap: :unreachable, memories: [memory]}} = result

      Soak.say(
        "hostile",
        "fill #{div(bytes, 1 <<< 20)} MiB then trap, full dump: #{summary(result)} in #{took(us)}; " <>
          "the dump holds #{memory.size} bytes of memory compressed to #{byte_size(memory.data)}"
      )

      assert memory.size == bytes

      {us, result} = Soak.timed(fn -> Munition.fire(module, "grow_past", [pages], opts) end)
      Soak.say("hostile", "grow one page past #{div(bytes, 1 <<< 20)} MiB: #{summary(result)} in #{took(us)}")
      assert match?({:ok, -1, _}, result) or match?({:crash, :memory_limit, _}, result)

      assert_alive(context, "hostile")
    end
  end

  # 4 GiB when the machine has three times that available (it is shared
  # with other work), else a third of what is available, and it says so.
  defp pages_to_fill do
    [_, kib] = Regex.run(~r/MemAvailable:\s+(\d+) kB/, File.read!("/proc/meminfo"))
    available = String.to_integer(kib) * 1024

    if available >= 3 * 4 * @gib do
      65_536
    else
      pages = div(div(available, 3), @page)
      Soak.say("hostile", "only #{div(available, 1 <<< 20)} MiB available: filling #{pages} pages, not 4 GiB")
      pages
    end
  end

  describe "a table-grow bomb" do
    @tag timeout: 600_000
    test "table.grow in a loop to the limit, one huge grow, and four tables at once", context do
      bomb =
        ~s{(module (table $t0 0 funcref) (table $t1 0 funcref) (table $t2 0 funcref) (table $t3 0 funcref)
        (func $grow1 (result i32)
          (block $full (loop $more
            (br_if $full (i32.lt_s (table.grow $t0 (ref.null func) (i32.const 1)) (i32.const 0)))
            (br $more)))
          (table.size $t0))
        (func (export "one_at_a_time") (result i32) (call $grow1))
        (func (export "huge") (result i32) (table.grow $t1 (ref.null func) (i32.const -1)))
        (func (export "all_four") (result i32)
          (drop (call $grow1))
          (drop (table.grow $t1 (ref.null func) (i32.const 100000)))
          (drop (table.grow $t2 (ref.null func) (i32.const 100000)))
          (drop (table.grow $t3 (ref.null func) (i32.const 100000)))
          (i32.add (i32.add (table.size $t0) (table.size $t1)) (i32.add (table.size $t2) (table.size $t3)))))}

      {:ok, module} = Munition.compile(bomb)

      # Wasmtime charges a table.grow its delta in fuel, granted or not: the
      # huge grow runs out of 100M fuel, and is refused (-1) with 10^13.
      for {function, fuel} <- [
            {"one_at_a_time", 100_000_000},
            {"huge", 100_000_000},
            {"huge", 10_000_000_000_000},
            {"all_four", 100_000_000}
          ] do
        {us, result} = Soak.timed(fn -> Munition.fire(module, function, [], fuel: fuel) end)
        Soak.say("hostile", "table bomb #{function}, fuel #{fuel}: #{summary(result)} in #{took(us)}")
        assert match?({:ok, n, _} when is_integer(n), result) or match?({:crash, _, _}, result)
      end

      assert_alive(context, "hostile")
    end
  end

  describe "deep nesting" do
    @tag timeout: 600_000
    test "200,000 nested blocks: folded WAT, flat WAT and binary", context do
      n = @nesting

      inputs = [
        folded_wat:
          ~s{(module (func (export "f") } <>
            String.duplicate("(block ", n) <> String.duplicate(")", n) <> "))",
        flat_wat:
          ~s{(module (func (export "f") } <>
            String.duplicate("block ", n) <> String.duplicate("end ", n) <> "))",
        binary: nested_binary(n)
      ]

      for {name, bytes} <- inputs do
        {us_compile, compiled} = Soak.timed(fn -> Munition.compile(bytes) end)
        {us_fire, result} = Soak.timed(fn -> Munition.fire(bytes, "f", []) end)

        Soak.say(
          "hostile",
          "#{n} nested blocks, #{name} (#{byte_size(bytes)} bytes): compile/2 #{compile_summary(compiled)} " <>
            "in #{took(us_compile)}; fire/4 (same bytes: a cache hit) #{summary(result)} in #{took(us_fire)}"
        )

        assert match?({:ok, %Munition.Module{}}, compiled) or match?({:error, {:invalid_module, _}}, compiled)
        assert match?({:ok, nil, _}, result) or match?({:error, {:invalid_module, _}}, result)
      end

      assert_alive(context, "hostile")
    end
  end

  # A module whose one function `f` holds `n` nested empty blocks, written
  # byte by byte.
  defp nested_binary(n) do
    body = <<0>> <> :binary.copy(<<0x02, 0x40>>, n) <> :binary.copy(<<0x0B>>, n) <> <<0x0B>>

    <<0, "asm", 1, 0, 0, 0>> <>
      section(1, <<1, 0x60, 0, 0>>) <>
      section(3, <<1, 0>>) <>
      section(7, <<1, 1, "f", 0, 0>>) <>
      section(10, <<1>> <> leb(byte_size(body)) <> body)
  end

  defp section(id, payload), do: <<id>> <> leb(byte_size(payload)) <> payload

  defp leb(n) when n < 0x80, do: <<n>>
  defp leb(n), do: <<(n &&& 0x7F) ||| 0x80>> <> leb(n >>> 7)

  describe "256 MiB that are not a module" do
    @tag timeout: 1_800_000
    test "zero bytes and random bytes, to fire/4 and compile/2 at once", context do
      inputs = [
        zeros: :binary.copy(<<0>>, @junk_size),
        random: :crypto.strong_rand_bytes(@junk_size)
      ]

      counter = Soak.compile!(Soak.counter_wat())

      oversized =
        for {name, bytes} <- inputs do
          # Both entry points at once: each holds a dirty CPU scheduler for its
          # whole compile (the deadline does not cover compiling), so a
          # bystander's guest, which needs dirty schedulers after its first
          # 100 µs, waits meanwhile.
          test = self()
          bystander = spawn_link(fn -> send(test, {:bystander, bystander(counter, [])}) end)
          # With the default limits, 256 MiB is over module_size and refused
          # unread; with the limit raised past it, the bytes reach the parser.
          raised = [limits: [module_size: 2 * @junk_size]]
          fire = Task.async(fn -> Soak.timed(fn -> Munition.fire(bytes, "f", []) end) end)
          compile = Task.async(fn -> Soak.timed(fn -> Munition.compile(bytes) end) end)
          fire_raised = Task.async(fn -> Soak.timed(fn -> Munition.fire(bytes, "f", [], raised) end) end)
          compile_raised = Task.async(fn -> Soak.timed(fn -> Munition.compile(bytes, raised) end) end)

          results = [
            fire: Task.await(fire, :infinity),
            compile: Task.await(compile, :infinity),
            fire_with_limits_raised: Task.await(fire_raised, :infinity),
            compile_with_limits_raised: Task.await(compile_raised, :infinity)
          ]

          send(bystander, :stop)
          calls = receive(do: ({:bystander, calls} -> calls))
          latencies = for {us, _} <- calls, do: us

          Soak.say(
            "hostile",
            "meanwhile a bystander made #{length(calls)} calls of about 3 ms of guest CPU with a 1,000 ms deadline: " <>
              "#{Soak.tally(Enum.frequencies_by(calls, fn {_, outcome} -> outcome end))}; " <>
              "latency median #{Soak.ms(Soak.quantile(latencies, 0.5))} ms, max #{Soak.ms(Enum.max(latencies, fn -> nil end))} ms"
          )

          for {entry, {us, result}} <- results do
            Soak.say(
              "hostile",
              "#{div(@junk_size, 1 <<< 20)} MiB of #{name} bytes to #{entry}: #{junk_summary(result)} in #{took(us)}"
            )

            assert {:error, {kind, message}} = result
            assert kind in [:invalid_module, :module_limit]
            if byte_size(message) > @max_message, do: {name, entry, byte_size(message)}
          end
        end
        |> List.flatten()
        |> Enum.reject(&is_nil/1)

      assert_alive(context, "hostile")

      assert oversized == [],
             "the error message echoes the input: #{inspect(oversized)} ({input, entry point, message bytes})"
    end
  end

  describe "slow compiles" do
    @tag timeout: 1_800_000
    test "a caller's deadline holds while hostile modules compile on every dirty scheduler", context do
      # Valid modules that take seconds to compile (@slow_functions functions
      # of @slow_ops multiply-xors each), one per dirty CPU scheduler, distinct
      # so none is a cache hit. Meanwhile a bystander makes calls of about 3 ms of
      # guest CPU with a 1,000 ms deadline: the manager's own backstop is the
      # deadline plus 1,000 ms of grace, so none should take longer than 2,000 ms.
      dirty = :erlang.system_info(:dirty_cpu_schedulers)
      modules = for k <- 1..dirty, do: slow_module(k)
      counter = Soak.compile!(Soak.counter_wat())
      test = self()

      bystander = spawn_link(fn -> send(test, {:bystander, bystander(counter, [])}) end)

      compiles =
        for bytes <- modules do
          Task.async(fn -> Soak.timed(fn -> Munition.compile(bytes) end) end)
        end
        |> Enum.map(&Task.await(&1, :infinity))

      send(bystander, :stop)
      calls = receive(do: ({:bystander, calls} -> calls))
      latencies = for {us, _} <- calls, do: us
      late = for {us, outcome} <- calls, us > 2_000_000, do: {Soak.ms(us), outcome}

      for {{us, result}, bytes} <- Enum.zip(compiles, modules) do
        Soak.say(
          "hostile",
          "compile/2 of a #{byte_size(bytes)}-byte module: #{compile_summary(result)} in #{took(us)}"
        )

        assert {:ok, %Munition.Module{}} = result
      end

      Soak.say(
        "hostile",
        "meanwhile a bystander made #{length(calls)} calls of about 3 ms of guest CPU with a 1,000 ms deadline: " <>
          "#{Soak.tally(Enum.frequencies_by(calls, fn {_, outcome} -> outcome end))}; latency median " <>
          "#{Soak.ms(Soak.quantile(latencies, 0.5))} ms, max #{Soak.ms(Enum.max(latencies, fn -> nil end))} ms; " <>
          "#{length(late)} past the deadline plus its grace"
      )

      assert_alive(context, "hostile")

      assert late == [],
             "calls returned past their deadline plus grace (ms, outcome) while modules compiled: #{inspect(late)}"
    end
  end

  # A valid module, distinct for each `k`, that takes seconds to compile.
  defp slow_module(k) do
    body = <<0, 0x20, 0>> <> :binary.copy(<<0x41, k, 0x6C, 0x41, 5, 0x73>>, @slow_ops) <> <<0x0B>>
    code = leb(@slow_functions) <> :binary.copy(leb(byte_size(body)) <> body, @slow_functions)

    <<0, "asm", 1, 0, 0, 0>> <>
      section(1, <<1, 0x60, 1, 0x7F, 1, 0x7F>>) <>
      section(3, leb(@slow_functions) <> :binary.copy(<<0>>, @slow_functions)) <>
      section(7, <<1, 1, "f", 0, 0>>) <>
      section(10, code)
  end

  # Counter calls (3,000,000 turns: about 3 ms of guest CPU, on dirty
  # schedulers after the first slice) back to back until :stop.
  defp bystander(counter, calls) do
    receive do
      :stop -> calls
    after
      0 ->
        {us, result} =
          Soak.timed(fn -> Munition.fire(counter, "f", [3_000_000], fuel: 100_000_000, timeout: 1_000) end)

        outcome =
          case result do
            {:ok, 3_000_000, _} -> :ok
            {:crash, reason, _} -> reason
            {:error, {reason, _}} -> reason
          end

        bystander(counter, [{us, outcome} | calls])
    end
  end

  defp summary({:ok, value, meta}), do: "{:ok, #{inspect(value)}, _} (#{meta.fuel_consumed} fuel)"

  defp summary({:crash, reason, dump}),
    do:
      "{:crash, #{inspect(reason)}, _} (trap #{inspect(dump && dump.trap)}: #{dump && String.slice(dump.message || "", 0, 160)})"

  defp summary({:error, {kind, message}}),
    do: "{:error, {#{inspect(kind)}, #{inspect(String.slice(message, 0, 160))}}}"

  defp compile_summary({:ok, %Munition.Module{} = module}),
    do: "{:ok, module} (#{length(module.exports)} export)"

  defp compile_summary(other), do: summary(other)

  # A message that may be huge: its size and its start.
  defp junk_summary({:error, {kind, message}}) do
    "{:error, {#{inspect(kind)}, message}}, the message #{byte_size(message)} bytes: " <>
      inspect(binary_part(message, 0, min(byte_size(message), 120)), binaries: :as_strings)
  end

  defp junk_summary(other), do: inspect(other, limit: 5, printable_limit: 120)
end

defmodule Munition.MultiMemoryTest do
  # Multi-memory (WebAssembly 3.0): modules with several memories run, up to
  # the engine's maximum per module; `:max_memory` bounds them together; every
  # memory is in the dump, the analyser and the coredump.
  use ExUnit.Case, async: true

  alias Munition.Forensics.{Analyser, Dump}

  @page 65_536

  defp max_memories, do: Munition.Runtime.Wasmtime.info().max_memories_per_module

  # A module with `count` one-page memories whose export "f" stores the
  # memory's index + 1 at address 0 of every memory and returns their sum.
  defp memories_module(count) do
    memories = for i <- 0..(count - 1), do: "(memory $m#{i} 1)"

    body =
      for i <- 0..(count - 1) do
        "(i32.store $m#{i} (i32.const 0) (i32.const #{i + 1}))"
      end

    sum = for i <- 0..(count - 1), do: "(i32.load $m#{i} (i32.const 0)) i32.add"

    """
    (module #{Enum.join(memories, " ")}
      (func (export "f") (result i32)
        #{Enum.join(body, " ")}
        i32.const 0 #{Enum.join(sum, " ")}))
    """
  end

  test "the engine's maximum is reported and is at least 2" do
    assert max_memories() >= 2
  end

  test "a module with two memories runs, each memory its own" do
    wat = """
    (module (memory $a 1) (memory $b 1)
      (func (export "f") (result i32)
        (i32.store $a (i32.const 0) (i32.const 7))
        (i32.store $b (i32.const 0) (i32.const 35))
        (i32.add (i32.load $a (i32.const 0)) (i32.load $b (i32.const 0)))))
    """

    assert {:ok, 42, _meta} = Munition.fire(wat, "f", [])
    assert {:ok, module} = Munition.compile(wat)
    assert [%{min_pages: 1}, %{min_pages: 1}] = module.memories
  end

  test "a module with the maximum number of memories runs" do
    count = max_memories()
    assert {:ok, sum, _meta} = Munition.fire(memories_module(count), "f", [])
    assert sum == div(count * (count + 1), 2)
  end

  test "a module with one memory over the maximum is unsupported" do
    count = max_memories() + 1
    assert {:error, {:unsupported, message}} = Munition.fire(memories_module(count), "f", [])
    assert message =~ "#{count} memories"
    assert message =~ "up to #{max_memories()}"
  end

  test "an invalid module with too many memories is invalid, not unsupported" do
    # The body returns an i64 where an i32 is declared: validation fails, and
    # that wins over the memory count.
    memories = String.duplicate("(memory 1) ", max_memories() + 1)
    wat = "(module #{memories} (func (export \"f\") (result i32) i64.const 0))"
    assert {:error, {:invalid_module, message}} = Munition.fire(wat, "f", [])
    assert message =~ "type mismatch"
  end

  test "data written to memory 1 is in the dump's second memory, the analyser and the coredump" do
    wat = """
    (module (memory $a 1) (memory $b 2)
      (data (memory $b) (i32.const 4096) "in the second memory")
      (func (export "f")
        (i32.store8 $a (i32.const 16) (i32.const 0x41))
        (i32.store $b (i32.const 100) (i32.const 0x6e6f6f6d))
        unreachable))
    """

    assert {:crash, :trap, dump} = Munition.fire(wat, "f", [])
    assert [%{index: 0, pages: 1, size: @page}, %{index: 1, pages: 2, size: size}] = dump.memories
    assert size == 2 * @page

    assert {:ok, second} = Dump.memory(dump, 1)
    assert binary_part(second, 100, 4) == "moon"
    assert binary_part(second, 4096, 20) == "in the second memory"
    assert {:ok, first} = Dump.memory(dump, 0)
    assert binary_part(first, 16, 1) == "A"
    refute first =~ "second memory"

    assert {:ok, [4096]} = Analyser.search(dump, "in the second memory", memory: 1)
    assert {:ok, []} = Analyser.search(dump, "in the second memory", memory: 0)
    assert {:ok, regions} = Analyser.regions(dump, memory: 1)
    assert {100, 4} in regions

    assert {:ok, coredump} = Dump.to_coredump(dump)
    assert coredump =~ "in the second memory"
    assert coredump =~ "moon"

    # The dump file keeps both memories.
    assert {:ok, read} = dump |> Dump.serialize() |> Dump.deserialize()
    assert {:ok, ^second} = Dump.memory(read, 1)
  end

  test "without a coredump (a binary result out of bounds) each exported memory is captured under its index" do
    # Memory 1 is the ABI's "memory"; memory 0 is exported under another name.
    wat = """
    (module (memory $a 1) (memory $b 2)
      (export "other" (memory $a)) (export "memory" (memory $b))
      (func (export "f") (result i32 i32)
        (i32.store $a (i32.const 0) (i32.const 1))
        i32.const 0 i32.const 200000))
    """

    assert {:crash, :trap, dump} = Munition.fire(wat, "f", [], result: :binary)
    assert dump.trap == :memory_out_of_bounds
    assert [%{index: 0, pages: 1}, %{index: 1, pages: 2}] = dump.memories
  end

  describe ":max_memory bounds all memories together" do
    test "two memories each under the limit whose sum exceeds it are a memory_limit crash" do
      wat = """
      (module (memory $a 2) (memory $b 2)
        (func (export "grow_a") (param i32) (result i32) (memory.grow $a (local.get 0)))
        (func (export "grow_b") (param i32) (result i32) (memory.grow $b (local.get 0))))
      """

      # 2 + 2 pages at the start; each memory alone stays under 5 pages.
      limit = 5 * @page
      assert {:ok, 2, _} = Munition.fire(wat, "grow_a", [1], max_memory: limit)
      assert {:crash, :memory_limit, dump} = Munition.fire(wat, "grow_b", [2], max_memory: limit)
      assert dump.trap == :memory_limit
      assert dump.message =~ "max_memory of #{limit} bytes"
      assert dump.message =~ "other memories"
      assert [%{index: 0, pages: 2}, %{index: 1, pages: 2}] = dump.memories
      assert {:ok, 2, _} = Munition.fire(wat, "grow_b", [2], max_memory: 6 * @page)
    end

    test "memories whose initial sizes together exceed it do not run" do
      wat = ~s{(module (memory 3) (memory 3) (func (export "f")))}
      assert {:error, {:memory_limit, message}} = Munition.fire(wat, "f", [], max_memory: 5 * @page)
      assert message =~ "2 memories"
      assert message =~ "memory 1: 3 pages"
      assert {:ok, nil, _} = Munition.fire(wat, "f", [], max_memory: 6 * @page)
    end

    test "growing past a memory's own maximum is wasm's -1, not a limit crash" do
      wat = """
      (module (memory $a 1 2) (memory $b 1)
        (func (export "f") (result i32) (memory.grow $a (i32.const 5))))
      """

      assert {:ok, -1, _} = Munition.fire(wat, "f", [], max_memory: 3 * @page)
    end
  end
end

defmodule Munition.Forensics.CoredumpTest do
  use ExUnit.Case, async: true

  alias Munition.Forensics.Dump

  @guest ~S"""
  (module
    (memory (export "memory") 3)
    (global $sp (mut i32) (i32.const 65536))
    (global (export "big") i64 (i64.const -9000000000))
    (global $ratio (mut f32) (f32.const -2.5))
    (global $pi f64 (f64.const 3.25))
    (data (i32.const 16) "coredump me")
    (func $stash (export "run") (param $ptr i32)
      (global.set $sp (i32.sub (global.get $sp) (i32.const 16)))
      (i64.store (local.get $ptr) (i64.const 0x2121743372633373))
      (call $explode))
    (func $explode unreachable))
  """

  setup do
    {:crash, :trap, dump} = Munition.fire(@guest, "run", [150_000])
    {:ok, coredump} = Dump.to_coredump(dump)
    %{dump: dump, coredump: coredump, parsed: parse(coredump)}
  end

  test "is a well-formed wasm module that Wasmtime compiles", %{coredump: coredump} do
    assert <<0, "asm", 1, 0, 0, 0, _::binary>> = coredump
    assert {:ok, module} = Munition.compile(coredump)
    assert module.exports == [] and module.imports == []
    assert [%{min_pages: 3}] = module.memories
  end

  test "carries the core, coremodules, coreinstances and corestack sections", %{dump: dump, parsed: parsed} do
    names = for {0, {name, _}} <- parsed.sections, do: name
    assert names == ["core", "coremodules", "coreinstances", "corestack"]

    process = "#{dump.module_hash}.wasm"
    assert parsed.custom["core"] == <<0, byte_size(process), process::binary>>
    assert parsed.custom["coremodules"] == <<1, 0, byte_size(process), process::binary>>
    # one instance of module 0 with memory 0 and globals 0..3
    assert parsed.custom["coreinstances"] == <<1, 0, 0, 1, 0, 4, 0, 1, 2, 3>>

    assert {"main", frames} = corestack(parsed.custom["corestack"])

    assert frames ==
             Enum.map(dump.backtrace, fn frame -> {0, frame.func_index, frame.func_offset, [], []} end)

    assert [{0, 1, _, _, _}, {0, 0, _, _, _}] = frames
  end

  test "its memory holds the dump's memory byte for byte", %{dump: dump, parsed: parsed} do
    assert [{0x00, 3}] = parsed.memories
    {:ok, expected} = Dump.memory(dump)

    image =
      Enum.reduce(parsed.data, :binary.copy(<<0>>, 3 * 65_536), fn {0, offset, bytes}, image ->
        <<head::binary-size(offset), _::binary-size(byte_size(bytes)), tail::binary>> = image
        head <> bytes <> tail
      end)

    assert image == expected
    assert binary_part(image, 150_000, 8) == "s3cr3t!!"
    assert length(parsed.data) == 2
  end

  test "its globals hold the dump's globals", %{dump: dump, parsed: parsed} do
    assert Enum.map(dump.globals, &{&1.type, &1.mutable, &1.value}) == [
             {:i32, true, 65_520},
             {:i64, false, -9_000_000_000},
             {:f32, true, -2.5},
             {:f64, false, 3.25}
           ]

    assert parsed.globals == [
             {0x7F, 1, {0x41, 65_520}},
             {0x7E, 0, {0x42, -9_000_000_000}},
             {0x7D, 1, {0x43, -2.5}},
             {0x7C, 0, {0x44, 3.25}}
           ]
  end

  test "a minimal dump, without memory bytes, has no coredump" do
    {:crash, :trap, dump} = Munition.fire(@guest, "run", [0], forensics: :minimal)
    assert Dump.to_coredump(dump) == {:error, :not_captured}
  end

  test "a dump without a store gives a coredump with no memory and no frames" do
    {:ok, coredump} = Dump.to_coredump(%Dump{reason: :timeout, module_hash: "abc"})
    assert {:ok, _module} = Munition.compile(coredump)
    assert %{memories: [], globals: [], data: []} = parse(coredump)
  end

  ## A small reader of just what a coredump holds, independent of the writer.

  defp parse(<<0, "asm", 1, 0, 0, 0, rest::binary>>) do
    sections = sections(rest)

    %{
      sections: sections,
      custom: for({0, {name, body}} <- sections, into: %{}, do: {name, body}),
      memories: sections |> section(5) |> vec(&memory/1) |> elem(0),
      globals: sections |> section(6) |> vec(&global/1) |> elem(0),
      data: sections |> section(11) |> vec(&data/1) |> elem(0)
    }
  end

  defp sections(<<>>), do: []

  defp sections(<<id, rest::binary>>) do
    {size, rest} = uleb(rest)
    <<body::binary-size(size), rest::binary>> = rest

    body =
      if id == 0 do
        {len, body} = uleb(body)
        <<name::binary-size(len), payload::binary>> = body
        {name, payload}
      else
        body
      end

    [{id, body} | sections(rest)]
  end

  defp section(sections, id), do: Enum.find_value(sections, <<0>>, fn {i, b} -> i == id && b end)

  defp vec(bytes, item) do
    {count, rest} = uleb(bytes)

    {items, rest} = Enum.map_reduce(List.duplicate(nil, count), rest, fn _, rest -> item.(rest) end)

    {items, rest}
  end

  defp memory(<<flags, rest::binary>>) do
    {min, rest} = uleb(rest)
    {{flags, min}, rest}
  end

  defp global(<<type, mutable, rest::binary>>) do
    {init, <<0x0B, rest::binary>>} = const(rest)
    {{type, mutable, init}, rest}
  end

  defp const(<<0x41, rest::binary>>), do: sleb_tagged(0x41, rest)
  defp const(<<0x42, rest::binary>>), do: sleb_tagged(0x42, rest)
  defp const(<<0x43, v::little-float-32, rest::binary>>), do: {{0x43, v}, rest}
  defp const(<<0x44, v::little-float-64, rest::binary>>), do: {{0x44, v}, rest}

  defp sleb_tagged(tag, rest) do
    {v, rest} = sleb(rest)
    {{tag, v}, rest}
  end

  defp data(<<0, 0x41, rest::binary>>) do
    {offset, <<0x0B, rest::binary>>} = sleb(rest)
    {len, rest} = uleb(rest)
    <<bytes::binary-size(len), rest::binary>> = rest
    {{0, offset, bytes}, rest}
  end

  defp corestack(<<0, rest::binary>>) do
    {len, rest} = uleb(rest)
    <<name::binary-size(len), rest::binary>> = rest

    {frames, ""} =
      vec(rest, fn <<0, rest::binary>> ->
        {instance, rest} = uleb(rest)
        {func, rest} = uleb(rest)
        {offset, rest} = uleb(rest)
        {locals, rest} = vec(rest, fn _ -> raise "no locals expected" end)
        {stack, rest} = vec(rest, fn _ -> raise "no stack expected" end)
        {{instance, func, offset, locals, stack}, rest}
      end)

    {name, frames}
  end

  defp uleb(<<0::1, b::7, rest::binary>>), do: {b, rest}

  defp uleb(<<1::1, b::7, rest::binary>>) do
    {high, rest} = uleb(rest)
    {b + Bitwise.bsl(high, 7), rest}
  end

  defp sleb(bytes), do: sleb(bytes, 0, 0)

  defp sleb(<<more::1, b::7, rest::binary>>, acc, shift) do
    acc = acc + Bitwise.bsl(b, shift)

    cond do
      more == 1 -> sleb(rest, acc, shift + 7)
      Bitwise.band(b, 0x40) != 0 -> {acc - Bitwise.bsl(1, shift + 7), rest}
      true -> {acc, rest}
    end
  end
end

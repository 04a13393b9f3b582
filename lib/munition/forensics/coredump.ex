defmodule Munition.Forensics.Coredump do
  @moduledoc """
  Writes a `Munition.Forensics.Dump` as a standard WebAssembly coredump, the
  format of the WebAssembly tool-conventions `Coredump.md` that Wasmtime's
  `WasmCoreDump` also writes, so wasm debuggers can open Munition's crashes.

  A coredump is a wasm module without code. This module writes, in order:

    * a `core` custom section: the process, named after the module hash
      (`<hash>.wasm`)
    * a memory section with each memory at its size at the time of the crash
      (no maximum), and a data section whose active segments hold the
      memory's non-zero bytes (runs of zeros between them are left out and
      read back as zeros)
    * a global section with every global in the dump, at its value and
      mutability. Reference globals are written as `funcref` `ref.null`, as
      Wasmtime does, and NaN floats as the canonical NaN.
    * `coremodules` (the one module), `coreinstances` (one instance of it,
      with every memory and global) and `corestack` (thread `main`, the
      backtrace innermost frame first, each frame's code offset relative to
      its function; locals and operand stack are not recorded, as in
      Wasmtime's own coredumps)

  It owns only this translation and must not read anything but the dump.
  """

  alias Munition.Forensics.{Dump, Memory}

  @standard_page_size 65_536
  @four_gib 4 * 1024 * 1024 * 1024
  # wasmparser accepts at most 100_000 data segments; keep well under it.
  @max_segments 65_536

  @doc """
  The coredump bytes of `dump`, or `{:error, :not_captured}` for a dump taken
  with `forensics: :minimal` (without memory bytes a coredump would claim
  zeros the guest never had), or the error of `Dump.memories_bytes/2`.
  """
  @spec build(Dump.t()) :: {:ok, binary()} | {:error, atom() | tuple()}
  def build(%Dump{} = dump) do
    memories = Enum.sort_by(dump.memories, & &1.index)
    globals = Enum.sort_by(dump.globals, & &1.index)

    with {:ok, memory_bytes} <- Dump.memories_bytes(dump, Enum.map(memories, & &1.index)) do
      name = "#{dump.module_hash || "unknown"}.wasm"

      sections = [
        custom("core", [0, name(name)]),
        section(5, vec(Enum.map(memories, &memory_type/1))),
        section(6, vec(Enum.map(globals, &global/1))),
        section(11, data_segments(memories, memory_bytes)),
        custom("coremodules", vec([[0, name(name)]])),
        custom(
          "coreinstances",
          vec([
            [
              0,
              u32(0),
              vec(Enum.map(0..(length(memories) - 1)//1, &u32/1)),
              vec(Enum.map(0..(length(globals) - 1)//1, &u32/1))
            ]
          ])
        ),
        custom("corestack", [0, name("main"), vec(Enum.map(dump.backtrace, &frame/1))])
      ]

      {:ok, IO.iodata_to_binary([<<0, "asm", 1, 0, 0, 0>> | sections])}
    end
  end

  defp memory64?(memory), do: memory.size > @four_gib

  # limits: flags bit 2 = memory64, bit 3 = custom page size (log2 follows).
  defp memory_type(memory) do
    custom_page = memory.page_size != @standard_page_size
    flags = if(memory64?(memory), do: 0x04, else: 0) + if(custom_page, do: 0x08, else: 0)
    page_log2 = if custom_page, do: u32(log2(memory.page_size)), else: []
    [flags, u64(memory.pages), page_log2]
  end

  defp log2(n), do: n |> :math.log2() |> round()

  defp data_segments(memories, memory_bytes) do
    segments =
      memories
      |> Enum.zip(memory_bytes)
      |> Enum.with_index()
      |> Enum.flat_map(fn {{memory, bytes}, position} ->
        # Merging zero gaps shorter than min_gap bounds the segment count.
        min_gap = max(64, div(byte_size(bytes), @max_segments) + 1)
        {offset_op, offset_enc} = if memory64?(memory), do: {0x42, &s64/1}, else: {0x41, &s32/1}

        bytes
        |> Memory.regions(min_gap, @max_segments)
        |> Enum.map(fn {start, len} ->
          head = if position == 0, do: [0], else: [2, u32(position)]
          offset = if offset_op == 0x41 and start > 0x7FFFFFFF, do: start - 0x100000000, else: start
          [head, offset_op, offset_enc.(offset), 0x0B, u32(len), binary_part(bytes, start, len)]
        end)
      end)

    vec(segments)
  end

  defp global(%{type: type, mutable: mutable, value: value}) do
    [val_type(type), if(mutable, do: 1, else: 0), const(type, value), 0x0B]
  end

  defp val_type(:i32), do: 0x7F
  defp val_type(:i64), do: 0x7E
  defp val_type(:f32), do: 0x7D
  defp val_type(:f64), do: 0x7C
  defp val_type(:v128), do: 0x7B
  defp val_type(_ref), do: 0x70

  defp const(:i32, v) when is_integer(v), do: [0x41, s32(to_signed(v, 32))]
  defp const(:i64, v) when is_integer(v), do: [0x42, s64(to_signed(v, 64))]
  defp const(:f32, v), do: [0x43, float_bits(v, 32)]
  defp const(:f64, v), do: [0x44, float_bits(v, 64)]
  defp const(:v128, v) when is_binary(v) and byte_size(v) == 16, do: [0xFD, u32(12), v]
  defp const(:v128, _v), do: [0xFD, u32(12), <<0::128>>]
  defp const(_ref, _v), do: [0xD0, 0x70]

  defp to_signed(v, bits) do
    <<signed::signed-size(bits)>> = <<v::size(bits)>>
    signed
  end

  defp float_bits(v, 32) when is_float(v), do: <<v::little-float-32>>
  defp float_bits(v, 64) when is_float(v), do: <<v::little-float-64>>
  defp float_bits(:infinity, 32), do: <<0x7F800000::little-32>>
  defp float_bits(:neg_infinity, 32), do: <<0xFF800000::little-32>>
  defp float_bits(_nan, 32), do: <<0x7FC00000::little-32>>
  defp float_bits(:infinity, 64), do: <<0x7FF0000000000000::little-64>>
  defp float_bits(:neg_infinity, 64), do: <<0xFFF0000000000000::little-64>>
  defp float_bits(_nan, 64), do: <<0x7FF8000000000000::little-64>>

  # frame ::= 0x00 instanceidx funcidx codeoffset locals:vec(value) stack:vec(value)
  defp frame(frame) do
    offset = frame[:func_offset] || 0
    offset = if offset > 0xFFFFFFFF, do: 0, else: offset
    [0, u32(0), u32(frame.func_index), u32(offset), vec([]), vec([])]
  end

  ## Binary encoding

  defp section(id, contents) do
    contents = IO.iodata_to_binary(contents)
    [id, u32(byte_size(contents)), contents]
  end

  defp custom(name, contents), do: section(0, [name(name), contents])

  defp name(string), do: [u32(byte_size(string)), string]

  defp vec(items), do: [u32(length(items)) | items]

  defp u32(n), do: uleb(n)
  defp u64(n), do: uleb(n)

  defp uleb(n) when n < 0x80, do: <<n>>
  defp uleb(n), do: <<0x80 + Bitwise.band(n, 0x7F)>> <> uleb(Bitwise.bsr(n, 7))

  defp s32(n), do: sleb(n)
  defp s64(n), do: sleb(n)

  defp sleb(n) do
    byte = Bitwise.band(n, 0x7F)
    rest = Bitwise.bsr(n, 7)

    if (rest == 0 and Bitwise.band(byte, 0x40) == 0) or (rest == -1 and Bitwise.band(byte, 0x40) != 0) do
      <<byte>>
    else
      <<Bitwise.bor(byte, 0x80)>> <> sleb(rest)
    end
  end
end

defmodule Munition.Property.DumpCodecPropertyTest do
  # Not async: PropEr keeps its state in the test process and a registered
  # type server, one run at a time; and the atom count must not move, which
  # only holds while no other test loads code or creates atoms.
  use ExUnit.Case, async: false

  import Bitwise

  alias :proper_types, as: T
  alias Munition.Forensics.{Analyser, Dump}
  alias Munition.Test.{DumpBytes, Fuzz, Prop}

  # The dump file codec, which reads files anyone could have written:
  #
  #   * any bytes, crafted files (valid framing and checksum around generated
  #     headers and memory records, well-shaped or not) and byte flips,
  #     truncations and extensions of real dumps: deserialize/2 answers
  #     {:ok, dump} or one of the errors Munition.Forensics.Dump.Format
  #     documents, never raises, and creates no atom; a dump it accepts
  #     serializes again to the same dump, and its memory and coredump come
  #     out without raising; so does its summary (what `mix munition.inspect`
  #     prints), checked apart with well-shaped logs (see the known bug);
  #   * generated dumps round-trip through serialize/deserialize, and a file
  #     written by the test's own encoder of the documented format reads back
  #     as the dump it encodes.

  @seed Fuzz.seed(31_337)
  @numtests Fuzz.count(300, 30_000)
  @moduletag timeout: if(Fuzz.fuzz?(), do: :infinity, else: 120_000)

  @guest ~S"""
  (module
    (import "munition" "log" (func $log (param i32 i32 i32)))
    (memory (export "memory") 2)
    (data (i32.const 64) "a secret the guest kept")
    (global $sp (mut i32) (i32.const -7))
    (global (export "big") i64 (i64.const 0x7fffffffffffffff))
    (global $nan (mut f32) (f32.const nan))
    (global $inf f64 (f64.const -inf))
    (global $vec v128 (v128.const i64x2 1 2))
    (global $ref funcref (ref.null func))
    (func $inner (param i32)
      (call $log (i32.const 1) (i32.const 64) (i32.const 23))
      (i32.store (i32.const 4096) (local.get 0))
      unreachable)
    (func (export "run") (param i32 i64 f32 f64) (call $inner (local.get 0)))
    (func (export "spin") (loop (br 0))))
  """

  setup_all do
    {:crash, :trap, full} = Munition.fire(@guest, "run", [-1, 2, :nan, 1.5], capabilities: [:log])

    {:crash, :trap, minimal} =
      Munition.fire(@guest, "run", [1, 2, 3.0, 4.0], capabilities: [:log], forensics: :minimal)

    {:crash, :fuel_exhausted, fuel} = Munition.fire(@guest, "spin", [], capabilities: [:log], fuel: 1_000)
    real = Enum.map([full, minimal, fuel], &Dump.serialize/1)

    # Warm-up: load the modules the properties may reach (Elixir's, such as
    # the Inspect implementations, Munition's and PropEr's), so that loading
    # code does not add atoms while they are counted.
    :ok = Application.ensure_loaded(:proper)

    for app <- [:kernel, :stdlib, :elixir, :munition, :proper],
        {:ok, modules} = :application.get_key(app, :modules),
        module <- modules,
        do: Code.ensure_loaded(module)

    for bytes <- real, do: checked_decode(bytes, [])

    %{real: List.to_tuple(real), dumps: [full, minimal, fuel]}
  end

  describe "deserialize/2 on bytes from anywhere" do
    test "any bytes" do
      run_counting_atoms("any bytes", @numtests, any_bytes())
    end

    test "crafted files: valid framing around generated headers and memory records" do
      run_counting_atoms("crafted files", @numtests, crafted_file())
    end

    test "real dumps with bytes flipped, cut short or extended", %{real: real} do
      run_counting_atoms("mutated real dumps", @numtests, mutated(real))
    end

    # What `mix munition.inspect` prints of a file deserialize/2 accepted.
    # Log entries are kept well-shaped here: see the known bug below.
    test "the summary of a crafted dump it accepts" do
      Prop.check!("summary", @seed, @numtests, fn opts ->
        :proper.quickcheck(
          :proper.forall(crafted_file(:well_shaped_log), fn {bytes, decode_opts} ->
            Prop.holds?(fn ->
              case Dump.deserialize(bytes, decode_opts) do
                {:ok, dump} -> is_binary(Analyser.summary(dump))
                {:error, _} -> true
              end
            end)
          end),
          opts
        )
      end)
    end

    # Found by the crafted-files property: the reader checks only that `log`
    # is a list, so a checksummed file whose log holds something other than
    # {level, line} is accepted, and the summary (`mix munition.inspect`)
    # raises FunctionClauseError in Munition.Forensics.Report.log_section/1.
    test "a dump whose log holds something other than {level, line}" do
      # The shrunk counterexample, 43 bytes: a header %{"log" => [nil]}, no memories.
      bytes =
        Base.decode16!(
          "894D554E44554D5001000000130000000A0100000006030000006C6F670801000000000000000045D01FB8"
        )

      assert bytes == DumpBytes.file(DumpBytes.value(%{"log" => [nil]}), [], version: 1)

      case Dump.deserialize(bytes) do
        {:error, {:malformed, :log}} -> :ok
        {:ok, dump} -> assert is_binary(Analyser.summary(dump))
      end
    end
  end

  describe "serialize/1 and deserialize/2" do
    test "generated dumps round-trip" do
      Prop.check!("round trip", @seed, @numtests, fn opts ->
        :proper.quickcheck(
          :proper.forall(dump(), fn dump ->
            Prop.holds?(fn -> Dump.deserialize(Dump.serialize(dump)) == {:ok, dump} end)
          end),
          opts
        )
      end)
    end

    test "a file written from the format's specification reads back as its dump" do
      Prop.check!("specification", @seed, @numtests, fn opts ->
        :proper.quickcheck(
          :proper.forall(dump(), fn dump ->
            Prop.holds?(fn -> Dump.deserialize(spec_encode(dump)) == {:ok, dump} end)
          end),
          opts
        )
      end)
    end

    test "real dumps round-trip", %{dumps: dumps} do
      for dump <- dumps, do: assert(Dump.deserialize(Dump.serialize(dump)) == {:ok, dump})
    end
  end

  ## Running with the atom count watched

  # The property holds for each case (atoms counted around each call), and
  # the whole run, warm-up excluded, leaves the atom table as it found it.
  defp run_counting_atoms(name, numtests, input) do
    property = fn opts ->
      :proper.quickcheck(
        :proper.forall(input, fn {bytes, decode_opts} ->
          Prop.holds?(fn -> checked_decode(bytes, decode_opts) end)
        end),
        opts
      )
    end

    # Warm-up: a few cases load what generating and checking need.
    Prop.check!(name <> " (warm-up)", @seed + 1, 20, property)
    before = :erlang.system_info(:atom_count)
    Prop.check!(name, @seed, numtests, property)
    assert :erlang.system_info(:atom_count) == before, "#{name}: the run created atoms"
  end

  # deserialize/2 answers {:ok, dump} or a documented error, and creates no
  # atom; a dump it accepts is consistent.
  defp checked_decode(bytes, opts) do
    before = :erlang.system_info(:atom_count)
    result = Dump.deserialize(bytes, opts)
    :erlang.system_info(:atom_count) == before and accepted?(result)
  end

  defp accepted?({:error, reason}), do: documented_error?(reason)

  defp accepted?({:ok, %Dump{} = dump}) do
    memories = Dump.memories_bytes(dump)
    coredump = Dump.to_coredump(dump)

    # A file of an older version reads as a dump of its version; written
    # again, it is of the version this Munition writes.
    Dump.deserialize(Dump.serialize(dump)) == {:ok, %{dump | version: Dump.version()}} and
      match?({tag, _} when tag in [:ok, :error], memories) and
      match?({tag, _} when tag in [:ok, :error], coredump)
  end

  defp accepted?(_other), do: false

  # The errors Munition.Forensics.Dump.Format documents.
  @malformed_parts [:flags, :header, :value, :too_deep, :memory, :captured_at] ++
                     [:reason, :trap, :message, :backtrace, :fuel_given, :fuel_consumed, :fuel_remaining] ++
                     [:execution_time_us, :globals, :module_hash, :imports, :exports, :function, :args] ++
                     [:capabilities, :inert_links, :log, :wasmtime_version, :munition_version, :replay]

  defp documented_error?(reason) when reason in [:bad_magic, :truncated, :checksum_mismatch, :trailing_bytes],
    do: true

  defp documented_error?({:unsupported_version, v}) when is_integer(v) and v >= 0, do: true
  defp documented_error?({:malformed, part}) when part in @malformed_parts, do: true

  defp documented_error?({:too_large, declared, bound})
       when is_integer(declared) and is_integer(bound) and declared > bound,
       do: true

  defp documented_error?(_reason), do: false

  ## Generators: bytes

  defp any_bytes do
    magic = DumpBytes.magic()

    T.bind(
      T.frequency([
        {3, T.binary()},
        {2, T.bind(T.binary(), &(magic <> &1), false)},
        {2, T.bind(T.binary(), &(magic <> <<1::little-16, 0::little-16>> <> &1), false)},
        {1, T.bind(T.integer(0, 7), &binary_part(magic, 0, &1), false)}
      ]),
      &{&1, []},
      false
    )
  end

  # Valid framing (magic, version, flags, lengths, checksum), mostly, around
  # a generated header and memory records.
  defp crafted_file(log \\ :any) do
    T.bind(
      T.tuple([
        header(log),
        up_to(3, memory_record()),
        T.frequency([{12, T.exactly([])}, {1, file_option()}]),
        T.frequency([
          {6, T.exactly([])},
          {1, T.bind(T.elements([0, 1, 65_536, 1 <<< 20]), &[max_memory_size: &1], false)}
        ])
      ]),
      fn {header, records, file_opts, decode_opts} ->
        {DumpBytes.file(DumpBytes.value(header), records, file_opts), decode_opts}
      end,
      false
    )
  end

  defp file_option do
    T.oneof([
      T.bind(T.integer(0, 65_535), &[version: &1], false),
      T.bind(T.integer(1, 65_535), &[flags: &1], false),
      T.bind(T.integer(0, 0xFFFFFFFF), &[count: &1], false),
      T.exactly(checksum: :bad),
      T.bind(T.non_empty(T.binary()), &[trailing: &1], false)
    ])
  end

  # Positions are fractions of the size in 0..65_535, the widest range
  # PropEr draws uniformly (wider ones lean towards small numbers).
  #
  # Real dumps, mutated: bytes flipped (with the checksum left as it is, or
  # recomputed so the damage reaches the decoder), cut short, or extended.
  defp mutated(real) do
    flip = T.tuple([T.integer(0, 65_535), T.integer(1, 255)])

    T.bind(
      T.tuple([
        T.integer(0, tuple_size(real) - 1),
        T.frequency([{3, up_to(3, flip)}, {1, T.list(flip)}]),
        T.boolean(),
        T.frequency([
          {4, T.exactly(:none)},
          {1, T.bind(T.integer(0, 65_535), &{:cut, &1}, false)},
          {1, T.bind(T.non_empty(T.binary()), &{:append, &1}, false)}
        ])
      ]),
      fn {which, flips, reseal, cut} ->
        bytes = elem(real, which)
        size = byte_size(bytes)

        bytes =
          Enum.reduce(flips, bytes, fn {at, mask}, bytes ->
            at = div(at * (size - 1), 65_535)
            <<head::binary-size(at), byte, tail::binary>> = bytes
            <<head::binary, Bitwise.bxor(byte, mask), tail::binary>>
          end)

        bytes = if reseal, do: DumpBytes.reseal(bytes), else: bytes

        bytes =
          case cut do
            :none -> bytes
            {:cut, at} -> binary_part(bytes, 0, div(at * size, 65_535))
            {:append, extra} -> bytes <> extra
          end

        {bytes, []}
      end,
      false
    )
  end

  ## Generators: header values

  @header_fields ~w(reason trap message backtrace fuel_given fuel_consumed fuel_remaining execution_time_us
                    globals module_hash imports exports function args capabilities inert_links log
                    wasmtime_version munition_version captured_at replay)

  # `log`: `:any` log values, or `:well_shaped_log` for only [{level, line}].
  defp header(log) do
    T.frequency([
      {8, T.bind(T.list(header_pair(log)), &Map.new/1, false)},
      {1, value(2)}
    ])
  end

  defp header_pair(log) do
    T.bind(
      T.frequency([
        {8, T.elements(@header_fields)},
        {1, T.elements(["version", "memories", "extra"])},
        {1, T.binary()}
      ]),
      fn
        "log" when log == :well_shaped_log ->
          T.tuple([T.exactly("log"), T.list(T.tuple([T.integer(0, 3), T.binary()]))])

        name ->
          T.tuple([T.exactly(name), T.frequency([{9, shaped(name)}, {1, value(2)}])])
      end,
      false
    )
  end

  # A list of at most `max` elements of `type`.
  defp up_to(max, type), do: T.bind(T.integer(0, max), &T.vector(&1, type), false)

  # Values of the shape each field has, or close to it.
  defp shaped("reason"), do: T.oneof([T.elements([nil | Munition.Reason.crash_reasons()]), symbol()])
  defp shaped("trap"), do: T.oneof([T.elements([nil | Munition.Reason.trap_kinds()]), symbol()])

  defp shaped(text) when text in ~w(message module_hash function wasmtime_version munition_version),
    do: T.oneof([T.exactly(nil), T.binary()])

  defp shaped(fuel) when fuel in ~w(fuel_given fuel_consumed fuel_remaining execution_time_us), do: integer()

  defp shaped("captured_at"),
    do:
      T.oneof([
        T.exactly(nil),
        T.integer(-62_135_596_800_000_000, 253_402_300_799_999_999),
        integer(),
        T.float()
      ])

  defp shaped("backtrace"), do: T.list(T.oneof([frame(), value(1)]))
  defp shaped("globals"), do: T.list(T.oneof([global(), value(1)]))

  defp shaped(imports) when imports in ~w(imports exports),
    do: T.list(T.oneof([import_or_export(), value(1)]))

  defp shaped("args"), do: T.list(value(1))

  defp shaped("capabilities"),
    do: T.list(T.oneof([T.elements([:time, :log, :random, :abort]), T.binary(), symbol()]))

  defp shaped("inert_links") do
    link =
      T.bind(
        T.tuple([
          T.binary(),
          T.binary(),
          T.oneof([T.elements([:wasi_fs, :wasi_fs_write]), symbol()]),
          symbol()
        ]),
        fn {module, name, needs, reason} -> %{module: module, name: name, needs: needs, reason: reason} end,
        false
      )

    T.list(T.oneof([link, value(1)]))
  end

  defp shaped("log"), do: T.list(T.oneof([T.tuple([T.integer(0, 3), T.binary()]), value(1)]))
  defp shaped("replay"), do: T.oneof([T.exactly(nil), replay(), value(2)])
  defp shaped(_other), do: value(2)

  defp integer do
    T.frequency([
      {4, T.integer(0, :inf)},
      {1, T.integer(:inf, -1)},
      {1,
       T.bind(
         T.tuple([T.integer(64, 400), T.boolean()]),
         fn {bits, neg} -> if(neg, do: -1, else: 1) * (1 <<< bits) end,
         false
       )}
    ])
  end

  defp maybe(type), do: T.frequency([{3, type}, {1, T.exactly(nil)}])

  defp frame do
    T.bind(
      T.tuple([
        T.frequency([{6, T.integer(0, :inf)}, {1, T.integer(:inf, -1)}, {1, value(0)}]),
        maybe(T.binary()),
        maybe(T.integer(0, :inf)),
        maybe(T.integer(0, :inf)),
        maybe(T.binary()),
        maybe(T.integer(0, :inf)),
        maybe(T.oneof([T.integer(0, :inf), value(0)]))
      ]),
      fn {index, name, func_offset, module_offset, file, line, column} ->
        %{
          func_index: index,
          func_name: name,
          func_offset: func_offset,
          module_offset: module_offset,
          file: file,
          line: line,
          column: column
        }
      end,
      false
    )
  end

  defp global do
    T.bind(
      T.tuple([
        T.frequency([{6, T.integer(0, :inf)}, {1, T.integer(:inf, -1)}]),
        T.frequency([{8, T.elements([:i32, :i64, :f32, :f64, :v128, :ref])}, {1, symbol()}]),
        T.frequency([{6, T.boolean()}, {1, value(0)}]),
        T.frequency([{4, global_value()}, {1, value(0)}]),
        maybe(T.binary())
      ]),
      fn {index, type, mutable, value, export} ->
        %{index: index, type: type, mutable: mutable, value: value, export: export}
      end,
      false
    )
  end

  defp global_value do
    T.oneof([
      integer(),
      T.float(),
      T.elements([:nan, :infinity, :neg_infinity, :ref]),
      T.binary(16),
      T.binary()
    ])
  end

  defp import_or_export do
    T.bind(
      T.tuple([
        T.binary(),
        T.binary(),
        T.elements([:func, :memory, :table, :global, :tag]),
        T.list(T.elements([:i32, :i64, :f32, :f64]))
      ]),
      fn {module, name, kind, params} ->
        %{module: module, name: name, kind: kind, params: params, results: []}
      end,
      false
    )
  end

  # Symbol names: atoms that exist, names that are no atom (which must stay
  # strings), invalid UTF-8, and names over the 255-byte limit.
  defp symbol do
    T.bind(
      T.frequency([
        {6, T.elements(~w(trap reason unreachable fuel_exhausted i32 ref nan ok func_index nil true false))},
        {6, T.bind(T.binary(), &("munition_property_no_atom_" <> Base.encode16(&1)), false)},
        {1, T.oneof([T.binary(), T.bind(T.integer(256, 300), &String.duplicate("a", &1), false)])}
      ]),
      &{:"$enc", :symbol, &1},
      false
    )
  end

  # Values the reader decodes, mostly, and now and then bytes it must
  # refuse: NaN or infinity bits, raw bytes, a sign byte other than 0 or 1.
  defp leaf do
    T.frequency([
      {2, T.elements([nil, true, false])},
      {3, T.integer()},
      {1, integer()},
      {2, T.float()},
      {3, T.binary()},
      {2, symbol()},
      {1,
       T.bind(
         T.tuple([T.integer(0, 1), T.binary()]),
         fn {sign, mag} -> {:"$enc", :bigint, sign, mag} end,
         false
       )},
      {1, bad_leaf()}
    ])
  end

  defp bad_leaf do
    T.oneof([
      T.bind(
        T.elements([0x7FF8000000000000, 0x7FF0000000000000, 0xFFF0000000000000, 0x7FF0000000000001]),
        &{:"$enc", :float_bits, &1},
        false
      ),
      T.bind(T.binary(), &{:"$enc", :raw, &1}, false),
      T.bind(
        T.tuple([T.integer(2, 255), T.binary()]),
        fn {sign, mag} -> {:"$enc", :bigint, sign, mag} end,
        false
      )
    ])
  end

  # A value nested at most `depth` deep, or now and then far deeper than the
  # reader allows.
  defp value(0), do: leaf()

  defp value(depth) do
    T.lazy(fn ->
      inner = value(depth - 1)

      T.frequency([
        {12, leaf()},
        {2, T.list(inner)},
        {2, T.bind(T.list(inner), &List.to_tuple/1, false)},
        {2, T.bind(T.list(T.tuple([inner, inner])), &Map.new/1, false)},
        # A list declaring more or fewer items than follow it.
        {1,
         T.bind(
           T.tuple([T.list(inner), T.integer(0, 0xFFFFFFFF)]),
           fn {items, count} -> {:"$enc", :list, count, items} end,
           false
         )},
        # Nested deeper than the reader's limit of 32.
        {1, T.bind(T.integer(20, 40), fn n -> Enum.reduce(1..n, nil, fn _, acc -> [acc] end) end, false)}
      ])
    end)
  end

  ## Generators: memory records

  defp memory_record do
    T.frequency([
      {3, T.bind(memory(), &DumpBytes.memory(&1), false)},
      {1, T.bind(T.tuple([memory(), T.integer(0, 65_535), T.integer(1, 255)]), &damaged_memory/1, false)},
      {1,
       T.bind(
         T.tuple([memory(), T.elements([:pages, :page_size, :size, :flag, :len])]),
         &skewed_memory/1,
         false
       )},
      {1,
       T.bind(
         T.tuple([T.integer(0, 0xFFFFFFFF), u64(), u64(), u64(), T.integer(0, 255), T.binary()]),
         fn {index, pages, page_size, size, flag, data} ->
           DumpBytes.memory(%{
             index: index,
             pages: pages,
             page_size: page_size,
             size: size,
             flag: flag,
             data: data
           })
         end,
         false
       )}
    ])
  end

  defp u64, do: T.frequency([{3, T.integer(0, 1 <<< 20)}, {1, T.integer(0, 0xFFFFFFFFFFFFFFFF)}])

  # A consistent record: page size a power of two, size = pages * page size,
  # a zstd frame declaring that size (or nothing, as forensics: :minimal).
  defp memory do
    T.bind(
      T.tuple([
        T.integer(0, 3),
        T.integer(0, 16),
        T.integer(0, 3),
        T.elements([:zeros, :pattern, :none]),
        T.binary()
      ]),
      fn {index, log2_page, pages, content, seed} ->
        page_size = 1 <<< log2_page
        size = pages * page_size

        {flag, data} =
          case content do
            :none -> {0, ""}
            :zeros -> {1, compress(<<0::size(size)-unit(8)>>)}
            :pattern -> {1, compress(pattern(seed, size))}
          end

        %{index: index, pages: pages, page_size: page_size, size: size, flag: flag, data: data}
      end,
      false
    )
  end

  defp pattern(_seed, 0), do: ""
  defp pattern("", size), do: :binary.copy(<<0xA5>>, size)
  defp pattern(seed, size), do: binary_part(:binary.copy(seed, div(size, byte_size(seed)) + 1), 0, size)

  defp compress(bytes) do
    {:ok, data} = Munition.Forensics.Memory.compress(bytes)
    data
  end

  # A consistent record whose zstd frame has one byte changed.
  defp damaged_memory({%{data: ""} = memory, _at, _mask}), do: DumpBytes.memory(memory)

  defp damaged_memory({%{data: data} = memory, at, mask}) do
    at = div(at * (byte_size(data) - 1), 65_535)
    <<head::binary-size(at), byte, tail::binary>> = data
    DumpBytes.memory(%{memory | data: <<head::binary, Bitwise.bxor(byte, mask), tail::binary>>})
  end

  # A consistent record with one field off.
  defp skewed_memory({memory, :pages}), do: DumpBytes.memory(%{memory | pages: memory.pages + 1})
  defp skewed_memory({memory, :page_size}), do: DumpBytes.memory(%{memory | page_size: memory.page_size * 3})
  defp skewed_memory({memory, :size}), do: DumpBytes.memory(%{memory | size: memory.size + 1})
  defp skewed_memory({memory, :flag}), do: DumpBytes.memory(%{memory | flag: 1 - memory.flag})
  defp skewed_memory({memory, :len}), do: DumpBytes.memory(Map.put(memory, :len, byte_size(memory.data) + 1))

  ## Generators: whole dumps, for the round trips

  defp dump do
    T.bind(
      T.tuple([
        T.tuple([
          T.elements([nil | Munition.Reason.crash_reasons()]),
          T.elements([nil | Munition.Reason.trap_kinds()]),
          maybe(T.binary()),
          T.list(valid_frame())
        ]),
        T.tuple([
          T.integer(0, :inf),
          T.integer(0, :inf),
          T.integer(0, :inf),
          T.oneof([T.integer(0, :inf), T.integer(1 <<< 64, 1 <<< 70)])
        ]),
        T.tuple([
          T.list(valid_global()),
          maybe(T.binary()),
          T.list(import_or_export()),
          T.list(import_or_export())
        ]),
        T.tuple([
          maybe(T.binary()),
          T.list(term()),
          T.list(T.oneof([T.elements([:time, :log, :random, :abort]), T.binary()]))
        ]),
        T.tuple([
          T.list(T.tuple([T.integer(0, 3), T.binary()])),
          maybe(T.binary()),
          maybe(T.binary()),
          maybe(T.integer(-62_135_596_800_000_000, 253_402_300_799_999_999))
        ]),
        up_to(3, memory()),
        T.oneof([T.exactly(nil), replay()])
      ]),
      fn {{reason, trap, message, backtrace}, {given, consumed, remaining, time},
          {globals, hash, imports, exports}, {function, args, capabilities},
          {log, wasmtime, munition, captured_us}, memories, replay} ->
        %Dump{
          reason: reason,
          trap: trap,
          message: message,
          backtrace: backtrace,
          fuel_given: given,
          fuel_consumed: consumed,
          fuel_remaining: remaining,
          execution_time_us: time,
          memories: memories |> Enum.uniq_by(& &1.index) |> Enum.map(&dump_memory/1),
          globals: globals,
          module_hash: hash,
          imports: imports,
          exports: exports,
          function: function,
          args: args,
          capabilities: capabilities,
          log: log,
          wasmtime_version: wasmtime,
          munition_version: munition,
          captured_at: captured_us && DateTime.from_unix!(captured_us, :microsecond),
          replay: replay
        }
      end,
      false
    )
  end

  # A dump's `replay` (format version 2): a log and the bounds of its call,
  # or why there is none.
  defp replay do
    T.oneof([
      T.bind(T.binary(), &%{log: nil, unavailable: &1}, false),
      T.bind(
        T.tuple([
          T.binary(),
          T.elements([:wasmtime, :wasmi]),
          T.tuple([T.integer(0, :inf), T.integer(0, :inf), T.integer(0, :inf)]),
          T.elements([:values, :binary]),
          T.binary(),
          T.tuple([maybe(T.integer(0, :inf)), maybe(T.integer(0, :inf))])
        ]),
        fn {log, engine, {max_memory, log_limit, host_calls}, result, alloc, {stdout, stderr}} ->
          %{
            log: log,
            host_calls: host_calls,
            unavailable: nil,
            engine: engine,
            max_memory: max_memory,
            log_limit: log_limit,
            result: result,
            alloc: alloc,
            stdout_limit: stdout,
            stderr_limit: stderr
          }
        end,
        false
      )
    ])
  end

  defp dump_memory(%{flag: flag, data: data} = memory),
    do: memory |> Map.delete(:flag) |> Map.put(:data, if(flag == 1, do: data))

  defp valid_frame do
    T.bind(
      T.tuple([
        T.integer(0, :inf),
        maybe(T.binary()),
        maybe(T.integer(0, :inf)),
        maybe(T.integer(0, :inf)),
        maybe(T.binary()),
        maybe(T.integer(0, :inf)),
        maybe(T.integer(0, :inf))
      ]),
      fn {index, name, func_offset, module_offset, file, line, column} ->
        %{
          func_index: index,
          func_name: name,
          func_offset: func_offset,
          module_offset: module_offset,
          file: file,
          line: line,
          column: column
        }
      end,
      false
    )
  end

  defp valid_global do
    T.bind(
      T.tuple([
        T.integer(0, :inf),
        T.elements([:i32, :i64, :f32, :f64, :v128, :ref]),
        T.boolean(),
        maybe(T.binary()),
        T.integer(),
        T.float(),
        T.binary(16),
        T.elements([:nan, :infinity, :neg_infinity, :float])
      ]),
      fn {index, type, mutable, export, int, float, v128, special} ->
        value =
          case type do
            t when t in [:i32, :i64] -> int
            t when t in [:f32, :f64] -> if special == :float, do: float, else: special
            :v128 -> v128
            :ref -> :ref
          end

        %{index: index, type: type, mutable: mutable, value: value, export: export}
      end,
      false
    )
  end

  # Terms the format carries, made of atoms that exist.
  defp term do
    T.lazy(fn ->
      T.frequency([
        {6,
         T.oneof([
           T.integer(),
           integer(),
           T.float(),
           T.binary(),
           T.elements([nil, true, false, :nan, :infinity, :ok, :i32])
         ])},
        {1, T.list(T.oneof([T.integer(), T.binary()]))},
        {1, T.bind(T.list(T.oneof([T.integer(), T.binary()])), &List.to_tuple/1, false)},
        {1,
         T.bind(
           T.list(T.tuple([T.oneof([T.integer(), T.binary(), T.elements([:a, :b])]), T.integer()])),
           &Map.new/1,
           false
         )}
      ])
    end)
  end

  # A dump's bytes written from the specification: the header a map from
  # field name to value, captured_at in microseconds.
  defp spec_encode(dump) do
    header =
      dump
      |> Map.from_struct()
      |> Map.drop([:version, :memories, :captured_at])
      |> Map.new(fn {k, v} -> {Atom.to_string(k), v} end)
      |> Map.put("captured_at", dump.captured_at && DateTime.to_unix(dump.captured_at, :microsecond))

    records =
      Enum.map(dump.memories, fn m ->
        DumpBytes.memory(%{m | data: m.data || ""} |> Map.put(:flag, if(m.data, do: 1, else: 0)))
      end)

    DumpBytes.file(DumpBytes.value(header), records)
  end
end

defmodule Munition.Forensics.Dump do
  @moduledoc """
  The state of a guest that failed, as `Munition.fire/4` returns it in
  `{:crash, reason, dump}`.

  This module owns the dump struct and its public API: encoding, files and
  memory access. It must never raise on bytes it reads: whatever a file
  holds, `deserialize/2` and `read/2` answer `{:ok, dump}` or
  `{:error, reason}`.

  Fields:

    * `:version` - dump format version (`2`; files of version `1` still read)
    * `:reason` - why the guest failed, one of
      #{Enum.map_join(Munition.Reason.crash_reasons(), ", ", &"`#{inspect(&1)}`")}
    * `:trap` - the trap kind, one of
      #{Enum.map_join(Munition.Reason.trap_kinds(), ", ", &"`#{inspect(&1)}`")}
      (`Munition.Reason` says what each means)
    * `:message` - the engine's message
    * `:backtrace` - wasm frames, innermost first: `%{func_index, func_name,
      func_offset, module_offset, file, line, column}` (names from the name
      section, file and line from DWARF, `nil` where the module has none)
    * `:fuel_given`, `:fuel_consumed`, `:fuel_remaining`, `:execution_time_us`
    * `:memories` - `[%{index, pages, page_size, size, data}]`, `data` being a
      zstd frame of the whole linear memory taken after the failure (`nil` with
      `forensics: :minimal`)
    * `:globals` - every global, exported or not:
      `[%{index, type, mutable, value, export}]`
    * `:module_hash`, `:imports`, `:exports` - of the module that ran
    * `:snapshot` - for a call on a snapshot (`Munition.snapshot/4`), the
      snapshot it started from: `%{of: hash, function: name}`, the module
      whose initialisation made it (`module_hash` is the snapshot's own);
      `nil` otherwise. For a failed initialisation itself, `module_hash` is
      the module's whose initialisation ran
    * `:function`, `:args` - what was called
    * `:capabilities` - the granted, expanded capabilities (read from a file,
      a capability whose atom does not exist in the reading VM is a string)
    * `:inert_links` - the imports linked without their capability because
      they reach nothing in the call, `[%{module, name, needs, reason}]`
      (see "Inert links" in `Munition.Host.Capabilities`); `[]` for most calls
    * `:log` - guest log lines `[{level, line}]` (capability `:log`)
    * `:stdout`, `:stderr` - what the guest wrote to its WASI stdout and
      stderr until it failed (binaries, within the call's limits), and
      `:stdout_truncated`, `:stderr_truncated` - whether some was dropped; all
      four `nil` for a call without a WASI configuration (see
      `Munition.Host.WASI`)
    * `:wasmtime_version`, `:munition_version`, `:captured_at` (UTC `DateTime`)
    * `:replay` - what `Munition.replay/3` needs to run the call again:
      `%{log: bytes, host_calls, unavailable: nil, engine, max_memory,
      log_limit, result, alloc, stdout_limit, stderr_limit}`, `log` being
      every host call the call made (`host_calls` of them), in order, with
      what it returned and wrote (the format is `munition_core::journal`'s); or `%{log: nil, unavailable: why}` when
      the call could not be recorded (`why` says what: a log past
      `:replay_log_limit`, a component, what Wasmi does not record, the
      state of a replay stopped part-way); `nil` for a dump of version 1 or
      a failure that left no store. A replayed crash carries the `replay`
      of the dump it replayed

  To look inside a dump, see `Munition.Forensics.Analyser` and
  `mix munition.inspect`; to hand it to standard wasm tools, `to_coredump/1`.

  ## Files

  `serialize/1` and `deserialize/2` convert a dump to and from the file
  format below, specified byte by byte, with every error a reader can
  answer. `write/2`, `write_to_dir/2` and `read/2` put that format on disk,
  each file written whole or not at all: a dump file is readable by its
  owner only (mode `0600`) and a directory Munition creates for dumps is
  mode `0700`, whatever the umask, because a dump holds the guest's whole
  memory.

  ## The file format, version 2

  A dump file is self-contained and needs nothing from Erlang to read. All
  integers are unsigned little-endian unless stated.

  | Bytes        | Content                                                         |
  | ------------ | --------------------------------------------------------------- |
  | 8            | magic `89 4D 55 4E 44 55 4D 50` (`\\x89MUNDUMP`)                 |
  | 2            | format version, `2` (readers read `1` too)                      |
  | 2            | flags, `0` (readers refuse anything else)                       |
  | 4            | `H`, the length of the header                                   |
  | `H`          | header: one *value* (below), a map from field name to value     |
  | 4            | `N`, the number of memories                                     |
  | `N` times    | memory record (below)                                           |
  | 4            | CRC-32 (ISO-HDLC, as zlib's `crc32`) of every byte before it     |

  Nothing follows the checksum. A **memory record** is:

  | Bytes | Content                                                               |
  | ----- | --------------------------------------------------------------------- |
  | 4     | memory index                                                          |
  | 8     | size in pages                                                         |
  | 8     | page size in bytes, a power of two                                    |
  | 8     | `S`, size of the memory in bytes: size in pages times page size       |
  | 1     | `1` when the bytes were captured, `0` for a `forensics: :minimal` dump |
  | 8     | `L`, length of the data that follows (`0` when not captured)           |
  | `L`   | one zstd frame (RFC 8878) whose header declares content size `S`      |

  A **value** is a tag byte and its payload:

  | Tag    | Meaning     | Payload                                                        |
  | ------ | ----------- | -------------------------------------------------------------- |
  | `0x00` | nil / null  | none                                                           |
  | `0x01` | false       | none                                                           |
  | `0x02` | true        | none                                                           |
  | `0x03` | integer     | 8 bytes, signed two's complement                               |
  | `0x04` | big integer | sign byte (`0` positive, `1` negative), 4-byte length, magnitude bytes (little-endian) |
  | `0x05` | float       | 8 bytes, IEEE 754 binary64                                     |
  | `0x06` | bytes       | 4-byte length, bytes (UTF-8 text where the field is text)      |
  | `0x07` | symbol      | 2-byte length (at most 255), UTF-8 name (an Elixir atom, see below) |
  | `0x08` | list        | 4-byte count, that many values                                 |
  | `0x09` | tuple       | 4-byte count, that many values                                 |
  | `0x0A` | map         | 4-byte count, that many key value, value value pairs           |

  The header map's keys are bytes values naming the struct's fields:
  `"reason"`, `"trap"`, `"message"`, `"backtrace"`, `"fuel_given"`,
  `"fuel_consumed"`, `"fuel_remaining"`, `"execution_time_us"`, `"globals"`,
  `"module_hash"`, `"snapshot"`, `"imports"`, `"exports"`, `"function"`, `"args"`,
  `"capabilities"`, `"inert_links"`, `"log"`, `"stdout"`, `"stderr"`, `"stdout_truncated"`,
  `"stderr_truncated"`, `"wasmtime_version"`, `"munition_version"` with the
  values described under the fields above (maps inside
  them, such as a backtrace frame, have symbol keys), and `"captured_at"`: an
  integer, microseconds since the Unix epoch (UTC), or nil. Readers ignore
  keys they do not know, and a key the header lacks leaves the field at its
  default: the four WASI output keys (`stdout` and `stderr` bytes or nil,
  `stdout_truncated` and `stderr_truncated` true, false or nil) came after
  the first files of version 1 were written, which read as nil, and so did
  `inert_links` (a list of maps whose `module` and `name` are bytes and
  `needs` and `reason` symbols), which reads as `[]`. Version 2 adds the
  key `"replay"` (nil, or a map with symbol keys as the field above says),
  which a file of version 1 lacks: it reads as nil.

  `reason` is nil or one of the symbols
  #{Enum.map_join(Munition.Reason.crash_reasons(), ", ", &"`#{&1}`")}
  (`Munition.Reason.crash_reasons/0`), and `trap` nil or one of
  #{Enum.map_join(Munition.Reason.trap_kinds(), ", ", &"`#{&1}`")}
  (`Munition.Reason.trap_kinds/0`). A global's `type` is the symbol `i32`,
  `i64`, `f32`, `f64`, `v128` or `ref` (every reference type), and its `value`
  an integer for `i32` and `i64`, a float or the symbol `nan`, `infinity` or
  `neg_infinity` for `f32` and `f64`, 16 bytes for `v128`, and the symbol
  `ref` for `ref`.

  Readers never create atoms: the atom table is never garbage collected, so a
  reader that did would let a stream of crafted files exhaust it and stop the
  VM. A symbol is read as the atom of that name when the atom already exists
  (every symbol Munition writes does, save capabilities declared by host
  functions whose module is not loaded), and as a string otherwise. A field
  that must be an atom is then malformed: `reason`, `trap` and a global's
  `type` and `value` must each be one of the atoms listed above.

  ## Errors of reading

  `deserialize/2` and `read/2` return:

    * `{:error, :bad_magic}` - not a Munition dump
    * `{:error, :truncated}` - the bytes end before the format says they do
    * `{:error, {:unsupported_version, version}}` - a format this Munition cannot read
    * `{:error, :checksum_mismatch}` - the bytes were altered after writing
    * `{:error, :trailing_bytes}` - bytes after the checksum
    * `{:error, {:malformed, what}}` - the checksum holds but the content does
      not follow the format; `what` is an atom naming the part (`:flags`,
      `:header`, `:value`, `:too_deep`, `:memory`, or the field that has the
      wrong shape, such as `:reason` for a symbol that is not one of the
      reasons above)
    * `{:error, {:too_large, declared, bound}}` - a memory (or all of them
      together, or, for `read/2`, the file itself)
      declares more bytes than the bound; refused before anything is
      decompressed
  """

  alias Munition.Forensics.Coredump
  alias Munition.Forensics.Dump.{Files, Format}

  @version Format.version()

  defstruct version: @version,
            reason: nil,
            trap: nil,
            message: nil,
            backtrace: [],
            fuel_given: 0,
            fuel_consumed: 0,
            fuel_remaining: 0,
            execution_time_us: 0,
            memories: [],
            globals: [],
            module_hash: nil,
            snapshot: nil,
            imports: [],
            exports: [],
            function: nil,
            args: [],
            capabilities: [],
            inert_links: [],
            log: [],
            stdout: nil,
            stderr: nil,
            stdout_truncated: nil,
            stderr_truncated: nil,
            wasmtime_version: nil,
            munition_version: nil,
            captured_at: nil,
            replay: nil

  @type t :: %__MODULE__{}

  @typedoc """
  Why `deserialize/2` or `read/2` refused bytes: see "Errors of reading" in
  the moduledoc.
  """
  @type read_error :: Format.error()

  @default_max_memory_size 4 * 1024 * 1024 * 1024 + 16 * 1024 * 1024

  @doc "The dump format version this Munition writes."
  @spec version() :: pos_integer()
  def version, do: @version

  @doc """
  The largest decompressed memory size a reader accepts, in bytes: the
  `config :munition, :dump_max_memory_size` setting, by default 4 GiB (the
  most a 32-bit memory can hold) plus 16 MiB.
  """
  @spec max_memory_size() :: pos_integer()
  def max_memory_size do
    Application.get_env(:munition, :dump_max_memory_size, @default_max_memory_size)
  end

  @doc """
  Encodes `dump` in the file format (see "The file format, version 2" in the
  moduledoc).

  Raises `ArgumentError` if a field holds something the format cannot carry
  (a pid, a reference, a function), which no captured dump does.

  ## Examples

      iex> {:crash, :trap, dump} = Munition.fire(~s{(module (func (export "f") unreachable))}, "f", [])
      iex> bytes = Munition.Forensics.Dump.serialize(dump)
      iex> binary_part(bytes, 0, 8)
      <<0x89, "MUNDUMP">>
      iex> Munition.Forensics.Dump.deserialize(bytes) == {:ok, dump}
      true
  """
  @spec serialize(t()) :: binary()
  def serialize(%__MODULE__{} = dump), do: Format.encode(dump)

  @doc """
  Decodes bytes written by `serialize/1`. Never raises: the errors are listed
  under "Errors of reading" in the moduledoc.

  ## Options

    * `:max_memory_size` - the most bytes a memory, and all memories together,
      may declare. Defaults to `max_memory_size/0`.

  ## Examples

      iex> Munition.Forensics.Dump.deserialize("not a dump")
      {:error, :bad_magic}
  """
  @spec deserialize(binary(), keyword()) :: {:ok, t()} | {:error, read_error()}
  def deserialize(bytes, opts \\ []) when is_binary(bytes) do
    opts = Keyword.validate!(opts, max_memory_size: max_memory_size())
    Format.decode(bytes, opts[:max_memory_size])
  end

  @doc """
  Writes `dump` to `path` in the file format, atomically: a reader sees the
  whole file or none (it is written under a temporary name, then renamed).
  The file is mode `0600`; the directory of `path` must exist.
  """
  @spec write(t(), Path.t()) :: :ok | {:error, File.posix()}
  def write(%__MODULE__{} = dump, path), do: Files.write(serialize(dump), path)

  @doc """
  Reads a dump file written by `write/2`. Never raises.

  Takes the options of `deserialize/2` and answers its errors, or
  `{:error, posix}` from `File`, such as `{:error, :enoent}`. A file larger
  than the memory bound is refused before it is read, with
  `{:error, {:too_large, size, bound}}`.
  """
  @spec read(Path.t(), keyword()) :: {:ok, t()} | {:error, read_error() | File.posix()}
  def read(path, opts \\ []) do
    opts = Keyword.validate!(opts, max_memory_size: max_memory_size())
    # Compressed memory is smaller than raw memory, and the rest of a dump is
    # small: a file over the bound plus a margin cannot be a valid dump.
    file_bound = opts[:max_memory_size] + 64 * 1024 * 1024

    with {:ok, bytes} <- Files.read(path, file_bound), do: deserialize(bytes, opts)
  end

  @doc """
  Writes `dump` into directory `dir` under a unique, sortable file name
  (capture time first), creating the directory if needed.

  Names look like `20250102T030405.123456Z-trap-1f2e3d4c.munition-dump`: the
  capture time in UTC to the microsecond, the reason, and a random part, so
  listing the directory sorted by name lists crashes in the order they
  happened, and two crashes never overwrite each other.

  The file is mode `0600`. A directory this creates (`dir`, and any missing
  parent) is mode `0700`; one that existed keeps its mode.
  """
  @spec write_to_dir(t(), Path.t()) :: {:ok, Path.t()} | {:error, term()}
  def write_to_dir(%__MODULE__{} = dump, dir) do
    # The random part of the name makes a clash all but impossible; if one
    # happens, the existing file wins and this dump is written under another.
    Files.write_new(serialize(dump), dir, fn -> Files.name(dump) end)
  end

  @doc """
  The dump in the standard WebAssembly coredump format (the WebAssembly
  tool-conventions `Coredump.md`, as Wasmtime writes it), for wasm debuggers.
  See `Munition.Forensics.Coredump`.
  """
  @spec to_coredump(t()) :: {:ok, binary()} | {:error, atom() | tuple()}
  def to_coredump(%__MODULE__{} = dump), do: Coredump.build(dump)

  @doc """
  The decompressed bytes of memory `index` (default `0`), or `{:error, reason}`.

  `{:error, :no_memory}` when the guest has no such memory, and
  `{:error, :not_captured}` when the dump was taken with `forensics: :minimal`.
  """
  @spec memory(t(), non_neg_integer()) :: {:ok, binary()} | {:error, atom() | tuple()}
  def memory(%__MODULE__{memories: memories}, index \\ 0) do
    case Enum.find(memories, &(&1.index == index)) do
      nil -> {:error, :no_memory}
      %{data: nil} -> {:error, :not_captured}
      %{data: data, size: size} -> Munition.Forensics.Memory.decompress(data, size)
    end
  end

  @doc """
  The decompressed bytes of each memory in `indexes`, in that order, or the
  first error of `memory/2` (in the order of `indexes`).

  `indexes` defaults to `:all`: every memory of the dump, in ascending index
  order. All the bytes are held at once: a caller that needs only one memory
  should use `memory/2`.

  ## Examples

      iex> {:crash, :trap, dump} = Munition.fire(~s{(module (memory 1) (func (export "f") unreachable))}, "f", [])
      iex> {:ok, [bytes]} = Munition.Forensics.Dump.memories_bytes(dump)
      iex> byte_size(bytes)
      65536
      iex> Munition.Forensics.Dump.memories_bytes(dump, [0, 1])
      {:error, :no_memory}
  """
  @spec memories_bytes(t(), [non_neg_integer()] | :all) :: {:ok, [binary()]} | {:error, atom() | tuple()}
  def memories_bytes(dump, indexes \\ :all)

  def memories_bytes(%__MODULE__{memories: memories} = dump, :all),
    do: memories_bytes(dump, memories |> Enum.map(& &1.index) |> Enum.sort())

  def memories_bytes(%__MODULE__{} = dump, indexes) when is_list(indexes) do
    indexes
    |> Enum.reduce_while({:ok, []}, fn index, {:ok, acc} ->
      case memory(dump, index) do
        {:ok, bytes} -> {:cont, {:ok, [bytes | acc]}}
        error -> {:halt, error}
      end
    end)
    |> case do
      {:ok, acc} -> {:ok, Enum.reverse(acc)}
      error -> error
    end
  end

  def memories_bytes(%__MODULE__{}, indexes) do
    raise ArgumentError, "indexes must be a list of memory indexes, got: #{inspect(indexes)}"
  end
end

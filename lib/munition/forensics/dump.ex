defmodule Munition.Forensics.Dump do
  @moduledoc """
  The state of a guest that failed, as `Munition.fire/4` returns it in
  `{:crash, reason, dump}`.

  Fields:

    * `:version` - dump format version (`1`)
    * `:reason` - `:fuel_exhausted`, `:trap`, `:timeout`, `:memory_limit` or `:host_error`
    * `:trap` - the trap kind: `:unreachable`, `:integer_divide_by_zero`,
      `:integer_overflow`, `:memory_out_of_bounds`, `:stack_overflow`,
      `:indirect_call_to_null`, `:bad_signature`, `:table_out_of_bounds`,
      `:bad_conversion_to_integer`, `:heap_misaligned`, `:null_reference`,
      `:allocation_too_large`, `:out_of_fuel`, `:interrupt` (deadline),
      `:memory_limit`, `:abort` (the guest called `abort`), `:host_error`, or `:unknown`
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
    * `:function`, `:args` - what was called
    * `:capabilities` - the granted, expanded capabilities
    * `:log` - guest log lines `[{level, line}]` (capability `:log`)
    * `:wasmtime_version`, `:munition_version`, `:captured_at` (UTC `DateTime`)
  """

  @version 1

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
            imports: [],
            exports: [],
            function: nil,
            args: [],
            capabilities: [],
            log: [],
            wasmtime_version: nil,
            munition_version: nil,
            captured_at: nil

  @type t :: %__MODULE__{}

  @doc "The dump format version this Munition writes."
  @spec version() :: pos_integer()
  def version, do: @version

  @doc """
  Writes `dump` into directory `dir` under a unique, sortable file name
  (capture time first), creating the directory if needed.
  """
  @spec write_to_dir(t(), Path.t()) :: {:ok, Path.t()} | {:error, term()}
  def write_to_dir(%__MODULE__{} = dump, dir) do
    # Placeholder until the durable format lands (forensics issue).
    with :ok <- File.mkdir_p(dir) do
      path = Path.join(dir, "#{System.os_time(:microsecond)}-#{dump.reason}.munition-dump")
      with :ok <- File.write(path, :erlang.term_to_binary(dump)), do: {:ok, path}
    end
  end

  @doc """
  The decompressed bytes of memory `index` (default `0`), or `{:error, reason}`.

  `{:error, :no_memory}` when the guest has no such memory, and
  `{:error, :not_captured}` when the dump was taken with `forensics: :minimal`.
  """
  @spec memory(t(), non_neg_integer()) :: {:ok, binary()} | {:error, atom()}
  def memory(%__MODULE__{memories: memories}, index \\ 0) do
    case Enum.find(memories, &(&1.index == index)) do
      nil -> {:error, :no_memory}
      %{data: nil} -> {:error, :not_captured}
      %{data: data, size: size} -> Munition.Native.zstd_decompress(data, size)
    end
  end
end

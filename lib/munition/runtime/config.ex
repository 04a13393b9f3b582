defmodule Munition.Runtime.Config do
  @moduledoc """
  Munition's configuration from the application environment, and what the
  engine can do.

  Keys under `config :munition`:

    * `:runtime` - the `Munition.Runtime` of calls that name none. Defaults to
      `Munition.Runtime.Wasmtime`.
    * `:module_cache_size` - compiled modules kept, least recently used evicted.
      Defaults to `128`; `0` disables the cache.
    * `:default_timeout` - milliseconds. Defaults to `5_000`.
    * `:default_max_memory` - bytes. Defaults to `67_108_864` (64 MiB).
    * `:log_limit` - bytes of guest log lines kept per call. Defaults to `65_536`.
    * `:forward_guest_logs` - when `true`, guest log lines (capability `:log`)
      are also sent to `Logger` after each call: level 0 as debug, 1 info,
      2 warning, 3 and above error. Defaults to `false`.
    * `:dump_dir` - when set, every crash's dump is written there (see `Munition.fire/4`).
    * `:max_instances`, `:max_memories_per_module`, `:max_concurrent_compiles` -
      the engine's capacity, below.
    * Fuel budgets live under `Munition.Fuel.Policy`.

  ## Engine capacity and address space

  The engine is built once, on first use, with a fixed number of instance
  slots (Wasmtime's pooling allocator). `Munition.Application` reads these keys
  when it starts, before anything uses the engine (changing them later has no
  effect until the VM restarts: `Munition.Runtime.Wasmtime.configure/1` says
  it is too late):

    * `:max_instances` - instances alive at once; past that a call waits for a
      slot until its deadline, then is `{:error, {:overloaded, _}}`. Defaults to
      `1_000`, or what fits in half of `RLIMIT_AS` (`ulimit -v`) when one is set.
    * `:max_memories_per_module` - memories a module may have (multi-memory,
      `1..16`). Defaults to `4`.
    * `:max_concurrent_compiles` - compile threads (`1..64`). Defaults to half
      the cores, at least 1.

  Each instance slot reserves virtual address space once, when the engine is
  built, none of it resident until a guest uses it:

    * per memory: 4 GiB (the largest `:max_memory`, and the reservation that
      lets compiled code skip bounds checks) + a 32 MiB guard region, times
      `:max_memories_per_module` (so any module fits any slot);
    * per table: 100,000 elements of 8 bytes = 784 KiB, times 4 tables;
    * a fiber stack: 2 MiB + a 4 KiB guard page;
    * once: a 32 MiB guard region before the first memory slot.

  With the defaults that is 4 x 4.03 GiB + 3.1 MiB + 2 MiB = 16.13 GiB per
  instance and 15.8 TiB for 1,000 instances: about an eighth of x86-64's
  128 TiB of user address space, so Munition takes at most half of that
  (64 TiB: at most 4,062 instances of 4 memories). Under an `RLIMIT_AS`, which
  counts reserved address space in full, it takes at most half of the limit
  (a `ulimit -v` of 200 GiB leaves room for 6 instances, or 24 with
  `max_memories_per_module: 1`). `Munition.Runtime.Wasmtime.info/0` reports the
  capacity and the bytes reserved (`:max_instances`,
  `:max_memories_per_module`, `:max_concurrent_compiles`,
  `:reserved_address_space`).
  """

  @doc """
  The `Munition.Runtime` used when a call names none (`config :munition, :runtime`).
  Defaults to `Munition.Runtime.Wasmtime`.
  """
  @spec runtime() :: module()
  def runtime, do: Application.get_env(:munition, :runtime, Munition.Runtime.Wasmtime)

  @doc "Compiled modules kept in the native cache."
  @spec module_cache_size() :: non_neg_integer()
  def module_cache_size, do: Application.get_env(:munition, :module_cache_size, 128)

  @doc "Default `:timeout` of `Munition.fire/4`, in milliseconds."
  @spec default_timeout() :: pos_integer()
  def default_timeout, do: Application.get_env(:munition, :default_timeout, 5_000)

  @doc "Default `:max_memory` of `Munition.fire/4`, in bytes."
  @spec default_max_memory() :: pos_integer()
  def default_max_memory, do: Application.get_env(:munition, :default_max_memory, 64 * 1024 * 1024)

  @engine_keys [:max_instances, :max_memories_per_module, :max_concurrent_compiles]

  @doc """
  The engine's capacity as configured (see "Engine capacity and address
  space" above): a map of `:max_instances`, `:max_memories_per_module` and
  `:max_concurrent_compiles`, `nil` for each one not configured (the engine
  then sizes it for the machine). Raises `ArgumentError` for a value that is
  not a positive integer; whether it fits the machine is the engine's to
  say.
  """
  @spec engine!() :: %{atom() => pos_integer() | nil}
  def engine! do
    Map.new(@engine_keys, fn key ->
      case Application.get_env(:munition, key) do
        value when is_nil(value) or (is_integer(value) and value > 0) ->
          {key, value}

        value ->
          raise ArgumentError,
                "config :munition, #{key}: must be a positive integer, got: #{inspect(value)}"
      end
    end)
  end

  @doc "Bytes of guest log lines kept per call."
  @spec log_limit() :: non_neg_integer()
  def log_limit, do: Application.get_env(:munition, :log_limit, 65_536)

  @doc "Whether guest log lines are forwarded to `Logger`."
  @spec forward_guest_logs?() :: boolean()
  def forward_guest_logs?, do: Application.get_env(:munition, :forward_guest_logs, false) == true

  @doc "Default directory for crash dumps, or `nil`."
  @spec dump_dir() :: Path.t() | nil
  def dump_dir, do: Application.get_env(:munition, :dump_dir)

  @doc """
  What the engine of `runtime` (the configured one by default) offers, as its
  `c:Munition.Runtime.info/0` says: for Wasmtime `%{engine: :wasmtime,
  version: "48.0.8", features: [...]}` with features among `:fuel`, `:epochs`,
  `:pooling`, `:coredump`, `:fibers`.
  """
  @spec features(module()) :: map()
  def features(runtime \\ runtime()), do: runtime.info()

  @doc "Whether the engine of `runtime` (the configured one by default) has `feature`."
  @spec feature?(atom(), module()) :: boolean()
  def feature?(feature, runtime \\ runtime()), do: feature in features(runtime).features
end

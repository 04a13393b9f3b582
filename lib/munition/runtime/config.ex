defmodule Munition.Runtime.Config do
  @moduledoc """
  Munition's configuration from the application environment, and what the
  engine can do.

  Keys under `config :munition`:

    * `:runtime` - the `Munition.Runtime` of calls that name none. Defaults to
      `Munition.Runtime.Wasmtime`; `Munition.Runtime.Wasmi` is the other.
    * `:module_cache_size` - compiled modules kept, least recently used evicted.
      Defaults to `128`; `0` disables the cache.
    * `:default_timeout` - milliseconds. Defaults to `5_000`.
    * `:default_max_memory` - bytes. Defaults to `67_108_864` (64 MiB).
    * `:compile_timeout` - the default of the `:compile_timeout` option of
      `Munition.compile/2`, `Munition.validate/2` and `Munition.Pool`:
      milliseconds they wait for a compilation. Defaults to `30_000`.
      (`Munition.fire/4`'s `:timeout` covers its compilation, and its
      `:compile_timeout` has no default.)
    * `:limits` - the compile limits, below.
    * `:log_limit` - bytes of guest log lines kept per call. Defaults to `65_536`.
    * `:forward_guest_logs` - when `true`, guest log lines (capability `:log`)
      are also sent to `Logger` after each call: level 0 as debug, 1 info,
      2 warning, 3 and above error. Defaults to `false`.
    * `:dump_dir` - when set, every crash's dump is written there (see `Munition.fire/4`).
    * `:compile_cache_dir` - when set, a directory where Wasmtime's compiled
      code is kept across restarts (created `0700` when missing): below,
      "Compiled code on disk". Defaults to `nil`: nothing is written.
    * `:max_instances`, `:max_memories_per_module`, `:max_concurrent_compiles` -
      the engine's capacity, below.
    * Fuel budgets live under `Munition.Fuel.Policy`.

  ## Compile limits

  Compiling is the one step whose cost a module's author chooses before any
  fuel or deadline applies: 200,000 empty functions (800 KB) take 13-27 s and
  about 1 GiB to compile, and 1,000 functions declaring 50,000 locals each
  (8 KB) take 7 s. So every module is measured by a cheap pre-scan (section
  headers, body sizes and local declarations: no instruction is decoded)
  before it is validated or compiled, and one over a limit is
  `{:error, {:module_limit, message}}`, the message naming the limit and the
  module's value. A cached module is checked against the caller's limits too,
  so the answer does not depend on what was compiled before.

  Limits come from `config :munition, :limits` (a keyword list) over the
  defaults, and from the `:limits` option of `Munition.fire/4`,
  `Munition.compile/2` and `Munition.validate/2` over both:

  | limit | default | what it bounds |
  |---|---|---|
  | `:module_size` | `8_388_608` (8 MiB) | bytes of the input (wasm or WAT) and of the wasm |
  | `:functions` | `10_000` | functions defined: compiling costs 0.1-0.3 ms and 5 KB each whatever their size |
  | `:function_size` | `1_048_576` (1 MiB) | bytes of one function body |
  | `:locals` | `1_000_000` | locals declared by all functions together: each costs about 150 ns to compile, and 50,000 fit in 5 bytes |
  | `:globals` | `10_000` | globals defined (16 bytes each in every instance) |
  | `:data_segments` | `10_000` | data segments |
  | `:data_size` | `8_388_608` (8 MiB) | bytes of all data segments |
  | `:table_elements` | `10_000` | initial elements of a table (at most `100_000`, what a table slot holds) |
  | `:imports` | `1_000` | imports (each one linked at every call) |
  | `:exports` | `1_000` | exports (listed in every `%Munition.Module{}`) |

  ### Components

  A component's limits apply to its core modules together. The toolchains
  that make components from JavaScript and Python (componentize-js,
  componentize-py) produce tens of MB and 12,000-14,000 functions, so a
  limit left at the default above takes, for a component, the default
  below (a limit you set, by configuration or option, stands):

  | limit | component default |
  |---|---|
  | `:module_size` | `67_108_864` (64 MiB) |
  | `:functions` | `50_000` |
  | `:data_size` | `67_108_864` (64 MiB) |
  | `:imports` | `10_000` |
  | `:exports` | `10_000` |

  Measured here: the 12 MB JavaScript plugin (12,714 functions) compiled in
  24 s and the 18 MB Python plugin (13,363 functions, 2,253 imports and
  4,198 exports among its 14 core modules) in 18 s, on a 2-core machine
  loaded by two other builds (one compile thread each: Munition compiles
  on its own threads, without Wasmtime's parallel compilation).

  The worst modules these defaults accept (8 MiB of code in 10,000 functions,
  or using 1,000,000 locals) compiled in 1.7-6.5 s with up to 62 MiB more
  resident memory at the peak, on a loaded 2-core machine, against 27-30 s
  and 1.1 GiB for the 200,000-function bomb with the `:functions` limit raised;
  `MIX_ENV=test mix run native/compile_bounds.exs` measures them anywhere.

  Memories and tables are bounded by the engine instead (an instance slot
  holds at most `:max_memories_per_module` memories and 4 tables): a module
  with more is `{:error, {:unsupported, message}}`, after validation (an
  invalid module is `{:invalid_module, _}` whatever else it has).

  ## Where compiling runs

  Never on a scheduler: on native threads Munition owns, at the normal
  priority, each compilation on one thread (a lowered priority starved
  compiles whenever the VM was busy):

    * `:max_concurrent_compiles` threads (defaults to half the cores, at
      least 1) compile modules in the order they come; compilations past that
      wait in a queue, so compile bombs cannot take the CPU of guests already
      running;
    * one express thread takes every input of up to 64 KiB first, pre-scans
      it and compiles it if it is small (at most 256 functions and 65,536
      locals: tens of milliseconds at most), handing anything costlier to the
      queue. Small modules, the common case, are never stuck behind a large
      one.

  A binary module over a limit is refused before it is queued, however busy
  the threads are (WAT text is checked once parsed, on a compile thread).
  Callers of the same bytes under the same limits share one compilation.
  The caller waits for its result with a deadline (the `:compile_timeout`
  option, within the call's `:timeout`: see `Munition.compile/2`); past it the answer is
  `{:error, {:timeout, message}}`. A compilation that was running goes on in
  the background and lands in the module cache, so a retry finds it; one
  still queued that nobody waits for any more is dropped.
  `Munition.Runtime.Wasmtime.compile_stats/0` counts them.

  ## Compiled code on disk

  Cranelift takes seconds for a module of real size (20-32 s for the 12 MB
  core module of a componentize-js plugin, on this project's loaded
  machine), and a node that restarts would compile every module again. With
  `config :munition, compile_cache_dir: "/var/cache/my_app/munition"`, the
  compile thread that compiles a core module or a component with Wasmtime
  writes its compiled code to that directory, and the next compile of the
  same wasm, on this node after the module cache forgot it or on the node
  restarted, loads it instead: 0.16-0.35 s for that core module, and
  about 0.1 s for the whole JavaScript plugin as a component, its first call
  included, checks included (the figures, and the command, are in the
  performance guide). Only the compile threads read and write the files,
  never a scheduler. The setting is read at every compile, as
  `:module_cache_size` is. The Wasmi runtime keeps nothing on disk: it
  compiles in about the time it takes to validate.

  Code from the disk is the same as compiled code: the input is measured
  and checked against the caller's limits first, what Munition supports is
  checked again, a component is linked (WASI 0.2, the imports Elixir
  serves) and its world listed as after a compile, and
  `Munition.Runtime.Wasmtime.cache_stats/0` counts it under `:disk`
  (`:hits`), not as a compilation. A file is named by a key hashing the
  kind of code (a core module's or a component's: neither is ever loaded as
  the other), the wasm's SHA-256 and everything its code depends on:
  Wasmtime's version and its `precompile_compatibility_hash` (the target,
  the compiler's settings and the CPU features it uses, the engine's
  tunables and wasm features). Code of another Wasmtime, configuration or
  CPU is under another name, so several builds can share a directory; files
  are never evicted (clear the directory when it grows).

  Loading compiled code is what Wasmtime calls unsafe: it trusts the bytes
  to be what it wrote, and bytes that are not can run any code in the node.
  So a file is loaded only when:

    * the directory and the file are owned by the node's effective uid and
      writable by nobody else (no group or other write bit), and the file is
      a regular file (not a link, opened relative to the directory checked);
    * its trailer (its last 84 bytes) has Munition's magic and format, the
      key asked for (a file copied under another name is refused), the
      length of the file, and the BLAKE3 digest of the code it carries;
    * Wasmtime accepts it (its version and configuration, once more).

  The file checked is the file loaded: Wasmtime maps it through the
  descriptor the checks read (the code is not copied into memory, which
  took more than half of a 43 MB load), so a file replaced in the
  directory meanwhile is not taken. Files are replaced by renaming, never
  written in place. The mapping stays while the module is loaded, so a file
  must never be changed in place either, by anyone: truncated or rewritten
  through the same file (`>`, `truncate`, an editor that saves in place)
  under a node that has its module loaded, it takes the node down (a
  SIGBUS; Wasmtime reads the code's unwind information when the module is
  dropped, too) or runs what it now holds. Deleting a file, or replacing it
  by renaming another over it, is safe. The directory is the node's own
  (owner-only, checked), which keeps everyone else out.

  Anything else (a flipped byte, a truncated file, another user's file, a
  directory writable by a group) is not loaded: the wasm is compiled, the
  file rewritten when the directory passes, and `:rejected` with
  `:last_problem` say why. Files are written `0600` to a temporary name and
  renamed, so no reader sees half a file, and nodes can share a directory
  (a node killed while writing may leave a `.*.tmp` file behind: never
  read, safe to delete). Only the directory itself is checked, not its
  parents: a directory another user put in its place is theirs, and
  refused.

  What it does not protect against: anything running as the node's own
  user can write a file that passes every check. That is out of scope on
  purpose: such a process can already replace the NIF, the BEAM files or
  attach a debugger to the node. So give the directory to the node's user
  alone (not a shared `/tmp` path another user could create first: that
  directory is refused, as its owner is not the node's), and treat it like
  the node's code. The digest catches corruption, not forgery.

  ## Engine capacity and address space

  The engine is built once, on first use, with a fixed number of instance
  slots (Wasmtime's pooling allocator). Munition's application reads these
  keys when it starts, before anything uses the engine, and hands them to
  `c:Munition.Runtime.configure/1` of each runtime of `runtimes/0` that has
  it (changing them later has no effect until the VM restarts:
  `Munition.Runtime.Wasmtime.configure/1` says it is too late):

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

  Once used, a slot keeps what its guests wrote of each memory's first
  2 MiB (and of each table's first 64 KiB) resident: resetting the slot
  writes the module's image back over those pages, where the next instance
  would otherwise take a copy-on-write fault for each page it writes. A
  call on a snapshot whose heap fits in 2 MiB takes none. So the resident
  memory a node keeps between calls is at most 2 MiB per memory of the
  slots that have been in use at once. On Linux before 6.7, which cannot
  tell Wasmtime which pages were written (`PAGEMAP_SCAN`), every reset
  rewrites the whole resident part, so there it is 1 MiB.

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

  # The keys a call's preparation (its options checked, imports linked, its
  # State built) reads. `Munition.fire/4` reuses a caller's last preparation
  # while their values are unchanged: reading these one by one costs the
  # same whatever else the node configures, where the whole environment of
  # `:munition` is a scan of every application's (10.6 µs a call with 444
  # keys configured, 1.7 µs with 44). `:compile_timeout` is not among them:
  # a call given bytes, the only one that compiles, is never reused. A test
  # traces the reads of calls to keep this list true
  # (test/munition/prepared_test.exs).
  @preparation_keys [
    :runtime,
    :default_timeout,
    :default_max_memory,
    :limits,
    :dump_dir,
    :log_limit,
    :replay_log_limit,
    :default_fuel,
    :fuel_profiles
  ]

  @doc false
  @spec preparation_keys() :: [atom()]
  def preparation_keys, do: @preparation_keys

  @doc false
  # What `preparation_keys/0` are set to, in order: equal, an equal
  # preparation. `{:ok, nil}` and `:undefined` differ: a key set to `nil`
  # is not left unset (which takes its default).
  @spec preparation_env() :: [{:ok, term()} | :undefined]
  def preparation_env, do: Enum.map(@preparation_keys, &:application.get_env(:munition, &1))

  @doc """
  The `Munition.Runtime` used when a call names none (`config :munition, :runtime`).
  Defaults to `Munition.Runtime.Wasmtime`.
  """
  @spec runtime() :: module()
  def runtime, do: Application.get_env(:munition, :runtime, Munition.Runtime.Wasmtime)

  @doc """
  The runtimes of this node whose engines Munition's application configures
  when it starts (see `c:Munition.Runtime.configure/1`): the configured
  `:runtime` first, then Munition's own two, `Munition.Runtime.Wasmtime`
  and `Munition.Runtime.Wasmi`, which any call may name.

  ## Examples

      iex> Munition.Runtime.Config.runtimes()
      [Munition.Runtime.Wasmtime, Munition.Runtime.Wasmi]
  """
  @spec runtimes() :: [module()]
  def runtimes, do: Enum.uniq([runtime(), Munition.Runtime.Wasmtime, Munition.Runtime.Wasmi])

  @doc "Compiled modules kept in the native cache."
  @spec module_cache_size() :: non_neg_integer()
  def module_cache_size, do: Application.get_env(:munition, :module_cache_size, 128)

  @doc "Default `:timeout` of `Munition.fire/4`, in milliseconds."
  @spec default_timeout() :: pos_integer()
  def default_timeout, do: Application.get_env(:munition, :default_timeout, 5_000)

  @doc "Default `:max_memory` of `Munition.fire/4`, in bytes."
  @spec default_max_memory() :: pos_integer()
  def default_max_memory, do: Application.get_env(:munition, :default_max_memory, 64 * 1024 * 1024)

  @doc "The default `:compile_timeout` of `Munition.compile/2`, `Munition.validate/2` and pools, in milliseconds."
  @spec compile_timeout() :: pos_integer()
  def compile_timeout, do: Application.get_env(:munition, :compile_timeout, 30_000)

  @default_limits [
    module_size: 8 * 1024 * 1024,
    functions: 10_000,
    function_size: 1024 * 1024,
    locals: 1_000_000,
    globals: 10_000,
    data_segments: 10_000,
    data_size: 8 * 1024 * 1024,
    table_elements: 10_000,
    imports: 1_000,
    exports: 1_000
  ]

  # What a table slot holds (see the native engine).
  @max_table_elements 100_000

  # A component's core modules together (see "Components" above).
  @component_limits [
    module_size: 64 * 1024 * 1024,
    functions: 50_000,
    data_size: 64 * 1024 * 1024,
    imports: 10_000,
    exports: 10_000
  ]

  @doc """
  The limits a component is compiled under, from `limits` (a map from
  `limits!/1`): a limit left at its default for core modules takes the
  component default instead (see "Components" above); one set anywhere
  stands.
  """
  @spec component_limits(%{atom() => non_neg_integer()}) :: %{atom() => non_neg_integer()}
  def component_limits(limits) do
    Enum.reduce(@component_limits, limits, fn {name, value}, limits ->
      if limits[name] == @default_limits[name], do: %{limits | name => value}, else: limits
    end)
  end

  @doc """
  The compile limits (see "Compile limits" above): `overrides` over
  `config :munition, :limits` over the defaults, as a map with every limit.
  Raises `ArgumentError` for an unknown limit or a value that is not a
  non-negative integer.

  ## Examples

      iex> Munition.Runtime.Config.limits!(functions: 50).functions
      50
      iex> Munition.Runtime.Config.limits!([]).module_size
      8388608
  """
  @spec limits!(keyword()) :: %{atom() => non_neg_integer()}
  def limits!(overrides \\ []) do
    case overrides do
      [] -> configured_limits()
      overrides -> Map.merge(configured_limits(), Map.new(check_limits!(overrides, ":limits")))
    end
  end

  # The configured limits over the defaults, checked once per value of the
  # application environment (every fire/4 of bytes reads them).
  defp configured_limits do
    configured = Application.get_env(:munition, :limits, [])

    case :persistent_term.get({__MODULE__, :limits}, nil) do
      {^configured, limits} ->
        limits

      _stale ->
        limits =
          @default_limits
          |> Keyword.merge(check_limits!(configured, "config :munition, :limits"))
          |> Map.new()

        :persistent_term.put({__MODULE__, :limits}, {configured, limits})
        limits
    end
  end

  @doc "The default compile limits, before configuration."
  @spec default_limits() :: keyword()
  def default_limits, do: @default_limits

  defp check_limits!(limits, where) when is_list(limits) do
    Enum.map(limits, fn
      {:table_elements, value} when is_integer(value) and value >= 0 and value <= @max_table_elements ->
        {:table_elements, value}

      {:table_elements, value} ->
        raise ArgumentError,
              "#{where}: table_elements must be an integer 0..#{@max_table_elements} " <>
                "(what a table slot holds), got: #{inspect(value)}"

      {key, value} when is_atom(key) and is_integer(value) and value >= 0 ->
        if Keyword.has_key?(@default_limits, key),
          do: {key, value},
          else: raise(ArgumentError, unknown_limit(where, key))

      {key, value} when is_atom(key) ->
        if Keyword.has_key?(@default_limits, key),
          do: raise(ArgumentError, "#{where}: #{key} must be a non-negative integer, got: #{inspect(value)}"),
          else: raise(ArgumentError, unknown_limit(where, key))

      other ->
        raise ArgumentError, "#{where} must be a keyword list of limits, got: #{inspect(other)}"
    end)
  end

  defp check_limits!(other, where),
    do: raise(ArgumentError, "#{where} must be a keyword list of limits, got: #{inspect(other)}")

  defp unknown_limit(where, key),
    do: "#{where}: unknown limit #{inspect(key)}; the limits are #{inspect(Keyword.keys(@default_limits))}"

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

  @doc """
  Bytes of replay log kept per call (`config :munition, :replay_log_limit`,
  by default 1 MiB): past it, the call's dump says it cannot be replayed
  (see `Munition.replay/3`).
  """
  @spec replay_log_limit() :: non_neg_integer()
  def replay_log_limit, do: Application.get_env(:munition, :replay_log_limit, 1_048_576)

  @doc "Whether guest log lines are forwarded to `Logger`."
  @spec forward_guest_logs?() :: boolean()
  def forward_guest_logs?, do: Application.get_env(:munition, :forward_guest_logs, false) == true

  @doc """
  The directory of compiled code on disk (`config :munition,
  :compile_cache_dir`, see "Compiled code on disk" above), expanded to an
  absolute path, or `nil` (the default: nothing on disk). Raises
  `ArgumentError` for a value that is neither a non-empty string nor `nil`.

  ## Examples

      iex> Munition.Runtime.Config.compile_cache_dir()
      nil
  """
  @spec compile_cache_dir() :: Path.t() | nil
  def compile_cache_dir,
    do:
      check_compile_cache_dir!(
        Application.get_env(:munition, :compile_cache_dir),
        "config :munition, compile_cache_dir:"
      )

  @doc false
  # The check of a cache directory, from the configuration or an option (`where`).
  @spec check_compile_cache_dir!(term(), String.t()) :: Path.t() | nil
  def check_compile_cache_dir!(nil, _where), do: nil
  def check_compile_cache_dir!(dir, _where) when is_binary(dir) and dir != "", do: Path.expand(dir)

  def check_compile_cache_dir!(other, where),
    do:
      raise(
        ArgumentError,
        "#{where} must be a directory path (a non-empty string) or nil, got: #{inspect(other)}"
      )

  @doc "Default directory for crash dumps, or `nil`."
  @spec dump_dir() :: Path.t() | nil
  def dump_dir, do: Application.get_env(:munition, :dump_dir)

  @doc """
  What the engine of `runtime` (the configured one by default) offers, as its
  `c:Munition.Runtime.info/0` says: for Wasmtime `%{engine: :wasmtime,
  version: "48.0.8", features: [...]}` with features among `:fuel`,
  `:pooling`, `:coredump`, `:fibers`.
  """
  @spec features(module()) :: map()
  def features(runtime \\ runtime()), do: runtime.info()

  @doc "Whether the engine of `runtime` (the configured one by default) has `feature`."
  @spec feature?(atom(), module()) :: boolean()
  def feature?(feature, runtime \\ runtime()), do: feature in features(runtime).features
end

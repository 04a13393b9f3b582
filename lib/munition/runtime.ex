defmodule Munition.Runtime do
  @moduledoc """
  The contract between Munition and a WebAssembly engine, and the only way to
  one: nothing outside a module implementing this behaviour reaches the
  engine's native code.

  Munition ships two: `Munition.Runtime.Wasmtime` (the default) and
  `Munition.Runtime.Wasmi` (an interpreter; [Engines](engines.md) says when
  to choose which). A runtime owns compiling, instantiating in a fresh store,
  running guest code in slices, guest memory, capturing the state of a
  failed store, releasing it, and the host-call protocol of Elixir host
  functions: engine concerns only. What reads captured memory afterwards
  (its codec and scans) is the same whichever engine wrote it, and belongs
  to forensics. Munition itself (the process that makes the call) owns the
  order of the steps, the driver loop, the timeout and the forensics.

  A runtime is any module that exports every callback below but the
  optional ones (`c:cache_stats/0`, `c:configure/1`): a call whose
  `:runtime` lacks one raises `ArgumentError` naming what it lacks.

  A runtime must never reuse a store between instances, must stop a guest at
  the deadline given in its `t:state/0`, and must never run a guest on a
  scheduler thread's own stack.

  ## Running a guest: progress

  `c:instantiate/2`, `c:call/3` and `c:resume/1` run guest code for one slice
  and say where it stands (`t:progress/0`):

    * `:ready` - instantiated (start function done); call exports now.
    * `{:returned, values, meta}` - the call returned `values` (or
      `{:binary, bytes}`, a binary result read with the call, see
      `c:instantiate/2`); `meta` has `:fuel_consumed`, `:fuel_remaining`,
      `:execution_time_us`, `:log` and `:output` (below).
    * `{:crashed, reason}` - the guest failed (`t:Munition.Reason.crash/0`);
      `c:capture/2` reads why and what the store held.
    * `{:exited, code, meta}` - the guest called WASI's `proc_exit(code)`
      (see `Munition.Host.WASI`): its execution is over, as it wanted, with
      `meta` as for `:returned`. Not a failure.
    * `:yielded` - the slice ran out; call `c:resume/1` at once.
    * `{:waiting, ms}` - the guest is suspended, waiting for something
      outside itself (an Elixir host function, a WASI sleep, a file operation
      on another thread): serve the `{:munition_host_call, call, index, args,
      fuel}` messages sent to the state's `:host_pid` (Munition does: it
      runs each host function in a process of its own and answers with
      `c:host_reply/3`), wait for `:munition_wake` (sent to the process
      that made the instance) or at most `ms` milliseconds (its wake time or
      its deadline), then `c:resume/1`.

  The metadata of `:returned` and `:exited` has `:output` too: `nil`, or for
  a call with a WASI configuration `%{stdout, stderr, stdout_truncated,
  stderr_truncated}`.

  Munition loops on `:yielded` and `{:waiting, ms}` in one place; the
  runtime never loops on its own, so the caller's process stays in control
  between slices.
  """

  @typedoc """
  One call, as `Munition.fire/4` built it from the checked options: a
  struct a runtime reads when it makes the store (`c:instantiate/2`) and
  must not change. Its fields:

    * `:module` - the compiled `Munition.Module`; `:function`, `:args` - the
      export and the arguments as given; `:runtime` - the runtime that runs it
    * `:fuel` - the resolved budget (start function included)
    * `:timeout` - milliseconds from `:started_at` (monotonic milliseconds)
      to the deadline
    * `:max_memory` - bytes of linear memory the guest may have
    * `:links` - what each import links to
      (`t:Munition.Host.Capabilities.link/0`, in import order)
    * `:log_limit` - bytes of guest log lines kept
    * `:host_pid` - the process that drives the guest and serves its Elixir
      host functions, `nil` when there are none
    * `:wasi` - the call's WASI configuration, `nil` when it has none:
      `%{args, env, stdin, preopens, stdout_limit, stderr_limit, clock,
      http_allow, http_response_limit}`, preopens as `{guest_path,
      host_path, writable}`, `http_allow` as `{scheme, host, port}` (`nil`
      for a scheme or port left open)
    * `:call` - `nil`, or `{function, args, release, alloc, binary_result}`:
      see `c:instantiate/2`

  The other fields (capabilities, host functions, forensics, result, alloc)
  are Munition's own.
  """
  @type state :: Munition.Instance.State.t()

  @typedoc "A live instance of a runtime: a fresh store with one module instantiated in it."
  @type instance :: term()

  @typedoc "One call of an Elixir host function, as the runtime hands it out."
  @type host_call :: term()

  @typedoc "Where a guest execution stands after a slice (see the moduledoc)."
  @type progress ::
          :ready
          | {:returned, [term()] | {:binary, binary()}, map()}
          | {:crashed, Munition.Reason.crash()}
          | {:exited, non_neg_integer(), map()}
          | :yielded
          | {:waiting, non_neg_integer()}

  @typedoc """
  What a runtime's compiled code on disk gave since the VM started: see
  `Munition.Runtime.Wasmtime.cache_stats/0`.
  """
  @type disk_stats :: %{
          hits: non_neg_integer(),
          misses: non_neg_integer(),
          rejected: non_neg_integer(),
          written: non_neg_integer(),
          write_failed: non_neg_integer(),
          last_problem: String.t() | nil
        }

  @typedoc "A native failure: `{kind, message}`, `kind` among `Munition.Reason.error_kinds/0` or `:invalid_state`, `:out_of_bounds`, `:bad_data`."
  @type failure :: {:error, {atom(), term()}}

  ## Modules

  @doc """
  Compiles `bytes` (wasm or WAT), or finds them in the runtime's cache of
  compiled modules, within `opts[:timeout]` milliseconds and under
  `opts[:limits]` (a map from `Munition.Runtime.Config.limits!/1`); a
  runtime given neither uses the configured ones. Compiling must not hold a
  scheduler thread for long. Returns `{:ok, module}`,
  `{:error, {:invalid_module, message}}`, `{:error, {:unsupported, message}}`
  for valid wasm the runtime does not run, `{:error, {:module_limit,
  message}}` for a module over a limit, or `{:error, {:timeout, message}}`.
  """
  @callback compile(bytes :: binary(), opts :: keyword()) ::
              {:ok, Munition.Module.t()}
              | {:error, {:invalid_module | :unsupported | :module_limit | :timeout, String.t()}}

  @doc """
  The built-in host functions the runtime implements, one map per import:
  `%{capability: atom, module: String.t(), name: String.t(), params: [type],
  results: [type]}`. `Munition.Host.Capabilities` grants imports from it,
  and links the `wasi_snapshot_preview1` rows of `:wasi_fs` and
  `:wasi_fs_write` inert when `:wasi_stdio` is granted without them (see
  "Inert links" there): a runtime's file functions must reach nothing but
  the preopens of the call's WASI configuration, which has none without
  `:wasi_fs` and no writable one without `:wasi_fs_write`.
  """
  @callback builtins() :: [map()]

  @doc """
  What the engine is: `%{engine: atom, version: String.t(), features: [atom],
  crash_reasons: [atom], trap_kinds: [atom]}`. The two lists are the
  vocabulary the native side can produce, a subset of `Munition.Reason`'s.
  """
  @callback info() :: map()

  @doc "Stores alive right now: every call must bring this back to where it was."
  @callback live_count() :: non_neg_integer()

  ## Instances

  @doc """
  Creates a fresh store for `state` (its `:fuel`, `:timeout`, `:max_memory`,
  `:links`, `:log_limit`, `:host_pid` and `:wasi`), instantiates `module` in it and runs
  the first slice of its start function. Returns `{:ok, instance, progress}`
  (the caller must `c:cleanup/1` the instance, whatever comes next), or
  `{:error, reason}` when no store was left behind: `{:memory_limit, _}`,
  `{:instantiation_failed, _}`, `{:overloaded, _}`.

  When `state.call` is `{function, args, release, alloc, binary_result}`,
  a runtime may go on to that call once the instance is ready, in the same
  execution, and report the call's progress (as `c:call/3` would) where it
  would report `:ready`: from this function, or from a later `c:resume/1`
  when instantiating took more than a slice. One trip to the engine instead
  of two. `args` are as given: binaries among them are the binary ABI's,
  which a runtime may lower itself (calling `alloc`, copying the bytes in,
  passing `ptr, len`) or refuse. With `binary_result`, a runtime may read
  the result's bytes itself and report `{:returned, {:binary, bytes}, meta}`.
  It must return `:ready` without calling when the call cannot start (no
  such export, arguments of the wrong types, binaries it does not lower),
  so that the caller's own `c:call/3` reports why, or the call is made the
  long way; a runtime may also ignore the field. With `release` true,
  nothing of the instance is needed once the call returns (a binary result
  aside, until it is read): the runtime may release it at once and hand out
  `:released` instead of an instance (`c:cleanup/1` of it is `:ok`, and
  nothing else is called with it).
  """
  @callback instantiate(Munition.Module.t(), state()) ::
              {:ok, instance(), progress()} | failure()

  @doc """
  Calls export `function` with `params` (for a core module numbers only: the
  binary ABI is lowered before; for a component, WIT values as terms) and
  runs the first slice. Returns `{:ok, progress}`, or
  `{:error, {:function_not_found, name}}`, `{:error, {:bad_args, message}}`.
  """
  @callback call(instance(), function :: String.t(), params :: [number() | atom()]) ::
              {:ok, progress()} | failure()

  @doc "Runs the next slice of a guest that yielded or waited. Returns `{:ok, progress}`."
  @callback resume(instance()) :: {:ok, progress()} | failure()

  @doc """
  Reads `len` bytes at `ptr` of the exported memory named `"memory"` of an
  idle instance. `{:error, {:out_of_bounds, message}}` when outside it.
  """
  @callback read_memory(instance(), ptr :: non_neg_integer(), len :: non_neg_integer()) ::
              {:ok, binary()} | failure()

  @doc "Writes `bytes` at `ptr` of the exported `\"memory\"`, as `c:read_memory/3` reads."
  @callback write_memory(instance(), ptr :: non_neg_integer(), binary()) :: :ok | failure()

  @doc """
  Reads a failed store: `{:ok, map}` with `:reason`, `:trap`, `:message`,
  `:backtrace`, `:fuel_given`, `:fuel_consumed`, `:fuel_remaining`,
  `:execution_time_us`, `:memories` (bytes compressed as one zstd frame
  declaring its size, which is how dumps keep them, or none with
  `:minimal`), `:globals`, `:log` and
  `:output` (`nil`, or what a call with a WASI configuration wrote: see
  `t:progress/0`).
  """
  @callback capture(instance(), :full | :minimal) :: {:ok, map()} | failure()

  @doc """
  Releases the store now, cancelling a guest still mid-execution. Always
  `:ok`; for `:released` (see `c:instantiate/2`), there is nothing to do.
  """
  @callback cleanup(instance()) :: :ok

  ## Host calls

  @doc """
  Answers a guest's call of an Elixir host function: `reply` is `{:ok,
  value_or_values}` or `{:error, message}`, converted to `result_types`. A
  guest that stopped waiting (its deadline) ignores it. Always `:ok`.
  """
  @callback host_reply(host_call(), reply :: {:ok, term()} | {:error, term()}, result_types :: [atom()]) ::
              :ok

  @doc """
  Asks the waiting guest of `call` for `len` bytes at `ptr` of its memory.
  Returns `{:ok, tag}`: the answer arrives as `{:munition_memory, tag, {:ok,
  bytes} | {:error, :out_of_bounds}}`; or `{:error, {:invalid_state, _}}` when
  the guest's call has ended.
  """
  @callback host_read(host_call(), ptr :: non_neg_integer(), len :: non_neg_integer()) ::
              {:ok, term()} | failure()

  @doc "As `c:host_read/3`, writing `bytes`; the answer is `:ok` or `{:error, :out_of_bounds}`."
  @callback host_write(host_call(), ptr :: non_neg_integer(), binary()) :: {:ok, term()} | failure()

  ## Optional

  @doc """
  The compiled-module cache: `%{entries: n, capacity: n, compilations: n}`,
  `compilations` counting every module compiled since the VM started. A
  runtime that keeps compiled code on disk adds `:disk`, what it gave (see
  `Munition.Runtime.Wasmtime.cache_stats/0`); modules loaded from there are
  not compilations. For tests and operators.
  """
  @callback cache_stats() :: %{
              required(:entries) => non_neg_integer(),
              required(:capacity) => non_neg_integer(),
              required(:compilations) => non_neg_integer(),
              optional(:disk) => disk_stats(),
              optional(:components) => %{entries: non_neg_integer(), compilations: non_neg_integer()}
            }

  @doc """
  Sets the engine's capacity before the engine is first built, from
  `settings`: `Munition.Runtime.Config.engine!/0`'s map of
  `:max_instances`, `:max_memories_per_module` and
  `:max_concurrent_compiles` (`nil` for the engine's default). Munition's
  application calls it when it starts, for every runtime of
  `Munition.Runtime.Config.runtimes/0` that implements it, before anything
  uses an engine; a runtime without settings leaves it out.

  Returns `:ok`; `{:error, {:bad_config, message}}` for values the machine
  cannot hold (the application does not start); `{:error, {:too_late,
  message}}` once the engine exists (what it has stays: the application
  logs a warning when that differs from `settings`, a key the runtime's
  `c:info/0` reports); or `{:error, :nif_not_loaded}` when the engine's
  native code is missing (nothing to configure).
  """
  @callback configure(settings :: %{atom() => pos_integer() | nil}) ::
              :ok | {:error, {:bad_config | :too_late, String.t()} | :nif_not_loaded}

  @doc """
  The first half of a snapshot (`Munition.snapshot/4`): `bytes` (wasm or
  WAT) as wasm, and the module to run the initialisation in, which exports
  what the snapshot reads. Returns `{:ok, {wasm, instrumented}}`,
  `{:error, {:invalid_module, message}}`, or `{:error, {:not_capturable,
  message}}` for a module whose state cannot be captured. A runtime
  without snapshots leaves out this callback and `c:snapshot/3`.
  """
  @callback snapshot_instrument(bytes :: binary()) ::
              {:ok, {binary(), binary()}} | {:error, {:invalid_module | :not_capturable, String.t()}}

  @doc """
  The second half: the state of `instance`, an idle instance of the
  module `c:snapshot_instrument/1` made of `wasm`, written into a new
  module whose first section is a custom section `munition.snapshot`
  holding `provenance`. Returns `{:ok, bytes}` or `{:error, {kind,
  message}}` (`:not_capturable`, `:invalid_state`).
  """
  @callback snapshot(instance(), wasm :: binary(), provenance :: binary()) :: {:ok, binary()} | failure()

  @optional_callbacks cache_stats: 0, configure: 1, snapshot_instrument: 1, snapshot: 3
end

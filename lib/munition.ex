defmodule Munition do
  @external_resource "README.md"
  @moduledoc "README.md"
             |> File.read!()
             |> String.split("<!-- MDOC -->")
             |> Enum.fetch!(1)

  require Logger

  alias Munition.Host.{Capabilities, Functions}
  alias Munition.Instance.{Manager, State}
  alias Munition.Options

  @typedoc "Wasm bytes, WAT text, or a module from `compile/2`."
  @type wasm :: binary() | Munition.Module.t()

  @typedoc "Why a guest failed: see `Munition.Reason`."
  @type crash_reason :: Munition.Reason.crash()

  @typedoc "Why nothing ran, or could not run: see `Munition.Reason`."
  @type error_reason :: Munition.Reason.error()

  @doc """
  Runs `function` of `wasm` with `args` in a fresh instance, and throws the
  instance away.

  `args` are integers and floats, checked against the export's signature
  (`i32` takes `-2^31..2^32-1`, `i64` likewise for 64 bits, `f32`/`f64` take
  floats and `:nan`, `:infinity`, `:neg_infinity`), and binaries (see
  [Binary data](getting-started.md#binary-data): each binary is copied into
  guest memory through the guest's allocator and passed as pointer and
  length). For a component, `args` are WIT values as terms (strings,
  lists, maps for records, ...), checked against the export's WIT types:
  see [Components](components.md).

  ## Options

    * `:fuel` - the call's fuel budget (start function included): a positive
      integer, a profile (`:strict`, `:default`, `:generous`, or one configured),
      `:auto` or `:adaptive` (see `Munition.Fuel.Policy`). Defaults to
      `10_000_000`.
    * `:timeout` - milliseconds the whole call may take, compiling the module
      (when `wasm` is not a compiled `Munition.Module`) and the start function
      included: the guest gets what compiling left. Defaults to `5_000`, at
      most `86_400_000` (a day). The guest is stopped by the engine at its
      deadline. Compiling past the deadline is `{:error, {:timeout, message}}`:
      nothing ran, so there is no dump; the compilation goes on in the
      background and lands in the module cache, so a retry finds it compiled.
    * `:compile_timeout` - milliseconds compiling alone may take, within
      `:timeout` (as for `compile/2`). Defaults to none: compiling may take
      the whole `:timeout`.
    * `:limits` - compile limits over the configured ones, e.g.
      `limits: [functions: 50_000]` (see "Compile limits" in
      `Munition.Runtime.Config`). A module over one is
      `{:error, {:module_limit, message}}`.
    * `:max_memory` - bytes of linear memory the guest may have, all its
      memories together (a module may have several: see
      `Munition.Runtime.Config`). Defaults to 64 MiB, at most 4 GiB. Growing
      past it is `{:crash, :memory_limit, dump}`; a module whose initial
      memories are already over it is `{:error, {:memory_limit, message}}`.
    * `:capabilities` - capabilities granted to this call (see
      `Munition.Host.Capabilities`). Defaults to `[]`: any import is refused.
    * `:host_functions` - Elixir host functions for this call (see
      `Munition.Host.Functions`). Defaults to `[]`.
    * `:forensics` - `:full` (default), `:minimal` (no memory bytes) or `false`
      (no dump: crashes return `{:crash, reason, nil}`; a minimal capture is
      still taken for the meter's figures).
    * `:result` - `:values` (default) or `:binary`: read the function's
      `(ptr, len)` result back as a binary.
    * `:alloc` - the guest export that allocates memory for binary arguments.
      Defaults to `"alloc"`.
    * `:dump_dir` - a directory where the dump of every crash is written (see
      `Munition.Forensics.Dump.write_to_dir/2`), for an audit trail. Defaults to
      `config :munition, :dump_dir` (unset: nothing is written). A dump that
      cannot be written is logged, and the call's result is unchanged.
    * `:runtime` - a `Munition.Runtime`. Defaults to `config :munition, :runtime`,
      or `Munition.Runtime.Wasmtime`.
    * `:wasi` - the WASI configuration of the call: `:args`, `:env`, `:stdin`,
      `:preopens`, `:stdout_limit`, `:stderr_limit`, `:clock`, and for a
      component's outgoing HTTP `:http_allow` and `:http_response_limit`
      (see `Munition.Host.WASI`). WASI functions themselves are granted by
      capabilities (`:wasi`, `:wasi_fs`, `:wasi_http`, ...).
    * `:node` - run the call on that node of the cluster, over Erlang
      distribution (see `Munition.Cluster`): same results, the module sent
      by content hash. Defaults to this node.
    * `:host_functions_at` - with `:node`: `:caller` (default) runs Elixir
      host functions on this node, `:node` takes `:host_functions` as names
      registered on the node that runs the guest.

  A module exporting `_initialize` (a WASI reactor) has it called before
  `function`, in the same instance.

  ## Returns

    * `{:ok, result, metadata}` - `result` is the value of a one-result function,
      `nil` for none, a list for several. `metadata` holds `:fuel_consumed`,
      `:fuel_remaining`, `:execution_time_us`, `:module_hash`, `:capabilities`,
      `:inert_links` (imports linked without their capability because they
      reach nothing, `[]` for most calls: see "Inert links" in
      `Munition.Host.Capabilities`) and `:log`; a call with a WASI
      configuration also `:stdout`, `:stderr`,
      `:stdout_truncated` and `:stderr_truncated`. A guest that called WASI's
      `proc_exit` returns `{:ok, nil, metadata}` with `metadata.exit_code`.
    * `{:crash, reason, %Munition.Forensics.Dump{}}` - the guest failed;
      `reason` is one of `:fuel_exhausted`, `:trap`, `:timeout`,
      `:memory_limit`, `:host_error`.
    * `{:error, reason}` - nothing ran or it could not run; see `t:error_reason/0`.
      A call on another node adds `{:nodedown, node}` (nothing ran),
      `{:node_down_during_call, node}` and `{:no_answer, node}` (it may have
      run; never retried).

  ## Examples

      iex> wat = ~s{(module (func (export "add") (param i32 i32) (result i32)
      ...>   local.get 0 local.get 1 i32.add))}
      iex> {:ok, 5, %{fuel_consumed: fuel}} = Munition.fire(wat, "add", [2, 3])
      iex> fuel > 0
      true

      iex> {:crash, :trap, dump} = Munition.fire(~s{(module (func (export "f") unreachable))}, "f", [])
      iex> dump.trap
      :unreachable
  """
  @spec fire(wasm(), String.t(), list(), keyword()) ::
          {:ok, term(), map()}
          | {:crash, crash_reason(), Munition.Forensics.Dump.t() | nil}
          | {:error, error_reason()}
  def fire(wasm, function, args, opts \\ []) do
    function = Options.function!(function)
    args = Options.args!(args)

    if Options.remote?(opts),
      do: Munition.Cluster.fire(wasm, function, args, opts),
      else: fire_here(wasm, function, args, opts)
  end

  defp fire_here(wasm, function, args, opts) do
    with {:ok, module, options, state} <- prepared(wasm, opts) do
      fuel = Munition.Fuel.Policy.resolve!(options.fuel, module, function)
      execute(%{state | module: module, function: function, args: args, fuel: fuel}, options.dump_dir)
    end
  end

  # The checked options of a call on `wasm` and its State but for the
  # function, arguments and fuel. A caller usually fires the same compiled
  # module with the same options again: its last preparation is kept in its
  # process dictionary and reused when the module (its content hash, kind
  # and runtime), the options and the configuration a preparation reads
  # (`Munition.Runtime.Config.preparation_env/0`) are all equal. Not kept:
  # calls given bytes (compiling them bounds the call's timeout), host
  # functions registered by name (registering again changes them) and
  # preopened directories (checked to exist on every call).
  # Checking options, linking imports and building the State was 8-15 µs
  # of a 55 µs call on a QuickJS snapshot.
  defp prepared(wasm, opts) do
    key =
      reusable?(wasm, opts) &&
        {wasm.hash, wasm.kind, wasm.runtime, opts, Munition.Runtime.Config.preparation_env()}

    case key && Process.get(:munition_last_prepared) do
      {^key, options, state} ->
        {:ok, wasm, options, state}

      _none ->
        with {:ok, _module, options, state} = prepared <- prepare_now(wasm, opts) do
          if key, do: Process.put(:munition_last_prepared, {key, options, state})
          prepared
        end
    end
  end

  defp reusable?(%Munition.Module{hash: hash}, opts) when is_binary(hash) and is_list(opts) do
    host_functions = Keyword.get(opts, :host_functions, [])

    is_list(host_functions) and not Enum.any?(host_functions, &is_atom/1) and
      not Options.checked_every_call?(opts)
  end

  defp reusable?(_wasm, _opts), do: false

  defp prepare_now(wasm, opts) do
    options = Options.fire!(opts)

    with {:ok, module, options} <- prepare(wasm, options),
         {:ok, links} <-
           Capabilities.resolve(module, options.capabilities, options.host_functions, options.runtime) do
      {:ok, module, options, Options.state(options, module, links, "", [], 1)}
    end
  end

  # The module of a call, compiled under the call's limits and within its
  # timeout; the execution gets what is left of the timeout.
  defp prepare(%Munition.Module{} = module, options), do: {:ok, module, options}

  defp prepare(bytes, options) when is_binary(bytes) do
    with {:ok, module, options} <- compile_for_call(bytes, options),
         do: {:ok, Munition.Snapshot.mark(module, bytes), options}
  end

  defp prepare(other, _options), do: to_module(other, nil, [])

  @doc false
  # Compiles the bytes a call was given under its limits, within its
  # timeout (and its `:compile_timeout`): the options come back with what is
  # left of the timeout for the execution. Also `snapshot/4`'s.
  @spec compile_for_call(binary(), map()) :: {:ok, Munition.Module.t(), map()} | {:error, error_reason()}
  def compile_for_call(bytes, options) do
    started = System.monotonic_time(:millisecond)

    with {:ok, module} <-
           options.runtime.compile(bytes, limits: options.limits, timeout: Options.compile_bound(options)) do
      case options.timeout - (System.monotonic_time(:millisecond) - started) do
        left when left > 0 ->
          {:ok, module, %{options | timeout: left}}

        _none ->
          {:error,
           {:timeout, "compiling the module took the whole timeout of #{options.timeout} ms: nothing ran"}}
      end
    end
  end

  @doc """
  Runs a WASI command: the `_start` export of `wasm` (for a component, the
  `run` function of its exported `wasi:cli/run` interface, whose `err` is
  exit code 1), in a fresh instance,
  with the `:wasi` option's arguments, environment and stdin (see
  `Munition.Host.WASI`), bounded and captured as `fire/4`.

  WASI functions are granted by `:capabilities` as for `fire/4`:
  `capabilities: [:wasi]` runs a program that prints, reads stdin, its
  arguments and environment, the clock and random bytes, sleeps and exits,
  even when it imports file functions it does not grant (wasi-libc's
  `fopen`, `remove`, ...: linked inert, they find no directory and answer
  `EBADF`); add `:wasi_fs` (and `:wasi_fs_write`) for files in `:preopens`.

  ## Options

  Every option of `fire/4` (`:fuel`, `:timeout`, `:max_memory`,
  `:capabilities`, `:host_functions`, `:forensics`, `:dump_dir`, `:runtime`,
  `:wasi`, ...). `:result` and `:alloc` do not apply to `_start` and are
  best left out.

  ## Returns

    * `{:ok, exit_code, metadata}` - `exit_code` is `0` when `_start` returned
      or called `proc_exit(0)`, `n` when it called `proc_exit(n)`: a result to
      match, not a crash. `metadata` is `fire/4`'s, with `:stdout`, `:stderr`,
      `:stdout_truncated`, `:stderr_truncated` and `:exit_code`.
    * `{:crash, reason, dump}` or `{:error, reason}` - as `fire/4`; the dump
      has what the guest wrote to stdout and stderr until it crashed. A
      module without `_start` is `{:error, {:function_not_found, "_start"}}`.

  ## Examples

      iex> wat = ~s{(module
      ...>   (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
      ...>   (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
      ...>   (memory (export "memory") 1)
      ...>   (data (i32.const 16) "hi\\\\n")
      ...>   (func (export "_start")
      ...>     (i32.store (i32.const 0) (i32.const 16)) (i32.store (i32.const 4) (i32.const 3))
      ...>     (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
      ...>     (call $exit (i32.const 3))))}
      iex> {:ok, 3, %{stdout: "hi\\n", stderr: ""}} = Munition.run(wat, capabilities: [:wasi])
      iex> {:error, {:capability_denied, [%{name: "fd_write", needs: :wasi_stdio}, %{name: "proc_exit", needs: :wasi_exit}]}} =
      ...>   Munition.run(wat)
      iex> :ok
      :ok
  """
  @spec run(wasm(), keyword()) ::
          {:ok, non_neg_integer(), map()}
          | {:crash, crash_reason(), Munition.Forensics.Dump.t() | nil}
          | {:error, error_reason()}
  def run(wasm, opts \\ []) do
    command = if component?(wasm), do: "wasi:cli/run#run", else: "_start"

    case fire(wasm, command, [], opts) do
      {:ok, result, meta} ->
        # A component's `run` returns `result`: its error is exit code 1,
        # as Wasmtime's own command runner has it.
        code = Map.get(meta, :exit_code, if(result == :error, do: 1, else: 0))
        {:ok, code, Map.put(meta, :exit_code, code)}

      other ->
        other
    end
  end

  defp component?(%Munition.Module{kind: kind}), do: kind == :component
  defp component?(bytes) when is_binary(bytes), do: Munition.Module.component_bytes?(bytes)
  defp component?(_other), do: false

  @doc """
  Runs `function` of the module of the `Munition.Pool` named `name`, in a
  fresh instance, as `fire/4` would: same results, forensics, metering,
  deadline and isolation. The pool did the preparation once (compiling,
  capabilities and links, fuel policy, option checks); each call still gets a
  brand-new store and instance.

  ## Options

  The per-call options of `fire/4` (`:fuel`, `:timeout`, `:max_memory`,
  `:forensics`, `:result`, `:alloc`, `:dump_dir`, `:wasi`), overriding the
  pool's defaults (the keys of `:wasi` one by one). Capabilities, host functions and the runtime are fixed when the
  pool starts; passing them raises `ArgumentError`. `:node` runs the call on
  the pool of that name on another node, or, with `node: :any`, places it
  among the nodes where a pool of that name runs (see `Munition.Cluster`).

  ## Returns

  What `fire/4` returns, or `{:error, {:overloaded, _}}` when every place of
  the pool stayed busy until the call's deadline, or
  `{:error, {:pool_unavailable, _}}` when no pool `name` is running (as
  `Munition.Pool.stats/1` answers then). A `name` that is not an atom raises
  `ArgumentError`.

  ## Examples

      iex> {:ok, _pid} = Munition.Pool.start_link(name: :doc_adder, wasm: ~s{(module (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))})
      iex> {:ok, 5, _meta} = Munition.fire_pooled(:doc_adder, "add", [2, 3])
      iex> GenServer.stop(:doc_adder)
      iex> Munition.fire_pooled(:doc_adder, "add", [2, 3])
      {:error, {:pool_unavailable, "no pool named :doc_adder is running"}}
  """
  @spec fire_pooled(atom(), String.t(), list(), keyword()) ::
          {:ok, term(), map()}
          | {:crash, crash_reason(), Munition.Forensics.Dump.t() | nil}
          | {:error, error_reason()}
  def fire_pooled(name, function, args, opts \\ []) do
    name = Munition.Pool.name!(name)
    function = Options.function!(function)
    args = Options.args!(args)

    case not Options.remote?(opts) and Munition.Pool.fetch(name) do
      false -> Munition.Cluster.fire_pooled(name, function, args, opts)
      nil -> Munition.Pool.unavailable(name)
      pool -> Munition.Pool.fire(pool, function, args, opts)
    end
  end

  @doc false
  # Runs a call's State and reports its outcome: shared with `fire_pooled/4`.
  @spec execute(State.t(), Path.t() | nil) ::
          {:ok, term(), map()}
          | {:crash, crash_reason(), Munition.Forensics.Dump.t() | nil}
          | {:error, error_reason()}
  def execute(%State{} = state, dump_dir) do
    :ok = Options.call_args!(state.module, state.args)

    state
    |> Manager.execute()
    |> tap(&report(&1, state, dump_dir))
  end

  # Usage is recorded by the manager; what is left is for the operator.
  defp report({:ok, _result, meta}, state, _dump_dir), do: forward_log(meta.log, state)

  defp report({:crash, _reason, nil}, _state, _dump_dir), do: :ok

  defp report({:crash, _reason, dump}, state, dump_dir) do
    forward_log(dump.log, state)

    if dump_dir do
      case Munition.Forensics.Dump.write_to_dir(dump, dump_dir) do
        {:ok, _path} ->
          :ok

        {:error, reason} ->
          Logger.warning("Munition could not write a crash dump to #{dump_dir}: #{inspect(reason)}")
      end
    end
  end

  defp report({:error, _reason}, _state, _dump_dir), do: :ok

  defp forward_log([], _state), do: :ok

  defp forward_log(lines, state) do
    if Munition.Runtime.Config.forward_guest_logs?() do
      prefix = "guest #{String.slice(state.module.hash, 0, 12)} #{state.function}: "
      Enum.each(lines, fn {level, line} -> Logger.log(logger_level(level), [prefix, line]) end)
    end
  end

  defp logger_level(0), do: :debug
  defp logger_level(1), do: :info
  defp logger_level(2), do: :warning
  defp logger_level(_), do: :error

  @doc """
  Runs `function` of `wasm` with `args` to initialise it, then captures the
  instance's state (every memory, every mutable global) into a new module:
  a snapshot, whose every call starts from that state in a fresh instance,
  without initialising again. The call is bounded and captured as
  `fire/4`'s (fuel, deadline, capabilities, host functions, WASI, dumps);
  see the [Snapshots](snapshots.md) guide.

  `wasm` is bytes or WAT text (a `%Munition.Module{}` from `compile/2`
  keeps no bytes: give its bytes), or a snapshot, to initialise further.
  Core modules on `Munition.Runtime.Wasmtime`, through `wasmtime-wizer`.

  The snapshot keeps every export, `function` too; a reactor's
  `_initialize`, which runs before `function` as in `fire/4`, is left out
  of it (it ran), so calls on the snapshot never run it again. What the
  snapshot is made of, and its bytes, are in its `:snapshot` field (see
  `Munition.Module`): store them, and `compile/2` or `fire/4` them later.

  What the initialisation reads is in every call on the snapshot: so a
  read of the clock, of randomness (every call would share one seed), of
  the arguments or the environment (libc keeps them: a later call's
  `wasi: [env: ...]` would go unseen) fails the snapshot, with
  `{:error, {:not_capturable, message}}` naming it, unless `:bake` allows
  it. Only reads that happen count: a module that imports `random_get`
  and does not call it during the initialisation is snapshotted. A
  component (any export, WIT arguments) is checked by what it imports
  instead: its WASI 0.2 reads are served inside the engine, unseen (see
  "Components" in the Snapshots guide).

  ## Options

  Every option of `fire/4` but `:node`, and:

    * `:bake` - what the initialisation may read and bake into the
      snapshot: a list of `:clock`, `:random`, `:env` and `:args`. Defaults
      to `[]`. With `wasi: [clock: :deterministic]` (and nothing random),
      the same initialisation makes the same snapshot, byte for byte, and
      so the same hash.

  `:timeout` bounds compiling the module and the initialisation, as for
  `fire/4`; compiling the snapshot is bounded as `compile/2` is
  (`:compile_timeout`).

  ## Returns

    * `{:ok, snapshot, metadata}` - `snapshot` is a `%Munition.Module{}`,
      compiled and cached like any; `metadata` is `fire/4`'s for the
      initialisation, with its return value under `:result` (`:module_hash`
      is the initialised module's, the snapshot's is `snapshot.hash`).
    * `{:crash, reason, dump}` - the initialisation failed, as a `fire/4`
      would: nothing was captured.
    * `{:error, reason}` - as `fire/4`, and `{:not_capturable, message}`
      for what a snapshot cannot hold: a module importing a
      memory, a table or a global, or changing a table
      (`table.set`, `table.grow`...), preopened directories (their
      descriptors live outside the instance), an initialisation that
      called `proc_exit`, or read what `:bake` does not allow; a
      component importing WASI 0.2 reads `:bake` does not name, or whose
      initialisation left WASI 0.2 resources open. A runtime
      without snapshots is `{:error, {:unsupported, message}}`.

  ## Examples

      iex> wat = ~s{(module (global $n (mut i32) (i32.const 0))
      ...>   (func (export "init") (param i32) (global.set $n (local.get 0)))
      ...>   (func (export "next") (result i32)
      ...>     (global.set $n (i32.add (global.get $n) (i32.const 1))) (global.get $n)))}
      iex> {:ok, snapshot, %{fuel_consumed: _}} = Munition.snapshot(wat, "init", [41])
      iex> {:ok, 42, _meta} = Munition.fire(snapshot, "next", [])
      iex> {:ok, 42, _meta} = Munition.fire(snapshot, "next", [])
      iex> snapshot.snapshot.function
      "init"
  """
  @spec snapshot(wasm(), String.t(), list(), keyword()) ::
          {:ok, Munition.Module.t(), map()}
          | {:crash, crash_reason(), Munition.Forensics.Dump.t() | nil}
          | {:error, error_reason()}
  def snapshot(wasm, function, args, opts \\ []) do
    Munition.Snapshot.run(wasm, Options.function!(function), Options.args!(args), opts)
  end

  @doc """
  Runs the call of a crash `dump` again on module `wasm` (bytes, WAT or the
  `Munition.Module`), answering its host calls from the log the call
  recorded: nothing outside the guest runs again. See `Munition.Replay` for
  what is recorded and what a replay checks.

  Returns `{:crash, reason, dump}`, the replayed crash, with the same
  reason, trap, fuel, globals, memory and output as `dump`;
  `{:error, {:replay_diverged, %{at: at, why: why}}}` when the replay did not
  follow the log (another module, another host call or fuel count, another
  end); `{:error, {:replay_unavailable, why}}` when the dump has no log;
  `{:error, {:timeout, why}}` when the replay did not finish within its own
  `:timeout`; or the `{:error, reason}` of compiling `wasm`.

  ## Options

    * `:until` - stop once the guest has consumed this much fuel, and
      answer `{:stopped, dump}`, the state there, to look at memory before
      the crash (and bisect to the step that went wrong). The replay is
      given that much fuel: the engine stops the guest at its first check of
      its fuel past it (Wasmtime checks on entering a function and at a
      loop's head; straight-line code between two checks runs on, and the
      dump then says the count it was given, `dump.fuel_consumed`). A count
      at or past the crash's, or one with no check before the crash,
      replays to the crash. The stopped state is no crash to replay again:
      its `replay` says so.
    * `:timeout` - milliseconds the replay may run (default 60 000): a replay
      is bounded by the recorded call's fuel, this bounds its time.

  ## Examples

      iex> wat = ~s{(module (import "munition" "get_random" (func $r (result i64)))
      ...>   (global $g (export "g") (mut i64) (i64.const 0))
      ...>   (func (export "f") (global.set $g (call $r)) unreachable))}
      iex> {:crash, :trap, dump} = Munition.fire(wat, "f", [], capabilities: [:random])
      iex> {:crash, :trap, replayed} = Munition.replay(dump, wat)
      iex> replayed.globals == dump.globals
      true
  """
  @spec replay(Munition.Forensics.Dump.t(), wasm(), keyword()) ::
          {:crash, crash_reason(), Munition.Forensics.Dump.t()}
          | {:stopped, Munition.Forensics.Dump.t()}
          | {:error,
             error_reason()
             | {:replay_unavailable, String.t()}
             | {:replay_diverged, Munition.Replay.divergence()}
             | {:timeout, String.t()}}
  def replay(dump, wasm, opts \\ []), do: Munition.Replay.replay(dump, wasm, opts)

  @doc """
  Compiles `wasm` (bytes or WAT text) without running it; a
  `%Munition.Module{}` is taken too, as `fire/4` takes one, and returned as
  it is (its limits are not checked again).

  Compiled modules are cached by content hash, so compiling the same bytes again
  is cheap; keeping the returned module and passing it to `fire/4` also skips
  hashing the bytes.

  Compiling runs on Munition's own threads, never on a scheduler; this
  process waits for it (see "Where compiling runs" in
  `Munition.Runtime.Config`).

  ## Options

    * `:limits` - compile limits over the configured ones (see "Compile
      limits" in `Munition.Runtime.Config`).
    * `:compile_timeout` - milliseconds to wait for the compilation. Defaults
      to `config :munition, :compile_timeout`, or `30_000`. Past it, the
      answer is `{:error, {:timeout, message}}` and the compilation goes on in
      the background, into the module cache.
    * `:timeout` - milliseconds the whole call may take, as for `fire/4`:
      here the call is the compilation, so it bounds it too (the shorter of
      the two applies). Defaults to none: `:compile_timeout` alone bounds it.
    * `:runtime` - a `Munition.Runtime`. Defaults to `config :munition, :runtime`,
      or `Munition.Runtime.Wasmtime`. A `%Munition.Module{}` compiled by
      another engine raises `ArgumentError`, as in `fire/4`: compile its
      bytes for this one instead.

  ## Examples

      iex> {:ok, module} = Munition.compile(~s{(module (func (export "f")))})
      iex> Enum.map(module.exports, & &1.name)
      ["f"]
      iex> Munition.compile(module) == {:ok, module}
      true
      iex> {:error, {:invalid_module, _message}} = Munition.compile(<<0, 1, 2>>)
      iex> {:error, {:module_limit, message}} = Munition.compile(~s{(module (func) (func))}, limits: [functions: 1])
      iex> message
      "functions: the module defines 2 functions, over the limit of 1 (raise it with limits: [functions: n])"
  """
  @spec compile(wasm(), keyword()) ::
          {:ok, Munition.Module.t()}
          | {:error, {:invalid_module | :unsupported | :module_limit | :timeout, String.t()}}
  def compile(wasm, opts \\ []) do
    opts = Keyword.validate!(opts, runtime: nil, limits: [], compile_timeout: nil, timeout: nil)
    runtime = Options.runtime!(opts[:runtime])
    to_module(wasm, runtime, Options.compile!(opts))
  end

  @doc """
  Checks `wasm` without running anything: that it compiles and, when
  `:capabilities` is given, that every import would be granted.

  ## Options

    * `:capabilities` - when given, imports not covered are
      `{:error, {:capability_denied, [...]}}`, as `fire/4` would report them.
      Imports `fire/4` would link inert are covered (see "Inert links" in
      `Munition.Host.Capabilities`; `mix munition.validate` lists them).
    * `:host_functions` - host functions whose imports count as available.
    * `:limits`, `:compile_timeout`, `:timeout` - as for `compile/2`.
    * `:runtime` - a `Munition.Runtime`.

  ## Examples

      iex> Munition.validate(~s{(module (import "munition" "get_time_ms" (func (result i64))))}, capabilities: [])
      {:error, {:capability_denied, [%{module: "munition", name: "get_time_ms", needs: :time}]}}
      iex> Munition.validate(~s{(module (import "munition" "get_time_ms" (func (result i64))))}, capabilities: [:time])
      :ok
  """
  @spec validate(wasm(), keyword()) :: :ok | {:error, error_reason()}
  def validate(wasm, opts \\ []) do
    opts =
      Keyword.validate!(opts, [
        :capabilities,
        host_functions: [],
        runtime: nil,
        limits: [],
        compile_timeout: nil,
        timeout: nil
      ])

    runtime = Options.runtime!(opts[:runtime])
    host_functions = Functions.normalize!(opts[:host_functions])

    with {:ok, module} <- to_module(wasm, runtime, Options.compile!(opts)) do
      case opts[:capabilities] do
        nil ->
          :ok

        capabilities ->
          granted = Capabilities.expand!(capabilities, host_functions, runtime)

          case Capabilities.resolve(module, granted, host_functions, runtime) do
            {:ok, _links} -> :ok
            error -> error
          end
      end
    end
  end

  defp to_module(%Munition.Module{} = module, runtime, _opts),
    do: {:ok, Munition.Module.runtime!(module, runtime)}

  defp to_module(bytes, runtime, opts) when is_binary(bytes) do
    with {:ok, module} <- runtime.compile(bytes, opts), do: {:ok, Munition.Snapshot.mark(module, bytes)}
  end

  defp to_module(other, _runtime, _opts) do
    raise ArgumentError, "wasm must be wasm bytes, WAT text or a %Munition.Module{}, got: #{inspect(other)}"
  end
end

defmodule Munition.Pool do
  @moduledoc """
  A module prepared once for many calls: `Munition.fire_pooled/4` runs it with
  the isolation of `Munition.fire/4` at a fraction of the cost.

      children = [
        {Munition.Pool, name: :resizer, wasm: File.read!("resize.wasm"), size: 16,
         capabilities: [:log], fuel: :auto, timeout: 200}
      ]

      Munition.fire_pooled(:resizer, "resize", [image], result: :binary)

  `start_link/1` compiles the module once, resolves its capabilities and host
  functions into links once, resolves the fuel policy once (`:adaptive`
  follows the history per call; its settings, from the application
  environment, and its fallback are read once too), and checks the per-call defaults
  once. A caller that overrides some of them in its calls has its
  overrides checked once as well: its last ones are kept (in its process,
  for the version the pool serves) and reused while it gives the same
  again. What is pooled is that preparation, never an instance: every pooled
  call still gets a brand-new store and instance out of the engine's pooling
  allocator, so nothing is reset between calls because nothing is reused
  (the "memory reset, fuel reset, state clearing" of instance pools does not
  arise). Memory and globals one call writes are invisible to the next.

  ## Options

    * `:name` - the pool's name, an atom (required). `fire_pooled/4` finds it by it.
    * `:wasm` - bytes, WAT text or a `%Munition.Module{}` (required). A
      snapshot's stored bytes (`Munition.snapshot/4`) are known as one, as
      `Munition.fire/4` knows them: dumps of the pool's calls name the
      snapshot, as with the snapshot's `%Munition.Module{}`.
    * `:size` - how many of the pool's calls run at once; more wait in line,
      in order, until their deadline. Defaults to `100`.
    * `:capabilities`, `:host_functions`, `:runtime`, `:limits`,
      `:compile_timeout` - as for `Munition.fire/4`, fixed for the pool's
      lifetime (`:limits` and `:compile_timeout` bound the compile the pool
      does when it starts; `:compile_timeout` defaults to
      `config :munition, :compile_timeout`, or `30_000`).
    * `:fuel`, `:timeout`, `:max_memory`, `:forensics`, `:result`, `:alloc`,
      `:dump_dir`, `:wasi` - defaults for the pool's calls, as for
      `Munition.fire/4`; each call may override them (a call's `:wasi` keys
      override the pool's one by one).

  ## What a pooled call returns

  Exactly what `Munition.fire/4` returns, with the same forensics and
  metering, plus two errors of the pool's own:

    * `{:error, {:overloaded, message}}` - every one of the pool's `:size`
      places stayed busy until the call's deadline (nothing ran);
    * `{:error, {:pool_unavailable, message}}` - no pool of that name is
      running (never started, stopped, or being restarted by its supervisor);
      `stats/1` answers the same then.

  A name that is not an atom is the caller's mistake: `ArgumentError`, from
  `Munition.fire_pooled/4` and `stats/1` alike.

  A pool of a component (`kind: :component`, see `Munition.Module`) is the
  same: its calls take and return WIT values, its host functions are given
  as `{interface, name, :wit, capability, fun}`, and `result: :binary` and
  `:alloc`, which are the binary ABI of core modules, do not apply (a call
  with `result: :binary` is `{:error, {:bad_result, _}}`).

  ## Switching versions

  `swap/3` switches a running pool to another version of its plugin without
  a gap:

      {:ok, %Munition.Module{}} = Munition.Pool.swap(:resizer, File.read!("resize-v2.wasm"))

    * **Compiled ahead.** The new version is compiled (under the pool's
      `:limits`, within the compile timeout, in the process that calls
      `swap/3`), linked against the pool's capabilities and host functions,
      and its fuel policy resolved, before anything changes. Whatever fails
      there is returned, and the pool goes on serving the version it had.
    * **Switched atomically.** The finished version is published in one
      step, where every pooled call looks for its pool: a call gets the
      old version or the new one, whole. Swaps take effect one at a time,
      in the order their compiling ends.
    * **Calls in flight finish on the old version.** A call keeps the
      version it started on to its end (its module lives as long as a call
      runs it). A call made after `swap/3` returns gets the new one; so
      does a call made before that waited in line for a place and got it
      after: a call runs the version serving when it gets its place, so
      none that waited starts the old version once the switch is made.
    * **No call waits for it or fails because of it.** Places, the line,
      the counters and the pool's process are the pool's, not the
      version's: nothing is drained, refused or restarted, and the pool's
      process, which serves the line, takes only the finished version.

  The new version keeps the pool's name, size, places, line and stats, its
  capabilities, host functions, runtime, limits and per-call defaults. It
  may be a core module where the old one was a component, or the reverse,
  if the pool's host functions suit its imports. Its fuel is its own:
  `:auto` is worked out from its code, and the meter's history (so
  `:adaptive`) is kept by module hash, so a new version starts its own.

  Switching is meant for deploying a version, not for every request: the
  pool is published with `:persistent_term`, whose update makes the VM
  scan every process for the old term. It is this node's pool that
  switches: in a cluster, switch each member (for example
  `:erpc.multicall(nodes, Munition.Pool, :swap, [name, bytes])`). A pool
  restarted by its supervisor starts again from its child spec's `:wasm`.

  ## Stopping

  A pool that stops answers its waiting callers `{:error, {:pool_unavailable,
  _}}` at once. Calls already running need nothing from the pool's process
  (they run in their callers' processes): they end on
  their own, within their own bounds, and are answered as usual. A caller
  killed mid-call gives its place back, wherever it was killed: a place is
  a value in its caller's process (a native resource), given back when the
  call ends or, should it never end, when the caller's heap is freed.
  """

  use GenServer

  alias Munition.Instance.Waiters
  alias Munition.Native
  alias Munition.Options

  # `module`, `links`, `options` and `state` are the version serving now
  # (`swap/3` replaces them together), `version` a reference that names it
  # (a caller's reused preparation is of one version: see `prepared/2`);
  # `defaults` are the options the pool was started with, its fuel spec
  # unresolved, from which each version is prepared.
  @enforce_keys [
    :name,
    :pid,
    :version,
    :module,
    :links,
    :options,
    :defaults,
    :state,
    :size,
    :counters,
    :places
  ]
  defstruct @enforce_keys

  @type t :: %__MODULE__{}

  # Indexes in the pool's :atomics counters. Waiters.count/1 reads index 1.
  # The places taken (stats' :running) are counted natively, with the places.
  @waiting 1
  @completed 2
  @crashed 3
  @failed 4

  @retry_ms 5

  # How soon a pool whose :pg scope went looks for it again, and how seldom
  # at most.
  @rejoin_ms 10
  @rejoin_max_ms 1_000

  @doc false
  def child_spec(opts) do
    %{id: {__MODULE__, Keyword.get(opts, :name)}, start: {__MODULE__, :start_link, [opts]}}
  end

  @doc """
  Starts a pool (see the moduledoc for the options). Returns `{:ok, pid}`, or
  `{:error, reason}` with the reason `Munition.fire/4` would give for the
  module (`{:invalid_module, _}`, `{:capability_denied, _}`, ...). A caller's
  mistake in the options raises `ArgumentError`.
  """
  @spec start_link(keyword()) :: GenServer.on_start()
  def start_link(opts) do
    {pool_opts, fire_opts} = Keyword.split(opts, [:name, :wasm, :size])
    pool_opts = Keyword.validate!(pool_opts, [:name, :wasm, size: 100])

    name = name!(pool_opts[:name])

    size =
      case pool_opts[:size] do
        size when is_integer(size) and size > 0 -> size
        other -> raise ArgumentError, "a pool's size must be a positive integer, got: #{inspect(other)}"
      end

    wasm = pool_opts[:wasm] || raise ArgumentError, "a pool needs :wasm, the module to run"
    options = Options.fire!(fire_opts)
    # Another engine's module is the caller's mistake: said here, not as a
    # crash of the pool's process.
    _checked = if is_struct(wasm, Munition.Module), do: Munition.Module.runtime!(wasm, options.runtime)
    GenServer.start_link(__MODULE__, {name, wasm, size, options}, name: name)
  end

  @doc """
  What the pool `name` is doing: `{:ok, %{size: n, running: n, waiting: n,
  completed: n, crashed: n, failed: n}}`, where `completed`, `crashed` and
  `failed` count the calls that ended in `{:ok, ...}`, `{:crash, ...}` and
  `{:error, ...}`.

  `{:error, {:pool_unavailable, message}}` when no pool `name` is running,
  as `Munition.fire_pooled/4` answers then: not a mistake of the caller's,
  since a pool may be stopped or being restarted by its supervisor. A name
  that is not an atom is one, and raises `ArgumentError`.

  ## Examples

      iex> {:ok, _pid} = Munition.Pool.start_link(name: :doc_stats, wasm: ~s{(module (func (export "f")))}, size: 4)
      iex> {:ok, nil, _meta} = Munition.fire_pooled(:doc_stats, "f", [])
      iex> Munition.Pool.stats(:doc_stats)
      {:ok, %{size: 4, running: 0, waiting: 0, completed: 1, crashed: 0, failed: 0}}
      iex> GenServer.stop(:doc_stats)
      iex> Munition.Pool.stats(:doc_stats)
      {:error, {:pool_unavailable, "no pool named :doc_stats is running"}}
  """
  @spec stats(atom()) ::
          {:ok,
           %{
             size: pos_integer(),
             running: non_neg_integer(),
             waiting: non_neg_integer(),
             completed: non_neg_integer(),
             crashed: non_neg_integer(),
             failed: non_neg_integer()
           }}
          | {:error, {:pool_unavailable, String.t()}}
  def stats(name) do
    case fetch(name!(name)) do
      nil ->
        unavailable(name)

      pool ->
        c = pool.counters

        {:ok,
         %{
           size: pool.size,
           running: Native.pool_places_in_use(pool.places),
           waiting: :atomics.get(c, @waiting),
           completed: :atomics.get(c, @completed),
           crashed: :atomics.get(c, @crashed),
           failed: :atomics.get(c, @failed)
         }}
    end
  end

  @doc """
  Switches the pool `name` to another version of its plugin, `wasm` (bytes,
  WAT text or a `%Munition.Module{}`, a core module or a component), without
  a gap: see "Switching versions" in the moduledoc. Returns
  `{:ok, module}` once the switch is made, `module` being the
  `%Munition.Module{}` now serving; or an error, and the pool goes on
  serving the version it had:

    * what compiling gives (`{:invalid_module, _}`, `{:module_limit, _}`
      under the pool's `:limits`, `{:timeout, _}` past the compile timeout,
      `{:unsupported, _}`);
    * what the pool's capabilities and host functions make of the new
      version's imports (`{:capability_denied, _}`,
      `{:instantiation_failed, _}`), as `start_link/1` would say;
    * `{:pool_unavailable, _}`: no pool `name` is running.

  A name that is not an atom, `wasm` of another type, a module of another
  engine than the pool's, or an unknown option raise `ArgumentError`.

  ## Options

    * `:compile_timeout` - milliseconds compiling the new version may take,
      in the calling process. Defaults to the pool's `:compile_timeout`, or
      `config :munition, :compile_timeout` (`30_000`).

  ## Examples

      iex> {:ok, _pid} = Munition.Pool.start_link(name: :doc_swap, wasm: ~s{(module (func (export "v") (result i32) i32.const 1))})
      iex> {:ok, 1, _meta} = Munition.fire_pooled(:doc_swap, "v", [])
      iex> {:ok, %Munition.Module{}} = Munition.Pool.swap(:doc_swap, ~s{(module (func (export "v") (result i32) i32.const 2))})
      iex> {:ok, 2, _meta} = Munition.fire_pooled(:doc_swap, "v", [])
      iex> {:error, {:invalid_module, _}} = Munition.Pool.swap(:doc_swap, "(module (func")
      iex> {:ok, 2, _meta} = Munition.fire_pooled(:doc_swap, "v", [])
      iex> GenServer.stop(:doc_swap)
      :ok
  """
  @spec swap(atom(), Munition.wasm(), keyword()) ::
          {:ok, Munition.Module.t()} | {:error, Munition.Reason.error()}
  def swap(name, wasm, opts \\ []) do
    # The caller's mistakes raise, whether or not the pool runs.
    name = name!(name)
    opts = Keyword.validate!(Options.keyword!(opts), compile_timeout: nil)
    timeout = opts[:compile_timeout] && Options.timeout!(opts[:compile_timeout], :compile_timeout)
    _checked = to_module(wasm, nil, :check)

    case fetch(name) do
      nil ->
        unavailable(name)

      pool ->
        _checked =
          if is_struct(wasm, Munition.Module), do: Munition.Module.runtime!(wasm, pool.defaults.runtime)

        timeout = compile_timeout(pool.defaults, timeout)

        # Compiled and linked in this process: the pool's process goes on
        # serving its line meanwhile, and takes only the finished version.
        with {:ok, module} <- to_module(wasm, pool.defaults, timeout),
             {:ok, version} <- prepare(module, pool.defaults) do
          publish(name, version)
        end
    end
  end

  defp publish(name, version) do
    GenServer.call(name, {:swap, version}, :infinity)
  catch
    # Stopped since: nothing was switched.
    :exit, _reason -> unavailable(name)
  end

  @doc """
  The `%Munition.Module{}` the pool `name` serves now: `{:ok, module}`, or
  `{:error, {:pool_unavailable, message}}` as `stats/1` answers. A name
  that is not an atom raises `ArgumentError`.

  ## Examples

      iex> {:ok, _pid} = Munition.Pool.start_link(name: :doc_module, wasm: ~s{(module (func (export "f")))})
      iex> {:ok, module} = Munition.Pool.module(:doc_module)
      iex> Enum.map(module.exports, & &1.name)
      ["f"]
      iex> GenServer.stop(:doc_module)
      :ok
  """
  @spec module(atom()) :: {:ok, Munition.Module.t()} | {:error, {:pool_unavailable, String.t()}}
  def module(name) do
    case fetch(name!(name)) do
      nil -> unavailable(name)
      pool -> {:ok, pool.module}
    end
  end

  @doc false
  # What a call of a pool that is not running gets, from stats/1 and
  # Munition.fire_pooled/4 alike.
  @spec unavailable(atom()) :: {:error, {:pool_unavailable, String.t()}}
  def unavailable(name), do: {:error, {:pool_unavailable, "no pool named #{inspect(name)} is running"}}

  @doc false
  # A pool's name: an atom other than nil and the booleans. Anything else
  # is the caller's mistake.
  @spec name!(term()) :: atom()
  def name!(name) when is_atom(name) and name not in [nil, true, false], do: name
  def name!(other), do: raise(ArgumentError, "a pool's name must be an atom, got: #{inspect(other)}")

  @doc false
  # The running pool `name`, or nil.
  @spec fetch(atom()) :: t() | nil
  def fetch(name) do
    case :persistent_term.get({__MODULE__, name}, nil) do
      %__MODULE__{pid: pid} = pool -> if Process.alive?(pid), do: pool
      nil -> nil
    end
  end

  @doc false
  # Runs one call of `pool` (see Munition.fire_pooled/4).
  @spec fire(t(), String.t(), list(), keyword()) ::
          {:ok, term(), map()} | {:crash, atom(), term()} | {:error, Munition.Reason.error()}
  def fire(%__MODULE__{} = pool, function, args, opts) do
    {options, state} = prepared(pool, opts)
    state = call_state(pool, options, state, function, args)
    asked_at = System.monotonic_time(:millisecond)
    deadline = asked_at + options.timeout

    with {:ok, place, line} <- checkout(pool, deadline, :back) do
      result =
        try do
          state
          |> serving(pool, line, opts)
          |> started(line, asked_at, deadline)
          |> Munition.execute(options.dump_dir)
        after
          checkin(pool, place)
        end

      :atomics.add(pool.counters, outcome_index(result), 1)
      result
    else
      error ->
        :atomics.add(pool.counters, @failed, 1)
        error
    end
  end

  defp call_state(pool, options, state, function, args) do
    fuel = Munition.Fuel.Policy.resolve!(options.fuel, pool.module, function)
    %{state | function: function, args: args, fuel: fuel}
  end

  # The checked options of a call of `pool` with the per-call options
  # `opts`, and its State but for the function, arguments and fuel. The
  # pool's own options: its State was made once, with its version. A call
  # that overrides some is usually made again with the same overrides: the
  # caller's last such preparation is kept in its process dictionary (one,
  # as `Munition.fire/4` keeps one of its own) and reused for the same
  # version of the same pool and equal options, which were checked when it
  # was made. Not kept: options whose check reads more than the options,
  # which every call checks again (preopened directories, checked to exist;
  # `nil` for `:timeout`, `:max_memory` or `:dump_dir`, which takes the
  # configured value). Checking the overrides and building the State was
  # 2-3 µs of a 50 µs call on a QuickJS snapshot.
  @last_prepared :munition_pool_last_prepared

  defp prepared(pool, []), do: {pool.options, pool.state}

  defp prepared(pool, opts) do
    key = {pool.version, opts}

    case Process.get(@last_prepared) do
      {^key, options, state} ->
        {options, state}

      _other ->
        options = Options.override!(pool.options, opts)
        state = Options.state(options, pool.module, pool.links, "", [], 1)
        if reusable?(opts), do: Process.put(@last_prepared, {key, options, state})
        {options, state}
    end
  end

  # A `nil` override takes the configured value, read at each check.
  defp reusable?(opts) do
    not Options.checked_every_call?(opts) and
      not Enum.any?(opts, fn {key, value} -> key in [:timeout, :max_memory, :dump_dir] and value == nil end)
  end

  # A call runs the version the pool serves when it gets its place: one that
  # took it at once, the version it found (it is never switched under it);
  # one that waited in line, the version serving when its turn came, which
  # a swap meanwhile has changed (swap/3 returns, and no call that gets a
  # place after it starts the old version).
  defp serving(state, _pool, :back, _opts), do: state

  defp serving(state, pool, :front, opts) do
    case :persistent_term.get({__MODULE__, pool.name}, nil) do
      %__MODULE__{pid: pid, version: version} = now when pid == pool.pid and version != pool.version ->
        {options, prepared} = prepared(now, opts)
        call_state(now, options, prepared, state.function, state.args)

      # The same version, or the pool gone (or restarted: this call's place
      # is the old pool's) since the call asked.
      _same ->
        state
    end
  end

  # The call's deadline counts from when it asked for a place, as fire/4's
  # counts from its call: one that waited for a place runs for what is left.
  # A waiter is woken only before its deadline, so it has at least the
  # millisecond it was woken in.
  defp started(state, :back, asked_at, _deadline), do: %{state | started_at: asked_at}

  defp started(state, :front, _asked_at, deadline) do
    now = System.monotonic_time(:millisecond)
    %{state | started_at: now, timeout: max(deadline - now, 1)}
  end

  defp outcome_index({:ok, _, _}), do: @completed
  defp outcome_index({:crash, _, _}), do: @crashed
  defp outcome_index({:error, _}), do: @failed

  # A place in the pool: taken when there is room and no one waits (a waiter
  # woken from the line may take it regardless: it is next). Taking counts
  # the place and makes the token that gives it back in one NIF call, and
  # the token lives only in this process (never in a message or a table):
  # a caller killed at any point, even between two instructions, gives its
  # place back when its heap is freed (the token's destructor). `line` is
  # where the caller last stood: `:back` before it waited, `:front` after.
  defp checkout(pool, deadline, line) do
    if line == :back and Waiters.count(pool.counters) > 0 do
      wait(pool, deadline, line)
    else
      case Native.pool_place_take(pool.places) do
        :full -> wait(pool, deadline, line)
        place -> {:ok, place, line}
      end
    end
  end

  defp wait(pool, deadline, line) do
    case Waiters.await(pool.pid, deadline, line) do
      :ok ->
        checkout(pool, deadline, :front)

      :timeout ->
        {:error,
         {:overloaded,
          "all #{pool.size} places of pool #{inspect(pool.name)} stayed busy until the call's deadline"}}

      :gone ->
        {:error, {:pool_unavailable, "pool #{inspect(pool.name)} stopped"}}
    end
  end

  # A call that outlived its pool gives its place back to places no one
  # counts any more, which is harmless.
  defp checkin(pool, place) do
    Native.pool_place_return(place)
    if Waiters.count(pool.counters) > 0, do: send(pool.pid, :released)
  end

  ## The pool's process: it prepares the module, owns the line of waiting
  ## callers, and publishes the pool.

  @impl true
  def init({name, wasm, size, options}) do
    # Waiting callers are answered when the pool stops, however it stops.
    Process.flag(:trap_exit, true)

    with {:ok, module} <- to_module(wasm, options, compile_timeout(options, nil)),
         {:ok, version} <- prepare(module, options) do
      pool =
        struct!(
          __MODULE__,
          Map.merge(version, %{
            name: name,
            pid: self(),
            defaults: options,
            size: size,
            counters: :atomics.new(4, signed: true),
            places: Native.pool_places_new(size)
          })
        )

      :persistent_term.put({__MODULE__, name}, pool)
      # Pools of the same name on several nodes form one group (Munition.Cluster).
      scope = Munition.Cluster.join_pool(name)
      {:ok, %{pool: pool, line: Waiters.new(pool.counters), timer: nil, scope: scope}}
    else
      {:error, reason} -> {:stop, reason}
    end
  end

  # One version of the pool: its module, the links of its imports under the
  # pool's capabilities and host functions, its fuel, and every call's
  # State but for its function, arguments and fuel, which `fire/4` fills
  # in. The same for the version a pool starts with and those it switches
  # to.
  defp prepare(module, defaults) do
    with {:ok, links} <-
           Munition.Host.Capabilities.resolve(
             module,
             defaults.capabilities,
             defaults.host_functions,
             defaults.runtime
           ) do
      # Everything but :adaptive is the same for every function of the
      # module; :adaptive has its settings read once.
      fuel =
        case defaults.fuel do
          :adaptive -> Munition.Fuel.Policy.prepare_adaptive(module)
          spec -> Munition.Fuel.Policy.resolve!(spec, module, "")
        end

      options = %{defaults | fuel: fuel}

      {:ok,
       %{
         version: make_ref(),
         module: module,
         links: links,
         options: options,
         state: Options.state(options, module, links, "", [], 1)
       }}
    end
  end

  # How long compiling a version may take: the swap's :compile_timeout
  # (checked), else the pool's, else the configured one (the pool's
  # :timeout is its calls').
  defp compile_timeout(defaults, nil),
    do: defaults.compile_timeout || Munition.Runtime.Config.compile_timeout()

  defp compile_timeout(_defaults, timeout), do: timeout

  # Bounded by the pool's limits and the compile timeout; with `:check`
  # only the type of `wasm` is checked. A snapshot's bytes say what they
  # are a snapshot of (their first section), as for fire/4 given them: its
  # dumps name the snapshot, whether the pool got the module or its bytes.
  defp to_module(%Munition.Module{} = module, _options, _timeout), do: {:ok, module}
  defp to_module(bytes, _options, :check) when is_binary(bytes), do: :ok

  defp to_module(bytes, options, timeout) when is_binary(bytes) do
    with {:ok, module} <- options.runtime.compile(bytes, limits: options.limits, timeout: timeout),
         do: {:ok, Munition.Snapshot.mark(module, bytes)}
  end

  defp to_module(other, _options, _timeout),
    do:
      raise(
        ArgumentError,
        "wasm must be wasm bytes, WAT text or a %Munition.Module{}, got: #{inspect(other)}"
      )

  # A version prepared by swap/3 is published here, so that swaps take
  # effect one at a time, in the order they arrive, and never after the
  # pool has stopped (terminate/2 unpublishes it).
  @impl true
  def handle_call({:swap, version}, _from, state) do
    pool = Map.merge(state.pool, version)
    :persistent_term.put({__MODULE__, pool.name}, pool)
    {:reply, {:ok, pool.module}, %{state | pool: pool}}
  end

  @impl true
  def handle_info({:wait, pid, ref, place}, state) do
    state = %{state | line: Waiters.add(state.line, pid, ref, place)}
    {:noreply, state |> wake_free() |> schedule()}
  end

  def handle_info(:released, state), do: {:noreply, state |> wake_free() |> schedule()}

  # While anyone waits: a place given back by a killed caller's token sends
  # no :released, and is found here.
  def handle_info(:retry, state), do: {:noreply, %{state | timer: nil} |> wake_free() |> schedule()}

  def handle_info({:cancel, ref}, state), do: {:noreply, %{state | line: Waiters.cancel(state.line, ref)}}

  # The :pg scope went, and the pool's group with it: joined again once the
  # scope is back (its supervisor restarts it).
  def handle_info({:DOWN, scope, :process, _pid, _reason}, %{scope: scope} = state) do
    Process.send_after(self(), {:rejoin, @rejoin_ms}, @rejoin_ms)
    {:noreply, %{state | scope: nil}}
  end

  def handle_info({:DOWN, monitor, :process, _pid, _reason}, state),
    do: {:noreply, %{state | line: Waiters.down(state.line, monitor)}}

  # Looked for again less and less often (a pool may outlive Munition's
  # application, whose scope then never comes back).
  def handle_info({:rejoin, after_ms}, state) do
    case Munition.Cluster.join_pool(state.pool.name) do
      nil ->
        later = min(2 * after_ms, @rejoin_max_ms)
        Process.send_after(self(), {:rejoin, later}, later)
        {:noreply, state}

      scope ->
        {:noreply, %{state | scope: scope}}
    end
  end

  def handle_info({:EXIT, _pid, reason}, state), do: {:stop, reason, state}

  @impl true
  def terminate(_reason, state) do
    # The pool is unpublished first, so no caller joins the line any more;
    # those in it see this process go down and are answered :pool_unavailable.
    :persistent_term.erase({__MODULE__, state.pool.name})
    :ok
  end

  # Wakes as many waiters as there are free places; one that loses its place
  # to a newcomer waits again at the front.
  defp wake_free(state) do
    free = state.pool.size - Native.pool_places_in_use(state.pool.places)
    %{state | line: Enum.reduce(1..max(free, 0)//1, state.line, fn _, line -> Waiters.wake(line) end)}
  end

  defp schedule(state), do: %{state | timer: Waiters.schedule_retry(state.line, state.timer, @retry_ms)}
end

defmodule Munition.Instance.State do
  @moduledoc false
  # One call, as far as it is known: built once by `Munition.fire/4` from the
  # checked options and carried unchanged to the runtime, which reads its
  # bounds (`:fuel`, `:timeout`, `:max_memory`, `:links`, `:log_limit`,
  # `:host_pid`) and its WASI configuration (`:wasi`) when it makes the store. The forensic capture reads the
  # context from it (function, arguments, capabilities, fuel given).
  #
  # Fields:
  #
  #   * `:module` - the compiled `Munition.Module`
  #   * `:function`, `:args` - the export and the arguments as given
  #   * `:runtime` - the `Munition.Runtime` that runs it
  #   * `:fuel` - the resolved budget (start function included)
  #   * `:timeout` - milliseconds from `:started_at` to the deadline
  #   * `:max_memory` - bytes of linear memory the guest may have
  #   * `:capabilities` - the expanded, granted capabilities
  #   * `:links` - what each import links to, from `Munition.Host.Capabilities.resolve/4`
  #   * `:inert_links` - those of them linked inert, for the audit trail
  #     (`Munition.Host.Capabilities.inert_links/3`)
  #   * `:host_functions` - the call's `Munition.Host.Function`s (`:links` index into it)
  #   * `:forensics`, `:result`, `:alloc` - as the options of `Munition.fire/4`
  #   * `:log_limit` - bytes of guest log lines kept
  #   * `:wasi` - the call's WASI configuration, `nil` when it has none (see
  #     `Munition.Host.WASI.config/2`): `%{args, env, stdin, preopens,
  #     stdout_limit, stderr_limit, clock, http_allow, http_response_limit}`,
  #     preopens as `{guest_path, host_path, writable}`, `http_allow` as
  #     `{scheme, host, port}`
  #   * `:host_pid` - the process that drives the guest and serves its Elixir
  #     host functions; set by that process, `nil` when there are none
  #   * `:started_at` - monotonic milliseconds when the execution started
  #     (set by the manager; by `Munition.Pool` to when the call asked for its
  #     place, or after a wait for one to when it got it, `:timeout` then
  #     being what was left)
  #   * `:call` - `{function, args, release, alloc, binary_result}`: the
  #     call the runtime may make as soon as the instance is ready, in the
  #     same step as instantiating, whether it may release the instance once
  #     that call returns, and the binary ABI's allocator and result (see
  #     `c:Munition.Runtime.instantiate/2`); set by the manager when no
  #     reactor needs initializing, `nil` otherwise
  #   * `:journal` - what the store does with its host calls:
  #     `{:record, limit}` keeps a replay log of at most `limit` bytes (see
  #     `Munition.replay/3`), `{:replay, log, stop_at}` answers them from
  #     `log`, stopping the guest at `stop_at` fuel left when not `nil`
  #   * `:snapshot` - `{wasm, provenance}` for the initialisation of
  #     `Munition.snapshot/4`: once the call returns, the runtime writes the
  #     idle instance (of the module `wasm` instrumented) into a new module,
  #     handed out in the metadata's `:snapshot`; `nil` for every other call

  @enforce_keys [:module, :function, :args, :runtime, :fuel, :timeout, :max_memory]
  defstruct [
    :module,
    :function,
    :args,
    :runtime,
    :fuel,
    :timeout,
    :max_memory,
    :host_pid,
    :started_at,
    :wasi,
    :call,
    :snapshot,
    capabilities: [],
    links: [],
    inert_links: [],
    host_functions: [],
    forensics: :full,
    result: :values,
    alloc: "alloc",
    log_limit: 65_536,
    # Set by `Munition.Options.state/6` from `:replay_log_limit`.
    journal: {:record, 0}
  ]

  @type t :: %__MODULE__{
          module: Munition.Module.t(),
          function: String.t(),
          args: list(),
          runtime: module(),
          fuel: pos_integer(),
          timeout: pos_integer(),
          max_memory: pos_integer(),
          capabilities: [atom()],
          links: [tuple()],
          inert_links: [Munition.Host.Capabilities.inert_link()],
          host_functions: [Munition.Host.Function.t()],
          forensics: :full | :minimal | false,
          result: :values | :binary,
          alloc: String.t(),
          log_limit: non_neg_integer(),
          host_pid: pid() | nil,
          started_at: integer() | nil,
          wasi: map() | nil,
          call: {String.t(), list(), boolean(), String.t(), boolean()} | nil,
          snapshot: {binary(), binary()} | nil,
          journal: {:record, non_neg_integer()} | {:replay, binary(), non_neg_integer() | nil}
        }

  @doc """
  What a native runtime reads of the State to make the store, as the tuple
  its NIF decodes (`InstanceConfig` in `native/munition_native/src/instance.rs`,
  fields in the same order): `{fuel, timeout, max_memory, links, log_limit,
  host_pid, wasi, call, journal}`. A tuple is read by position; the State map was
  read key by key, a tenth of a pooled call's native time.
  """
  @spec to_native(t()) :: tuple()
  # One match reads the nine fields in one pass over the map's keys.
  def to_native(%__MODULE__{
        fuel: fuel,
        timeout: timeout,
        max_memory: max_memory,
        links: links,
        log_limit: log_limit,
        host_pid: host_pid,
        wasi: wasi,
        call: call,
        journal: journal
      }) do
    {fuel, timeout, max_memory, links, log_limit, host_pid, wasi, call, journal}
  end
end

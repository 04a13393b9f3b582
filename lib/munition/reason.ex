defmodule Munition.Reason do
  @moduledoc """
  Munition's vocabulary of outcomes, written once and used from here: the
  reasons of `{:crash, reason, dump}`, the trap kinds of `dump.trap`, and the
  reasons of `{:error, reason}`.

  The native side has its own copy of the first two (it produces them); its
  lists are checked against these by a test through `c:Munition.Runtime.info/0`.

  ## Crash reasons

  The guest ran and failed: `#{inspect([:fuel_exhausted, :trap, :timeout, :memory_limit, :host_error])}`.

  ## Trap kinds

  Which trap, in `Munition.Forensics.Dump`'s `:trap`: the engine's own
  (`:unreachable`, `:integer_divide_by_zero`, `:integer_overflow`,
  `:memory_out_of_bounds`, `:stack_overflow`, `:indirect_call_to_null`,
  `:bad_signature`, `:table_out_of_bounds`, `:bad_conversion_to_integer`,
  `:heap_misaligned`, `:null_reference`, `:allocation_too_large`), the bounds
  (`:out_of_fuel`, `:interrupt` for the deadline, `:memory_limit`), the host
  (`:abort` when the guest called `abort`, `:host_error`), and `:unknown`.

  ## Error reasons

  Nothing ran, or it could not run: each is `{kind, detail}`.

    * `{:invalid_module, message}` - the bytes are not a valid module
    * `{:unsupported, message}` - valid wasm Munition does not run (more
      memories or tables than an instance slot holds)
    * `{:module_limit, message}` - the module is over a compile limit (see
      "Compile limits" in `Munition.Runtime.Config`); the message names the
      limit, the module's value and the limit's
    * `{:timeout, message}` - compiling the module did not finish by the
      deadline (the compilation goes on in the background and lands in the
      module cache), or a call on another node could not start there by it.
      Nothing ran, so there is no guest state to dump (a guest that runs out
      of time is `{:crash, :timeout, dump}` instead)
    * `{:function_not_found, name}` - no such export
    * `{:bad_args, message}` - arguments that do not fit the signature or the binary ABI
    * `{:bad_result, message}` - `result: :binary` on a function that cannot return one
    * `{:capability_denied, [%{module: m, name: n, needs: capability | nil}]}` - imports not granted
    * `{:memory_limit, message}` - the initial memory is already over `:max_memory`
    * `{:instantiation_failed, message}` - the module could not be instantiated
    * `{:overloaded, message}` - every instance slot (or every place of a
      `Munition.Pool`) stayed in use until the call's deadline
    * `{:pool_unavailable, message}` - no `Munition.Pool` of that name is running
    * `{:not_capturable, message}` - `Munition.snapshot/4` cannot capture
      the module's state, or would bake into it what the initialisation
      may not read: the message names it (a component Wizer cannot take
      apart or one left with WASI 0.2 resources open, an imported memory,
      an instruction that changes a table, preopened directories, a read of
      the clock, randomness, arguments or environment not allowed by
      `:bake`, a `proc_exit`)
    * `{:runtime_failure, message}` - the runtime itself failed (a bug: please report it)
    * `{:nodedown, node}` - a call on another node (`node:`, see
      `Munition.Cluster`) could not start there: the node is down or
      unreachable. Nothing ran, so the call may be retried
    * `{:node_down_during_call, node}` - the node running the call went down
      (or its connection broke) after the call started there. The guest may
      have run, and its host functions may have had effects: Munition never
      retries such a call, the caller decides
    * `{:no_answer, node}` - the call's answer did not come from the node
      running it by the call's deadline plus a margin (the node is frozen,
      overloaded or partitioned), after the caller had let it start. The
      guest may have run, or may still run there: the caller kills the
      call's process on that node, which may not arrive in time. Like
      `:node_down_during_call`, never retried
  """

  @crash_reasons [:fuel_exhausted, :trap, :timeout, :memory_limit, :host_error]

  @trap_kinds [
    :unreachable,
    :integer_divide_by_zero,
    :integer_overflow,
    :memory_out_of_bounds,
    :stack_overflow,
    :indirect_call_to_null,
    :bad_signature,
    :table_out_of_bounds,
    :bad_conversion_to_integer,
    :heap_misaligned,
    :null_reference,
    :allocation_too_large,
    :out_of_fuel,
    :interrupt,
    :memory_limit,
    :abort,
    :host_error,
    :unknown
  ]

  @error_kinds [
    :invalid_module,
    :unsupported,
    :module_limit,
    :timeout,
    :function_not_found,
    :bad_args,
    :bad_result,
    :capability_denied,
    :memory_limit,
    :instantiation_failed,
    :overloaded,
    :pool_unavailable,
    :not_capturable,
    :runtime_failure,
    :nodedown,
    :node_down_during_call,
    :no_answer
  ]

  union = fn atoms -> atoms |> Enum.reverse() |> Enum.reduce(&{:|, [], [&1, &2]}) end

  @typedoc "Why a guest that ran failed."
  @type crash :: unquote(union.(@crash_reasons))

  @typedoc "Which trap stopped a guest."
  @type trap :: unquote(union.(@trap_kinds))

  @typedoc "Why nothing ran, or could not run."
  @type error ::
          {:invalid_module, String.t()}
          | {:unsupported, String.t()}
          | {:module_limit, String.t()}
          | {:timeout, String.t()}
          | {:function_not_found, String.t()}
          | {:bad_args, String.t()}
          | {:bad_result, String.t()}
          | {:capability_denied, [%{module: String.t(), name: String.t(), needs: atom() | nil}]}
          | {:memory_limit, String.t()}
          | {:instantiation_failed, String.t()}
          | {:overloaded, String.t()}
          | {:pool_unavailable, String.t()}
          | {:not_capturable, String.t()}
          | {:runtime_failure, String.t()}
          | {:nodedown, node()}
          | {:node_down_during_call, node()}
          | {:no_answer, node()}

  @doc "Every crash reason."
  @spec crash_reasons() :: [crash()]
  def crash_reasons, do: @crash_reasons

  @doc "Every trap kind."
  @spec trap_kinds() :: [trap()]
  def trap_kinds, do: @trap_kinds

  @doc "The first element of every error reason."
  @spec error_kinds() :: [atom()]
  def error_kinds, do: @error_kinds
end

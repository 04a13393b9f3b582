defmodule Munition.Replay do
  @moduledoc """
  Runs a crashed call again from its dump, bit for bit: `Munition.replay/3`.

  ## Recording

  Every call records what came from outside its guest: each host call, in
  order, with the fuel consumed when it began and when it ended, the values
  it returned, the bytes it wrote into guest memory, what it added to the
  guest's log and WASI output, and how it ended (returned, failed the call,
  exited, ran out of fuel). That covers Munition's built-ins (time, random),
  WASI preview 1 (clocks, random, stdin, arguments and environment, polls,
  file reads, directory listings, file metadata: every function, whatever it
  reads) and Elixir host functions (the values they returned and the bytes
  they wrote with `Munition.Host.Context.write/3`). The arguments, the
  function, the module's hash and the bounds the call ran under (its fuel,
  `:max_memory`, log and output limits, `:result`, `:alloc`) are in the dump
  already or recorded beside the log (`dump.replay`).

  A host call costs its recording (a few hundred nanoseconds, and what it
  wrote is copied); a call with no host calls records nothing. The log of a
  call is bounded by `config :munition, :replay_log_limit` (1 MiB by
  default): past it, the dump says the call cannot be replayed, and why. So
  does a call that could not be recorded:

    * a component: WASI 0.2's host calls are `wasmtime-wasi`'s own, whose
      resources (streams, descriptors) live in its tables, outside the guest;
      nothing records them yet;
    * on `Munition.Runtime.Wasmi`, a call stopped at its deadline: Wasmi
      stops a guest between slices of fuel, a point a replay does not reach
      again yet.

  Wasmi can charge fuel for translating a function the first time a call
  reaches it, which would make a count depend on what earlier calls on the
  same module translated; Munition sets that cost to nothing (see
  `Munition.Runtime.Wasmi`), so a replay's fuel counts match the call's on
  both engines.

  ## Replaying

  `Munition.replay/3` makes a fresh instance of the same module (checked by
  its hash), with the same fuel and bounds, calls the same function with the
  same arguments (a reactor's `_initialize`, the allocator of a binary
  argument, the start function: the same sequence as `Munition.fire/4`), and
  answers every host call from the log instead of calling anything: no
  Elixir host function, no file, no clock is reached. Each answer checks that
  the guest makes the host call the log has next, at the same fuel count.
  A call stopped at its deadline in wasm code is stopped where it was, by its
  fuel count.

  The replayed crash has the same reason, trap, fuel, globals, memory, log and
  output as the dump; its `replay` field is the dump's, so it can be replayed
  again. The state part-way (`until:`) cannot be: its `replay` says so. A
  replay that does not follow its log answers
  `{:error, {:replay_diverged, %{at: at, why: why}}}`, `at` naming the first
  divergence: `:module` (another module), `{:host_call, n}` (the `n`th host
  call is another import, at another fuel count, or past the log's end, or
  the log is cut short there), or `:end` (the replay ended otherwise: another
  reason, trap or fuel count, or with host calls of the log left). A replay
  still running at its own `:timeout` answers `{:error, {:timeout, why}}`.

  A replay runs on any node of the same architecture with the module (bytes,
  or its `Munition.Module`) and the dump (a struct, or read back with
  `Munition.Forensics.Dump.read/2`). Wasm is deterministic but for NaN bit
  patterns, which the architecture chooses (Wasmtime canonicalises none): a
  replay on another architecture can diverge where a guest looks at the bits
  of a NaN it made.
  """

  alias Munition.Forensics.Dump
  alias Munition.Instance.{Manager, State}

  @engines %{wasmtime: Munition.Runtime.Wasmtime, wasmi: Munition.Runtime.Wasmi}

  @typedoc "Where a replay first did not follow its log."
  @type divergence :: %{at: :module | {:host_call, pos_integer()} | :end, why: String.t()}

  @doc false
  @spec replay(Dump.t(), term(), keyword()) ::
          {:crash, Munition.Reason.crash(), Dump.t()}
          | {:stopped, Dump.t()}
          | {:error, {:replay_unavailable, String.t()} | {:replay_diverged, divergence()} | term()}
  def replay(dump, wasm, opts) do
    dump = dump!(dump)
    opts = Keyword.validate!(opts, until: nil, timeout: 60_000)
    until = until!(opts[:until])
    timeout = timeout!(opts[:timeout])

    with {:ok, replay} <- available(dump),
         {:ok, runtime} <- runtime(replay),
         {:ok, module} <- module(wasm, runtime),
         :ok <- same_module(dump, module) do
      state = state(dump, replay, module, runtime, until, timeout)
      judge(Manager.execute(state), dump, until)
    end
  end

  defp dump!(%Dump{} = dump), do: dump

  defp dump!(other),
    do: raise(ArgumentError, "dump must be a Munition.Forensics.Dump, got: #{inspect(other)}")

  defp until!(nil), do: nil
  defp until!(fuel) when is_integer(fuel) and fuel >= 0, do: fuel

  defp until!(other),
    do: raise(ArgumentError, "until must be a fuel count (a non-negative integer), got: #{inspect(other)}")

  defp timeout!(ms) when is_integer(ms) and ms > 0, do: ms

  defp timeout!(other),
    do: raise(ArgumentError, "timeout must be a positive integer (milliseconds), got: #{inspect(other)}")

  defp available(%Dump{replay: nil}),
    do:
      {:error,
       {:replay_unavailable,
        "the dump has no replay log (a dump of format version 1, or a failure that left no store)"}}

  defp available(%Dump{replay: %{log: nil, unavailable: why}}), do: {:error, {:replay_unavailable, why}}

  defp available(%Dump{replay: %{engine: :wasmi}, reason: :timeout}),
    do:
      {:error,
       {:replay_unavailable,
        "Munition.Runtime.Wasmi stops a guest at its deadline between slices of fuel, a point a replay does not reach again yet"}}

  defp available(%Dump{replay: replay}), do: {:ok, replay}

  defp runtime(%{engine: engine}) do
    case Map.fetch(@engines, engine) do
      {:ok, runtime} ->
        {:ok, runtime}

      :error ->
        {:error,
         {:replay_unavailable, "the dump names an engine this Munition does not have: #{inspect(engine)}"}}
    end
  end

  defp module(%Munition.Module{runtime: runtime} = module, runtime), do: {:ok, module}

  defp module(%Munition.Module{runtime: other}, runtime),
    do:
      {:error,
       {:replay_unavailable,
        "the module was compiled by #{inspect(other)}; the dump's call ran on #{inspect(runtime)}"}}

  defp module(wasm, runtime), do: Munition.compile(wasm, runtime: runtime)

  defp same_module(%Dump{module_hash: hash}, %Munition.Module{hash: hash}), do: :ok

  defp same_module(%Dump{module_hash: expected}, %Munition.Module{hash: got}),
    do: diverged(:module, "the dump's call ran module #{expected}, this is module #{got}")

  defp state(dump, replay, module, runtime, until, timeout) do
    # Stopped at its deadline in wasm code: stopped again where it was.
    stop_at = if dump.reason == :timeout, do: dump.fuel_consumed

    %State{
      module: module,
      function: dump.function,
      args: dump.args,
      runtime: runtime,
      # `until` short of the crash is a smaller budget: the log counts fuel
      # consumed, which it does not change. At or past the crash it is no
      # budget at all: a guest given exactly the fuel the crash consumed can
      # run out before it traps (Wasmtime pays for a block as it enters it,
      # and a trap inside it may be counted short of that).
      fuel: if(until != nil and until < dump.fuel_consumed, do: until, else: dump.fuel_given),
      timeout: timeout,
      max_memory: replay.max_memory,
      capabilities: dump.capabilities,
      inert_links: dump.inert_links,
      result: replay.result,
      alloc: replay.alloc,
      log_limit: replay.log_limit,
      wasi: wasi(replay),
      journal: {:replay, replay.log, stop_at}
    }
  end

  # The replay's output is what the log says was written, kept as the call
  # kept it; nothing else of WASI is reached.
  defp wasi(%{stdout_limit: nil}), do: nil

  defp wasi(replay) do
    %{
      args: [],
      env: [],
      stdin: "",
      preopens: [],
      stdout_limit: replay.stdout_limit,
      stderr_limit: replay.stderr_limit,
      clock: :real,
      http_allow: [],
      http_response_limit: 0
    }
  end

  defp judge({:crash, reason, %Dump{replay: {:replayed, answered, diverged, whole}} = replayed}, dump, until) do
    replayed = %{replayed | replay: dump.replay}

    cond do
      diverged != nil ->
        diverged({:host_call, answered + 1}, diverged)

      # The replay's own deadline (`:timeout`), short of where the call
      # ended: not a divergence, the replay did not finish.
      reason == :timeout and replayed.fuel_consumed < dump.fuel_consumed ->
        {:error,
         {:timeout,
          "the replay did not finish within its timeout: it had replayed #{answered} host calls " <>
            "and #{replayed.fuel_consumed} of the call's #{dump.fuel_consumed} fuel"}}

      # The state part-way says it is no crash to replay: run again, it
      # would stop where it stopped (its fuel is `until`) with host calls of
      # the log left, which reads as a divergence.
      until != nil and until < dump.fuel_consumed and reason == :fuel_exhausted ->
        {:stopped,
         %{
           replayed
           | replay: %{
               log: nil,
               unavailable:
                 "the state of a replay stopped at fuel #{replayed.fuel_consumed} (until: #{until}), " <>
                   "not a crash: replay the call's own dump"
             }
         }}

      # Short of the crash, but the engine had no point to stop at before it:
      # Wasmtime checks fuel on entering a function or a loop, so a guest runs
      # on past its budget in straight-line code, its fuel left reading 0.
      # It crashed as the call did, every host call answered: the crash, with
      # the fuel the call consumed.
      until != nil and until < dump.fuel_consumed and whole and
          {reason, replayed.trap} == {dump.reason, dump.trap} ->
        {:crash, reason,
         %{
           replayed
           | fuel_given: dump.fuel_given,
             fuel_consumed: dump.fuel_consumed,
             fuel_remaining: dump.fuel_remaining
         }}

      not whole ->
        diverged(:end, "the guest ended after #{answered} host calls; the log has more")

      {reason, replayed.trap, replayed.fuel_consumed} != {dump.reason, dump.trap, dump.fuel_consumed} ->
        diverged(
          :end,
          "the replay ended as #{inspect({reason, replayed.trap})} at fuel #{replayed.fuel_consumed}; " <>
            "the call ended as #{inspect({dump.reason, dump.trap})} at fuel #{dump.fuel_consumed}"
        )

      true ->
        {:crash, reason, replayed}
    end
  end

  defp judge({:crash, reason, _no_store}, dump, _until),
    do:
      diverged(
        :end,
        "the replay crashed (#{inspect(reason)}) leaving no store; the call ended as #{inspect(dump.reason)}"
      )

  defp judge({:ok, _value, _meta}, dump, _until),
    do:
      diverged(
        :end,
        "the replay returned; the call ended as #{inspect(dump.reason)} at fuel #{dump.fuel_consumed}"
      )

  defp judge({:error, _} = error, _dump, _until), do: error

  defp diverged(at, why), do: {:error, {:replay_diverged, %{at: at, why: why}}}
end

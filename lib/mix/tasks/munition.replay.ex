defmodule Mix.Tasks.Munition.Replay do
  @shortdoc "Replays a crash from its dump file and prints how it ended"

  @moduledoc """
  Runs the call of a Munition crash dump again (`Munition.replay/3`) on the
  wasm module at `WASM` (binary `.wasm` or WAT text), answering every host
  call from the log the dump carries: nothing outside the guest runs again.

      mix munition.replay DUMP WASM [--until FUEL] [--out PATH]

  It prints how the replay ended (reason, trap, message, fuel consumed, the
  host calls answered, the end of the guest's stdout and stderr), which is
  how the recorded call ended; or where the replay did not follow its log
  (another module, another host call, another end), or why the dump cannot
  be replayed (no log: a dump of format version 1, a component, a log past
  its bound...), then exits with a non-zero status.

  ## Options

    * `--until FUEL` - stop once the guest has consumed `FUEL`, at the first
      point the engine stops at (the task prints the actual count, which
      may be short of `FUEL`), and write the state there as a dump, to look
      at memory before the crash (`mix munition.inspect`) and bisect to the
      step that went wrong. A count at or past the crash's replays to the
      crash and writes nothing.
    * `--out PATH` - where `--until` writes its dump. Defaults to
      `DUMP.at-<fuel>.munition-dump`, `<fuel>` the actual count.
    * `--timeout MS` - how long the replay may run, in milliseconds
      (default 60 000).

  A missing or corrupt file ends the task with an error message and a
  non-zero exit status.
  """

  use Mix.Task

  alias Mix.Tasks.Munition.Validate
  alias Munition.Forensics.{Dump, Report}

  @switches [until: :integer, out: :string, timeout: :integer]

  # How much of the guest's stdout and stderr is printed: the end of each.
  @tail 2_048

  @impl Mix.Task
  def run(argv) do
    {opts, args} = Validate.parse!(argv, @switches, usage())

    {dump_path, wasm_path} =
      case args do
        [dump, wasm] -> {dump, wasm}
        _ -> Mix.raise("Expected a dump file and a wasm module\n\n#{usage()}")
      end

    if opts[:out] && !opts[:until], do: Mix.raise("--out names the dump --until writes: give --until too")
    if (opts[:until] || 0) < 0, do: Mix.raise("--until takes a fuel count, got: #{opts[:until]}")
    if (opts[:timeout] || 1) < 1, do: Mix.raise("--timeout takes milliseconds, got: #{opts[:timeout]}")

    Mix.Task.run("app.start", [])

    dump =
      case Dump.read(dump_path) do
        {:ok, dump} -> dump
        {:error, reason} -> Mix.raise("Cannot read dump #{dump_path}: #{Report.error(reason)}")
      end

    wasm = Validate.read!(wasm_path)
    replay_opts = Keyword.take(opts, [:until, :timeout])

    case Munition.replay(dump, wasm, replay_opts) do
      {:crash, reason, replayed} ->
        Mix.shell().info(["Replayed to the recorded end.\n", ending(reason, replayed)])

      {:stopped, stopped} ->
        out = opts[:out] || "#{dump_path}.at-#{stopped.fuel_consumed}.munition-dump"

        case Dump.write(stopped, out) do
          :ok -> :ok
          {:error, reason} -> Mix.raise("Cannot write #{out}: #{:file.format_error(reason)}")
        end

        Mix.shell().info([
          "Stopped at fuel #{stopped.fuel_consumed} (asked: #{opts[:until]}; ",
          "the call crashed at #{dump.fuel_consumed}).\n",
          output(stopped),
          "Wrote the state there to #{out}\n"
        ])

      {:error, {:replay_diverged, %{at: at, why: why}}} ->
        Mix.raise("The replay diverged #{where(at)}: #{why}")

      {:error, {:replay_unavailable, why}} ->
        Mix.raise("This dump cannot be replayed: #{why}")

      {:error, {:timeout, why}} ->
        Mix.raise("The replay timed out (--timeout): #{why}")

      {:error, reason} ->
        Mix.raise("Nothing replayed: #{inspect(reason)}")
    end
  end

  defp usage, do: "Usage: mix munition.replay DUMP WASM [--until FUEL] [--out PATH] [--timeout MS]"

  defp where(:module), do: "at the module"
  defp where({:host_call, n}), do: "at host call #{n}"
  defp where(:end), do: "at the end"

  defp ending(reason, dump) do
    [
      "reason:     #{inspect(reason)} (trap: #{inspect(dump.trap)})\n",
      "message:    #{dump.message}\n",
      "function:   #{dump.function}(#{Enum.map_join(dump.args, ", ", &inspect/1)})\n",
      "fuel:       #{dump.fuel_consumed} consumed of #{dump.fuel_given}\n",
      "host calls: #{dump.replay.host_calls} answered from the log\n",
      output(dump)
    ]
  end

  defp output(dump) do
    [
      section("stdout", dump.stdout, dump.stdout_truncated),
      section("stderr", dump.stderr, dump.stderr_truncated)
    ]
  end

  defp section(_name, nil, _truncated), do: []
  defp section(_name, "", _truncated), do: []

  defp section(name, text, truncated) do
    {note, text} =
      if byte_size(text) > @tail,
        do: {" (its last #{@tail} bytes)", binary_part(text, byte_size(text) - @tail, @tail)},
        else: {"", text}

    ["--- #{name}#{note}#{if truncated, do: " (truncated by its limit)"} ---\n", text, "\n"]
  end
end

defmodule Mix.Tasks.Munition.Fire do
  @shortdoc "Runs an export of a wasm module with Munition and prints the outcome"

  @moduledoc """
  Runs `FUNCTION` of the wasm module at `PATH` (binary `.wasm` or WAT text)
  through `Munition.fire/4`, and prints the result and its metadata, or the
  crash summary (as `mix munition.inspect` prints a dump), or the error.

      mix munition.fire PATH FUNCTION [ARGS...] [options]

  Each argument that reads as an integer (`42`, `-7`, `0x2a`) or a float
  (`1.5`) is passed as a number; any other is passed as a binary through the
  binary ABI (the guest's `alloc` export; see "Binary data" in the README).

  ## Options

    * `--fuel N` - the fuel budget (or a profile: `strict`, `default`,
      `generous`, or `auto`)
    * `--timeout MS` - the deadline in milliseconds
    * `--cap time,log` - capabilities to grant (comma-separated; groups such
      as `basic` allowed)
    * `--binary` - read the result back as a binary (`result: :binary`)
    * `--max-memory BYTES` - the memory limit

  Exits with a non-zero status when the guest crashes or nothing could run.
  """

  use Mix.Task

  alias Mix.Tasks.Munition.Validate

  @switches [fuel: :string, timeout: :integer, cap: :string, binary: :boolean, max_memory: :integer]

  @impl Mix.Task
  def run(argv) do
    {opts, args, invalid} = OptionParser.parse(argv, strict: @switches)

    if invalid != [],
      do: Mix.raise("Invalid option(s): #{Enum.map_join(invalid, ", ", &elem(&1, 0))}\n\n#{usage()}")

    {path, function, guest_args} =
      case args do
        [path, function | rest] -> {path, function, Enum.map(rest, &parse_arg/1)}
        _ -> Mix.raise("Expected a module path and a function name\n\n#{usage()}")
      end

    Mix.Task.run("app.start", [])
    bytes = Validate.read!(path)

    fire_opts =
      [
        capabilities: Validate.capabilities!(opts[:cap]),
        result: if(opts[:binary], do: :binary, else: :values)
      ]
      |> put_if(:fuel, opts[:fuel] && parse_fuel(opts[:fuel]))
      |> put_if(:timeout, opts[:timeout])
      |> put_if(:max_memory, opts[:max_memory])

    result =
      try do
        Munition.fire(bytes, function, guest_args, fire_opts)
      rescue
        error in ArgumentError -> Mix.raise(Exception.message(error))
      end

    case result do
      {:ok, value, meta} ->
        Mix.shell().info([
          "result: ",
          inspect(value, binaries: :as_strings, limit: :infinity),
          "\n",
          metadata(meta)
        ])

      {:crash, reason, nil} ->
        Mix.raise("the guest crashed: #{inspect(reason)}")

      {:crash, reason, dump} ->
        Mix.shell().info(Munition.Forensics.Analyser.summary(dump))
        Mix.raise("the guest crashed: #{inspect(reason)} (trap: #{inspect(dump.trap)})")

      {:error, reason} ->
        Mix.raise("nothing ran: #{inspect(reason)}")
    end
  end

  defp metadata(meta) do
    log = Enum.map(meta.log, fn {level, line} -> "\n  log #{level}: #{line}" end)

    [
      "fuel:   #{meta.fuel_consumed} consumed, #{meta.fuel_remaining} left\n",
      "time:   #{meta.execution_time_us} µs\n",
      "module: #{meta.module_hash}",
      log
    ]
  end

  defp put_if(opts, _key, nil), do: opts
  defp put_if(opts, key, value), do: Keyword.put(opts, key, value)

  defp parse_arg("0x" <> hex = arg) do
    case Integer.parse(hex, 16) do
      {n, ""} -> n
      _ -> arg
    end
  end

  defp parse_arg(arg) do
    case Integer.parse(arg) do
      {n, ""} ->
        n

      _ ->
        case Float.parse(arg) do
          {f, ""} -> f
          _ -> arg
        end
    end
  end

  defp parse_fuel(text) do
    case Integer.parse(text) do
      {n, ""} -> n
      _ -> parse_profile(text)
    end
  end

  defp parse_profile(text) do
    known = Map.keys(Munition.Fuel.Policy.profiles()) ++ [:auto, :adaptive]

    Enum.find(known, &(Atom.to_string(&1) == text)) ||
      Mix.raise(
        "--fuel takes a positive integer or one of #{Enum.map_join(known, ", ", &Atom.to_string/1)}, got: #{text}"
      )
  end

  defp usage,
    do:
      "Usage: mix munition.fire PATH FUNCTION [ARGS...] [--fuel N] [--timeout MS] [--cap CAP,...] [--binary]"
end

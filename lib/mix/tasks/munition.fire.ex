defmodule Mix.Tasks.Munition.Fire do
  @shortdoc "Runs an export of a wasm module with Munition and prints the outcome"

  @moduledoc """
  Runs `FUNCTION` of the wasm module at `PATH` (binary `.wasm` or WAT text)
  through `Munition.fire/4`, and prints the result and its metadata, or the
  crash summary (as `mix munition.inspect` prints a dump), or the error.

      mix munition.fire PATH FUNCTION [ARGS...] [options]

  Each argument that reads as an integer (`42`, `-7`, `0x2a`) or a float
  (`1.5`) is passed as a number; any other is passed as a binary through the
  binary ABI (the guest's `alloc` export; see "Binary data" in the getting-started guide).

  With `FUNCTION` `_start`, the module runs as a WASI command
  (`Munition.run/2`): the arguments are its `argv` after the program's name
  (the module's file name), `--stdin` gives its standard input and `--env`
  its environment; it prints the command's stdout and stderr and the exit
  code, and exits with the command's exit code.

      mix munition.fire hello.wasm _start Ada --cap wasi --stdin input.txt --env GREETING=Hi

  ## Options

    * `--fuel N` - the fuel budget (or a profile: `strict`, `default`,
      `generous`, or `auto`)
    * `--timeout MS` - the deadline in milliseconds
    * `--cap time,log` - capabilities to grant (comma-separated; groups such
      as `basic` allowed). Repeat it to grant more: `--cap wasi --cap wasi_fs`
      grants both
    * `--binary` - read the result back as a binary (`result: :binary`)
    * `--max-memory BYTES` - the memory limit
    * `--stdin PATH` - a file whose bytes are the guest's stdin (`-` for this
      task's own standard input)
    * `--env KEY=VALUE` - a variable of the guest's environment (repeat it)

  `--cap` and `--env` may be repeated, their values adding up; any other
  option given twice is an error naming it.

  Exits with a non-zero status when the guest crashes or nothing could run.
  """

  use Mix.Task

  alias Mix.Tasks.Munition.Validate

  @switches [
    fuel: :string,
    timeout: :integer,
    cap: [:string, :keep],
    binary: :boolean,
    max_memory: :integer,
    stdin: :string,
    env: [:string, :keep]
  ]

  @impl Mix.Task
  def run(argv) do
    {opts, args} = Validate.parse!(argv, @switches, usage())

    {path, function, rest} =
      case args do
        [path, function | rest] -> {path, function, rest}
        _ -> Mix.raise("Expected a module path and a function name\n\n#{usage()}")
      end

    Mix.Task.run("app.start", [])
    bytes = Validate.read!(path)

    fire_opts =
      [capabilities: Validate.capabilities!(Keyword.get_values(opts, :cap))]
      |> put_if(:fuel, opts[:fuel] && parse_fuel(opts[:fuel]))
      |> put_if(:timeout, opts[:timeout])
      |> put_if(:max_memory, opts[:max_memory])
      |> put_if(:wasi, wasi(opts, function, path, rest))

    result =
      try do
        if function == "_start" do
          Munition.run(bytes, fire_opts)
        else
          fire_opts = Keyword.put(fire_opts, :result, if(opts[:binary], do: :binary, else: :values))
          Munition.fire(bytes, function, Enum.map(rest, &parse_arg/1), fire_opts)
        end
      rescue
        error in ArgumentError -> Mix.raise(Exception.message(error))
      end

    report(result, function)
  end

  defp report({:ok, code, meta}, "_start") do
    Mix.shell().info([output(meta), "exit code: #{code}\n", metadata(meta)])
    if code != 0, do: exit({:shutdown, code})
  end

  defp report({:ok, value, meta}, _function) do
    Mix.shell().info([
      output(meta),
      "result: ",
      inspect(value, binaries: :as_strings, limit: :infinity),
      "\n",
      metadata(meta)
    ])
  end

  defp report({:crash, reason, nil}, _function), do: Mix.raise("the guest crashed: #{inspect(reason)}")

  defp report({:crash, reason, dump}, _function) do
    Mix.shell().info(Munition.Forensics.Analyser.summary(dump))
    Mix.raise("the guest crashed: #{inspect(reason)} (trap: #{inspect(dump.trap)})")
  end

  defp report({:error, reason}, _function), do: Mix.raise("nothing ran: #{inspect(reason)}")

  # What the guest wrote, when it had WASI's stdio.
  defp output(%{stdout: stdout, stderr: stderr} = meta) do
    [
      section("stdout", stdout, meta[:stdout_truncated]),
      section("stderr", stderr, meta[:stderr_truncated])
    ]
  end

  defp output(_meta), do: []

  defp section(_name, "", _truncated), do: []

  defp section(name, text, truncated),
    do: ["--- #{name}#{if truncated, do: " (truncated)"} ---\n", text, "\n"]

  # The WASI configuration of the call: argv, stdin and environment for a
  # command; nil when none is given to a plain export.
  defp wasi(opts, function, path, rest) do
    env = for pair <- Keyword.get_values(opts, :env), do: env_pair!(pair)

    wasi =
      []
      |> put_if(:args, if(function == "_start", do: [Path.basename(path) | rest]))
      |> put_if(:stdin, opts[:stdin] && stdin!(opts[:stdin]))
      |> put_if(:env, if(env != [], do: env))

    if wasi != [], do: wasi
  end

  defp env_pair!(pair) do
    case String.split(pair, "=", parts: 2) do
      [key, value] when key != "" -> {key, value}
      _ -> Mix.raise("--env takes KEY=VALUE, got: #{pair}")
    end
  end

  defp stdin!("-"), do: IO.binread(:stdio, :eof) |> then(&if(is_binary(&1), do: &1, else: ""))
  defp stdin!(path), do: Validate.read!(path)

  defp metadata(meta) do
    log = Enum.map(meta.log, fn {level, line} -> "\n  log #{level}: #{line}" end)

    [
      "fuel:   #{meta.fuel_consumed} consumed, #{meta.fuel_remaining} left\n",
      "time:   #{meta.execution_time_us} µs\n",
      "module: #{meta.module_hash}",
      inert(meta.inert_links),
      log
    ]
  end

  # Imports linked without their capability, reaching nothing (see "Inert
  # links" in Munition.Host.Capabilities).
  defp inert([]), do: []

  defp inert(links),
    do: ["\ninert:  ", Enum.map_join(links, ", ", &"#{&1.name} (needs #{inspect(&1.needs)}: #{&1.reason})")]

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

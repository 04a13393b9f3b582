defmodule Munition.Bench.RawWasmtime do
  @moduledoc false
  # The raw-Wasmtime baseline (native/munition_bench): builds it, runs it and
  # reads its figures, for bench/fire.exs to put in the same table as
  # Munition's.

  @root Path.expand("../..", __DIR__)

  # munition_native is built alongside: with both packages selected, Cargo
  # unifies their dependencies' features as for the NIF alone, so the bench
  # reuses the NIF's wasmtime build instead of compiling a second one.
  @build ~w(build --release --locked -p munition_native -p munition_bench)

  @doc """
  Figures of the baseline: `%{name => %{"median_ns" => n, ...}}`, throughput
  figures under `{name, threads}`. `args` go to the binary.
  """
  def run(args \\ []) do
    case System.cmd(build!(), args, cd: @root) do
      {output, 0} -> parse(output)
      {output, status} -> raise "munition_bench exited with #{status}:\n#{output}"
    end
  end

  @doc "Builds munition_bench (with the NIF, see @build) and returns the binary's path."
  def build! do
    warn_if_drifted()
    IO.puts(:stderr, "Building the raw baselines: cargo #{Enum.join(@build, " ")}")

    case System.cmd("cargo", @build, cd: @root, stderr_to_stdout: true) do
      {_, 0} -> Path.join([target_dir(), "release", "munition_bench"])
      {output, status} -> raise "cargo build of munition_bench failed (#{status}):\n#{output}"
    end
  end

  @doc """
  Writes `bytes` to a file for the baseline to read (its `--wasm` and
  `--binary-file` arguments) and returns the path: in a directory of this
  VM's own, removed when the script ends.
  """
  def input_file!(name, bytes) do
    dir = Path.join(System.tmp_dir!(), "munition-bench-#{System.pid()}")

    unless File.dir?(dir) do
      File.mkdir_p!(dir)
      System.at_exit(fn _status -> File.rm_rf(dir) end)
    end

    path = Path.join(dir, "#{System.unique_integer([:positive])}-#{name}")
    File.write!(path, bytes)
    path
  end

  defp target_dir do
    case System.get_env("CARGO_TARGET_DIR") do
      nil -> Path.join(@root, "target")
      "" -> Path.join(@root, "target")
      dir -> Path.expand(dir, @root)
    end
  end

  # `name key=value ...` lines; values are integers.
  defp parse(output) do
    for line <- String.split(output, "\n", trim: true), into: %{} do
      [name | pairs] = String.split(line)

      fields =
        Map.new(pairs, fn pair ->
          [key, value] = String.split(pair, "=", parts: 2)
          {key, String.to_integer(value)}
        end)

      case fields do
        %{"threads" => threads} -> {{name, threads}, fields}
        _ -> {name, fields}
      end
    end
  end

  # The baseline means something only while it runs the NIF's wasmtime: same
  # version, same features.
  defp warn_if_drifted do
    [bench, native] =
      for crate <- ~w(munition_bench munition_native) do
        text = File.read!(Path.join([@root, "native", crate, "Cargo.toml"]))
        Regex.run(~r/^wasmtime = \{.*?\}$/ms, text)
      end

    if bench != native do
      IO.puts(
        :stderr,
        "WARNING: native/munition_bench and native/munition_native ask for different wasmtime " <>
          "versions or features; the raw baseline does not measure the NIF's engine."
      )
    end
  end
end

defmodule Mix.Tasks.Compile.MunitionNative do
  @moduledoc false
  # Builds the Rust NIF with cargo and places it in priv/native. Defined here,
  # in mix.exs, so it exists before anything of the project is compiled, both in
  # this repository and when Munition is a dependency (hex.pm is not needed).
  use Mix.Task.Compiler

  @lib_name "munition_native"

  @impl true
  def run(_args) do
    root = Path.dirname(Mix.Project.project_file())
    target = Path.join([Mix.Project.app_path(), "priv", "native", "#{@lib_name}.so"])

    if stale?(root, target) do
      build(root, target)
    else
      {:noop, []}
    end
  end

  defp stale?(root, target) do
    sources =
      Path.wildcard(Path.join(root, "native/**/*.{rs,toml}")) ++
        Enum.map(["Cargo.toml", "Cargo.lock"], &Path.join(root, &1))

    not File.exists?(target) or Mix.Utils.stale?(Enum.filter(sources, &File.exists?/1), [target])
  end

  defp build(root, target) do
    cargo = System.find_executable("cargo")

    unless cargo do
      Mix.raise("""
      Munition needs Rust's cargo to build its native library, and cargo is not on PATH.
      Install Rust (https://rustup.rs or `apt-get install cargo`) and compile again.
      """)
    end

    Mix.shell().info("Compiling munition_native (cargo build --release)")

    case System.cmd(cargo, ["build", "--release", "--locked", "-p", @lib_name],
           cd: root,
           stderr_to_stdout: true,
           into: IO.stream(:stdio, :line)
         ) do
      {_, 0} ->
        built = Path.join([root, "target", "release", built_name()])
        File.mkdir_p!(Path.dirname(target))
        # Copy to a temporary name and rename: a VM that has the old library
        # loaded keeps its mapping intact.
        tmp = target <> ".tmp"
        File.cp!(built, tmp)
        File.rename!(tmp, target)
        {:ok, []}

      {_, status} ->
        Mix.raise("cargo build failed with exit status #{status}")
    end
  end

  defp built_name do
    case :os.type() do
      {:unix, :darwin} -> "lib#{@lib_name}.dylib"
      {:win32, _} -> "#{@lib_name}.dll"
      _ -> "lib#{@lib_name}.so"
    end
  end
end

defmodule Munition.MixProject do
  use Mix.Project

  @version "0.1.0"

  def project do
    [
      app: :munition,
      version: @version,
      elixir: "~> 1.14",
      start_permanent: Mix.env() == :prod,
      compilers: [:munition_native] ++ Mix.compilers(),
      elixirc_paths: elixirc_paths(Mix.env()),
      deps: [],
      description:
        "Run untrusted WebAssembly from Elixir: bounded, isolated, capability-gated, with forensics.",
      package: package(),
      docs: [main: "Munition"]
    ]
  end

  def application do
    [
      extra_applications: [:logger, :crypto],
      mod: {Munition.Application, []}
    ]
  end

  defp elixirc_paths(:test), do: ["lib", "test/support"]
  defp elixirc_paths(_), do: ["lib"]

  defp package do
    [
      licenses: ["Apache-2.0"],
      links: %{},
      files: ~w(lib native/munition_native/src native/munition_native/Cargo.toml
                native/munition_core/src native/munition_core/Cargo.toml
                Cargo.toml Cargo.lock mix.exs README.md CHANGELOG.md)
    ]
  end
end

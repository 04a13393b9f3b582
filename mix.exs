# The compiler that puts the NIF in priv/native (from source, or a verified
# precompiled artifact) and `mix munition.native.package`: in native/build.exs,
# loaded before anything of the project is compiled.
Code.require_file("native/build.exs", __DIR__)

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
      docs: docs()
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

  # For ex_doc (`mix docs`), when it is installed: Munition depends on nothing,
  # so this is plain data and the project compiles without it. README.md is not
  # an extra: its opening section is `Munition`'s moduledoc.
  defp docs do
    [
      main: "Munition",
      source_ref: "v#{@version}",
      extras: [
        "guides/getting-started.md",
        "guides/capabilities-and-wasi.md",
        "guides/components.md",
        "guides/forensics.md",
        "guides/fuel.md",
        "guides/pools-and-cluster.md",
        "guides/snapshots.md",
        "guides/engines.md",
        "guides/performance.md",
        "guides/limits.md",
        "CONTRIBUTING.md",
        "CHANGELOG.md"
      ],
      groups_for_extras: [Guides: ~r{^guides/}, Project: ["CONTRIBUTING.md", "CHANGELOG.md"]],
      groups_for_modules: [
        "Running guests": [Munition, Munition.Pool, Munition.Module, Munition.Reason, Munition.Cluster],
        "Capabilities and host functions": [
          Munition.Host.Capabilities,
          Munition.Host.Functions,
          Munition.Host.Context,
          Munition.Host.WASI
        ],
        Forensics: [
          Munition.Forensics.Dump,
          Munition.Forensics.Analyser,
          Munition.Forensics.Coredump,
          Munition.Forensics.Report
        ],
        Fuel: [Munition.Fuel.Policy, Munition.Fuel.Meter],
        "Engines and configuration": [
          Munition.Runtime,
          Munition.Runtime.Wasmtime,
          Munition.Runtime.Wasmi,
          Munition.Runtime.Config
        ]
      ]
    ]
  end

  defp package do
    [
      licenses: ["Apache-2.0"],
      links: %{},
      # Every workspace member of Cargo.toml ships (cargo refuses a workspace
      # with a member missing, and its Cargo.lock covers them all); only
      # munition_native is built when Munition is compiled as a dependency.
      files: ~w(lib native/build.exs native/munition_core/src native/munition_core/Cargo.toml
                native/munition_native/src native/munition_native/Cargo.toml
                native/munition_bench/src native/munition_bench/Cargo.toml
                native/munition_smith/src native/munition_smith/Cargo.toml
                Cargo.toml Cargo.lock checksum-Elixir.Munition.Native.exs mix.exs .formatter.exs
                README.md CHANGELOG.md LICENSE guides)
    ]
  end
end

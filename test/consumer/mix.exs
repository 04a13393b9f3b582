defmodule Consumer.MixProject do
  # A separate project that depends on Munition by path, as an application
  # would depend on the Hex package: `make test` compiles it (native build
  # included) and fires a module through it.
  use Mix.Project

  def project do
    [app: :consumer, version: "0.1.0", elixir: "~> 1.14", deps: [{:munition, path: "../.."}]]
  end

  def application, do: [extra_applications: [:logger]]
end

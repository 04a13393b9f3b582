defmodule Consumer.MixProject do
  # A separate project that depends on Munition as an application depends on
  # the Hex package: by path, on a directory holding exactly the package's
  # files (MUNITION_PACKAGE_DIR; `make consumer` lays it out and runs
  # test/consumer/run.sh), or on this repository when it is not set.
  use Mix.Project

  def project do
    [
      app: :consumer,
      version: "0.1.0",
      elixir: "~> 1.14",
      deps: [{:munition, path: System.get_env("MUNITION_PACKAGE_DIR", "../..")}]
    ]
  end

  def application, do: [extra_applications: [:logger]]
end

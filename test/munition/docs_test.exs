defmodule Munition.DocsTest do
  # One public surface: what a user calls is documented, execution
  # internals are hidden, and no public doc points at a hidden module.
  use ExUnit.Case, async: true

  @internal [
    Munition.Instance.Manager,
    Munition.Instance.State,
    Munition.Instance.Slots,
    Munition.Instance.BinaryABI,
    Munition.Forensics.Capture,
    Munition.Forensics.Dump.Format,
    Munition.Forensics.Dump.Files,
    Munition.Fuel.Meter.Histogram,
    Munition.Fuel.Meter.Window,
    Munition.Host.Function
  ]

  defp modules do
    {:ok, modules} = :application.get_key(:munition, :modules)
    modules
  end

  defp hidden?(module), do: match?({:docs_v1, _, _, _, :hidden, _, _}, Code.fetch_docs(module))

  test "execution internals are hidden from the docs" do
    for module <- @internal, do: assert(hidden?(module), "#{inspect(module)} is documented")
  end

  test "no public doc names a hidden module" do
    hidden = for module <- modules(), hidden?(module), do: inspect(module)

    for module <- modules(),
        {:docs_v1, _, _, _, moduledoc, _, docs} = Code.fetch_docs(module),
        moduledoc != :hidden,
        %{"en" => text} <- [moduledoc | Enum.map(docs, &elem(&1, 3))],
        name <- hidden do
      refute text =~ ~r/`([tc]:)?#{Regex.escape(name)}(?![A-Za-z0-9_])/,
             "the public docs of #{inspect(module)} name the hidden #{name}"
    end
  end

  test "the public surface is the modules a user calls" do
    # Protocol implementations are listed under their protocol.
    public =
      for module <- modules(),
          not hidden?(module),
          name = inspect(module),
          not String.starts_with?(name, "Inspect."),
          do: name

    assert Enum.sort(public) == [
             "Mix.Tasks.Munition.Fire",
             "Mix.Tasks.Munition.Inspect",
             "Mix.Tasks.Munition.Replay",
             "Mix.Tasks.Munition.Validate",
             "Munition",
             "Munition.Cluster",
             "Munition.Forensics.Analyser",
             "Munition.Forensics.Coredump",
             "Munition.Forensics.Dump",
             "Munition.Forensics.Report",
             "Munition.Fuel.Meter",
             "Munition.Fuel.Policy",
             "Munition.Host.Capabilities",
             "Munition.Host.Context",
             "Munition.Host.Functions",
             "Munition.Host.WASI",
             "Munition.Module",
             "Munition.Pool",
             "Munition.Reason",
             "Munition.Replay",
             "Munition.Runtime",
             "Munition.Runtime.Config",
             "Munition.Runtime.Wasmi",
             "Munition.Runtime.Wasmtime"
           ]
  end
end

defmodule Mix.Tasks.Munition.Validate do
  @shortdoc "Says what a wasm module imports and exports, and what Munition would refuse"

  @moduledoc """
  Checks a wasm module (binary `.wasm` or WAT text) the way `Munition.fire/4`
  would, without running it.

      mix munition.validate PATH [--cap time,log]

  Prints the module's imports, each with the capability that grants it (or
  `-` when nothing can), its exports with their signatures and its memories,
  then what would be refused with the capabilities given by `--cap`
  (comma-separated, groups such as `basic` and `wasi` allowed; none by
  default, as for `fire/4`). `--cap` may be repeated: its values add up
  (`--cap time --cap log` is `--cap time,log`). When nothing is refused, it
  lists the imports linked inert, each with the capability it lacks and why
  it reaches nothing (see "Inert links" in `Munition.Host.Capabilities`).

  Exits with a non-zero status when the module is invalid or unsupported, or
  when an import would be refused.
  """

  use Mix.Task

  alias Munition.Host.Capabilities

  @switches [cap: [:string, :keep]]

  @impl Mix.Task
  def run(argv) do
    {opts, args} = parse!(argv, @switches, usage())

    path =
      case args do
        [path] -> path
        _ -> Mix.raise("Expected exactly one module path\n\n#{usage()}")
      end

    Mix.Task.run("app.start", [])
    bytes = read!(path)
    capabilities = capabilities!(Keyword.get_values(opts, :cap))

    module =
      case Munition.compile(bytes) do
        {:ok, module} -> module
        {:error, reason} -> Mix.raise("#{path} does not compile: #{inspect(reason)}")
      end

    Mix.shell().info(describe(module))

    case Capabilities.resolve(module, capabilities, []) do
      {:ok, links} ->
        Mix.shell().info("\nnothing refused with capabilities #{inspect(capabilities)}")

        case Capabilities.inert_links(links, capabilities, module.runtime) do
          [] ->
            :ok

          inert ->
            lines =
              Enum.map(inert, fn i -> "  #{i.module}.#{i.name}  needs: #{needs(i.needs)} (#{i.reason})" end)

            Mix.shell().info(
              Enum.join(["linked inert, reaching nothing (see Munition.Host.Capabilities):" | lines], "\n")
            )
        end

      {:error, {:capability_denied, denied}} ->
        lines = Enum.map(denied, fn d -> "  #{d.module}.#{d.name}  needs: #{needs(d.needs)}" end)
        Mix.shell().info(Enum.join(["\nrefused with capabilities #{inspect(capabilities)}:" | lines], "\n"))
        Mix.raise("#{length(denied)} import(s) would be refused")

      {:error, reason} ->
        Mix.raise("would not instantiate: #{inspect(reason)}")
    end
  end

  @doc false
  # The module's imports (with the capability each needs), exports and
  # memories, as text. Shared with `mix munition.fire`.
  @spec describe(Munition.Module.t()) :: String.t()
  def describe(%Munition.Module{kind: :component} = module) do
    imports =
      Enum.map(module.imports, fn import ->
        needs =
          case import.module do
            "wasi:" <> _ -> needs(Capabilities.wasi_capability(import.module))
            _ -> "a host function of yours ({module, name, :wit, capability, fun})"
          end

        "  #{import.module}.#{import.name}#{wit_signature(import)}  needs: #{needs}#{refused(import)}"
      end)

    exports =
      Enum.map(module.exports, fn export -> "  #{export.name}#{wit_signature(export)}#{refused(export)}" end)

    [
      "component #{module.hash}",
      section("imports", imports),
      section("exports", exports)
    ]
    |> Enum.join("\n")
  end

  def describe(%Munition.Module{} = module) do
    builtins = Capabilities.builtins(module.runtime)

    imports =
      Enum.map(module.imports, fn import ->
        needs =
          Enum.find_value(
            builtins,
            &(&1.module == import.module and &1.name == import.name and &1.capability)
          )

        "  #{import.module}.#{import.name}  #{import.kind}#{signature(import)}  needs: #{needs(needs)}"
      end)

    exports =
      Enum.map(module.exports, fn export -> "  #{export.name}  #{export.kind}#{signature(export)}" end)

    memories =
      module.memories
      |> Enum.with_index()
      |> Enum.map(fn {memory, index} ->
        max = if memory.max_pages, do: "#{memory.max_pages}", else: "none"
        "  memory #{index}: #{memory.min_pages} pages min, #{max} max, #{memory.page_size} bytes a page"
      end)

    [
      "module #{module.hash}",
      section("imports", imports),
      section("exports", exports),
      section("memories", memories)
    ]
    |> Enum.join("\n")
  end

  defp section(title, []), do: "#{title}: none"
  defp section(title, lines), do: Enum.join(["#{title}:" | lines], "\n")

  defp signature(%{kind: :func, params: params, results: results}),
    do: " (#{Enum.join(params, ", ")}) -> (#{Enum.join(results, ", ")})"

  defp signature(_), do: ""

  defp wit_signature(%{params: params, results: results}) do
    params = Enum.map_join(params, ", ", fn {name, type} -> "#{name}: #{type}" end)
    results = if results == [], do: "", else: " -> #{Enum.join(results, ", ")}"
    ": func(#{params})#{results}"
  end

  defp refused(%{refused: nil}), do: ""
  defp refused(%{refused: why}), do: "  REFUSED: #{why}"

  defp needs(nil), do: "- (no capability grants it)"
  defp needs(capability), do: inspect(capability)

  @doc false
  # Reads a module file, or raises Mix.Error naming it.
  @spec read!(Path.t()) :: binary()
  def read!(path) do
    case File.read(path) do
      {:ok, bytes} -> bytes
      {:error, reason} -> Mix.raise("Cannot read #{path}: #{:file.format_error(reason)}")
    end
  end

  @doc false
  # Parses the command line of a Munition task: `switches` as for
  # OptionParser's `:strict`, where `[type, :keep]` marks an option that may
  # be repeated, its values adding up (read them with Keyword.get_values/2).
  # Any other option given twice is a Mix error naming it, rather than one
  # value silently dropped; so is an unknown one. Shared with
  # `mix munition.fire` and `mix munition.inspect`.
  @spec parse!([String.t()], keyword(), String.t()) :: {keyword(), [String.t()]}
  def parse!(argv, switches, usage) do
    keep = Enum.map(switches, fn {key, type} -> {key, (List.wrap(type) -- [:keep]) ++ [:keep]} end)
    {opts, args, invalid} = OptionParser.parse(argv, strict: keep)

    if invalid != [],
      do: Mix.raise("Invalid option(s): #{Enum.map_join(invalid, ", ", &elem(&1, 0))}\n\n#{usage}")

    for {key, type} <- switches, :keep not in List.wrap(type), length(Keyword.get_values(opts, key)) > 1 do
      switch = "--" <> String.replace(Atom.to_string(key), "_", "-")
      Mix.raise("#{switch} was given more than once; it takes one value\n\n#{usage}")
    end

    {opts, args}
  end

  @doc false
  # `--cap time,log` as expanded capabilities, every `--cap` given adding
  # up; an unknown one is a Mix error.
  @spec capabilities!([String.t()]) :: [atom()]
  def capabilities!(texts) when is_list(texts) do
    names =
      texts
      |> Enum.flat_map(&String.split(&1, ",", trim: true))
      |> Enum.map(&String.trim/1)

    known = Map.new(Capabilities.builtin_capabilities() ++ Capabilities.groups(), &{Atom.to_string(&1), &1})

    names
    |> Enum.map(fn name ->
      Map.get(known, name) ||
        Mix.raise(
          "Unknown capability: #{name} (known: #{known |> Map.keys() |> Enum.sort() |> Enum.join(", ")})"
        )
    end)
    |> Capabilities.expand!()
  end

  defp usage, do: "Usage: mix munition.validate PATH [--cap CAP,...]"
end

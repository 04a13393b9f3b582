defmodule Munition.Module do
  @moduledoc """
  A compiled guest module, from `Munition.compile/2`.

  Keep one around to fire the same module many times without hashing its bytes
  on every call. Fields:

    * `:runtime` - the `Munition.Runtime` that compiled it, and the only one
      that runs it: a call on another runtime raises `ArgumentError`
    * `:hash` - lowercase hex SHA-256 of the bytes (wasm or WAT) it was compiled from
    * `:imports` - `[%{module: m, name: n, kind: :func | :memory | :table | :global | :tag, params: [...], results: [...]}]`
    * `:exports` - `[%{name: n, kind: kind, params: [...], results: [...]}]`
    * `:memories` - declared memories (`:min_pages`, `:max_pages`, `:page_size`, `:memory64`, `:imported`)
    * `:stats` - static complexity figures (code size, functions, loops and their
      nesting, calls, data size, memory pages), used by `Munition.Fuel.Policy`
    * `:reactor` - whether it exports `_initialize() -> ()`, a WASI reactor's
      initializer, which every call runs first, in the same instance
    * `:kind` - `:module` (a core module) or `:component` (the component
      model: WIT interfaces, WASI 0.2; see the [Components](components.md) guide). A
      component's `:imports` and `:exports` are its WIT world's functions:
      `%{module: interface, name: n, kind: :func, params: [{name, type}],
      results: [type], refused: nil | reason}` for imports (`module` is `""`
      at the root of the world) and `%{name: call_name, ...}` for exports,
      types as WIT text (`"list<string>"`); `refused` says why Munition
      cannot call (or link) it.
    * `:snapshot` - `nil`, or for a snapshot (`Munition.snapshot/4`) where
      it comes from: `%{of: hash, function: name, bytes: wasm}`, the hash of
      the module whose initialisation ran, the export that ran it, and the
      snapshot's own wasm (the bytes its `:hash` is of), to store and
      compile again (`Munition.compile/2` of them gives this field back).
      A snapshot is no reactor: its `_initialize` ran before it was taken.
  """

  @enforce_keys [:resource, :hash]
  defstruct [
    :resource,
    :hash,
    runtime: Munition.Runtime.Wasmtime,
    imports: [],
    exports: [],
    memories: [],
    stats: %{},
    reactor: false,
    kind: :module,
    snapshot: nil
  ]

  @type t :: %__MODULE__{
          resource: reference(),
          runtime: module(),
          hash: String.t(),
          imports: [map()],
          exports: [map()],
          memories: [map()],
          stats: map(),
          reactor: boolean(),
          kind: :module | :component,
          snapshot: %{of: String.t(), function: String.t(), bytes: binary()} | nil
        }

  @doc false
  # A module as a runtime hands it out (`resource`, `hash`, `imports`,
  # `exports`, `memories`, `stats`), with what every call would otherwise look
  # up among its exports worked out once.
  @spec new(keyword()) :: t()
  def new(fields) do
    module = struct!(__MODULE__, fields)
    %{module | reactor: match?(%{params: [], results: []}, export(module, "_initialize"))}
  end

  @doc """
  Returns `module` if `runtime` can run it; raises `ArgumentError` naming
  both runtimes if not. A compiled module is one engine's own code: it runs
  on the runtime that compiled it, and on any runtime whose engine is the
  same (`c:Munition.Runtime.info/0`'s `:engine`, such as a wrapper of the
  runtime that compiled it). Compile the bytes with the call's runtime
  instead.
  """
  @spec runtime!(t(), module()) :: t()
  def runtime!(%__MODULE__{runtime: runtime} = module, runtime), do: module

  def runtime!(%__MODULE__{runtime: compiled_by} = module, runtime) do
    if engine(compiled_by) == engine(runtime) do
      module
    else
      raise ArgumentError,
            "#{inspect(module)} was compiled by #{inspect(compiled_by)} and cannot run on " <>
              "#{inspect(runtime)}: compile its bytes with runtime: #{inspect(runtime)}"
    end
  end

  # Only asked when a call's runtime is not the one that compiled its module.
  defp engine(runtime), do: Map.fetch!(runtime.info(), :engine)

  @doc false
  # Whether `bytes` hold a component rather than a core module: the binary's
  # header (version 0x0d, layer 1), or WAT text whose first form is
  # `(component`.
  @spec component_bytes?(binary()) :: boolean()
  def component_bytes?(<<0, "asm", version::16-little, 1::16-little, _::binary>>) when version != 1, do: true
  def component_bytes?(<<0, "asm", _::binary>>), do: false

  def component_bytes?(text),
    do: Regex.match?(~r/\A(\s|;;[^\n]*\n)*\(component\b/, binary_part(text, 0, min(byte_size(text), 4096)))

  @doc "The export named `name`, or `nil`."
  @spec export(t(), String.t()) :: map() | nil
  def export(%__MODULE__{exports: exports}, name), do: Enum.find(exports, &(&1.name == name))

  defimpl Inspect do
    defp snapshot(%{snapshot: nil}), do: ""
    defp snapshot(%{snapshot: %{of: of}}), do: "snapshot of \"#{String.slice(of, 0, 12)}…\", "

    def inspect(module, _opts) do
      "#Munition.Module<#{if module.kind == :component, do: "component, "}#{snapshot(module)}hash: \"#{String.slice(module.hash, 0, 12)}…\", exports: #{length(module.exports)}, imports: #{length(module.imports)}>"
    end
  end
end

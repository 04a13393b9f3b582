defmodule Munition.Host.Functions do
  @moduledoc """
  Elixir-implemented host functions and their registry.

  A host function is given to `Munition.fire/4` in `:host_functions`, either
  inline as a tuple or by the name under which the application registered it:

      lookup = {"env", "lookup", {[:i32], [:i32]}, :kv, fn _ctx, key -> key * 2 end}
      Munition.fire(wasm, "run", [21], host_functions: [lookup], capabilities: [:kv])

      Munition.Host.Functions.register(:lookup, lookup)
      Munition.fire(wasm, "run", [21], host_functions: [:lookup], capabilities: [:kv])

  The tuple is `{import_module, import_name, {params, results}, capability, fun}`;
  `fun` takes a `Munition.Host.Context` and one argument per param, and returns
  a value (one result), a list (several), or anything for none. Its capability
  must be granted in `:capabilities` like a built-in one.

  ## How a call runs

  The guest waits, suspended, while `fun` runs in a process of its own
  (spawned by the process that drives the guest), which answers over a
  channel;
  the waiting guest holds no scheduler thread. If `fun` raises, exits, is
  killed or returns values of the wrong type, the guest's call ends at once as
  `{:crash, :host_error, dump}` with the reason in the dump; if it is still
  running at the call's deadline, the guest's call ends as
  `{:crash, :timeout, dump}` and the process running `fun` is killed.
  """

  alias Munition.Host.Function

  @types [:i32, :i64, :f32, :f64]

  @typedoc """
  A host function as `new!/1` builds it from its tuple form: a struct with
  `:module` and `:name` (the import), `:params` and `:results` (wasm types
  among `:i32`, `:i64`, `:f32`, `:f64`), `:capability` (the atom that must be
  granted) and `:fun` (called as `fun.(context, arg1, ..., argN)`, see
  `Munition.Host.Context`). Anywhere a host function is taken, its tuple form
  is taken too.
  """
  @type t :: Function.t()

  @doc """
  Builds a host function (`t:t/0`) from its tuple form, raising
  `ArgumentError` on a malformed one.
  """
  @spec new!(tuple() | t()) :: t()
  def new!(%Function{} = function), do: function

  # An import of a component: typed by the component's WIT world.
  def new!({module, name, :wit, capability, fun} = spec)
      when is_binary(module) and is_binary(name) and is_atom(capability) and is_function(fun) do
    if capability in Munition.Host.Capabilities.builtin_capabilities() do
      raise ArgumentError,
            "host function #{module}.#{name} must use a capability of its own, not the built-in #{inspect(capability)}"
    end

    _ = spec
    %Function{module: module, name: name, params: :wit, results: :wit, capability: capability, fun: fun}
  end

  def new!({module, name, {params, results}, capability, fun} = spec)
      when is_binary(module) and is_binary(name) and is_list(params) and is_list(results) and
             is_atom(capability) and is_function(fun) do
    Enum.each(params ++ results, fn type ->
      unless type in @types do
        raise ArgumentError,
              "host function types must be among #{inspect(@types)}, got: #{inspect(type)} in #{inspect(spec)}"
      end
    end)

    if capability in Munition.Host.Capabilities.builtin_capabilities() do
      raise ArgumentError,
            "host function #{module}.#{name} must use a capability of its own, not the built-in #{inspect(capability)}"
    end

    unless is_function(fun, length(params) + 1) do
      raise ArgumentError,
            "host function #{module}.#{name} takes #{length(params)} wasm argument(s), so its fun must have arity #{length(params) + 1} (context first), got: #{inspect(fun)}"
    end

    %Function{module: module, name: name, params: params, results: results, capability: capability, fun: fun}
  end

  def new!(other) do
    raise ArgumentError,
          "a host function is {module, name, {params, results}, capability, fun} or a registered name, got: #{inspect(other)}"
  end

  @doc "Registers a host function under `key` for the whole node."
  @spec register(atom(), tuple() | t()) :: :ok
  def register(key, spec) when is_atom(key) do
    :persistent_term.put({__MODULE__, key}, new!(spec))
  end

  @doc "Removes a registered host function."
  @spec unregister(atom()) :: :ok
  def unregister(key) when is_atom(key) do
    :persistent_term.erase({__MODULE__, key})
    :ok
  end

  @doc "The host function registered under `key`; raises `ArgumentError` if none is."
  @spec fetch!(atom()) :: t()
  def fetch!(key) when is_atom(key) do
    case :persistent_term.get({__MODULE__, key}, nil) do
      nil -> raise ArgumentError, "no host function is registered as #{inspect(key)}"
      function -> function
    end
  end

  @doc "Normalizes the `:host_functions` option of `Munition.fire/4`."
  @spec normalize!(list()) :: [t()]
  def normalize!(list) when is_list(list) do
    functions =
      Enum.map(list, fn
        key when is_atom(key) -> fetch!(key)
        spec -> new!(spec)
      end)

    functions
    |> Enum.frequencies_by(&{&1.module, &1.name})
    |> Enum.each(fn
      {{module, name}, count} when count > 1 ->
        raise ArgumentError, "host function #{module}.#{name} is given #{count} times"

      _ ->
        :ok
    end)

    functions
  end

  def normalize!(other) do
    raise ArgumentError, "host_functions must be a list, got: #{inspect(other)}"
  end
end

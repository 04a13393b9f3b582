defmodule Munition.Fuel.Policy do
  @moduledoc """
  How much fuel a call gets.

  A unit of fuel is roughly one wasm instruction (Wasmtime charges one per
  operator, and nothing for `nop`, `drop`, `block`, `loop`, `end` and `else`).
  The `:fuel` option of `Munition.fire/4` takes:

    * `nil` (the option not given) - `default_fuel/0`.
    * a positive integer - exactly that.
    * a profile name - `:strict` (`1_000_000`), `:default` (`default_fuel/0`),
      `:generous` (`100_000_000`), or any profile of the application environment.
    * `:auto` - a budget computed from the module's code, see `for_module/2`.
    * `:adaptive` - a budget computed from the fuel the function's successful
      calls used, see `for_history/2`; `:auto` until there is enough history.

  Anything else (zero, a negative number, a float, an unknown atom) raises
  `ArgumentError` with the value in the message.

  ## Configuration

      config :munition,
        # the budget of a call without :fuel, and of the :default profile
        default_fuel: 10_000_000,
        # profiles added to (or replacing) :strict and :generous
        fuel_profiles: [strict: 500_000, batch: 1_000_000_000],
        # the bounds of :auto (and the ceiling of :adaptive)
        auto_fuel: [min: 10_000, max: 100_000_000],
        # when :adaptive trusts history, and how much room it leaves
        adaptive_fuel: [min_samples: 20, quantile: 0.99, headroom: 2.0, min: 1_000]

  `:auto` and `:adaptive` cannot be profile names, and the `:default` profile
  is set with `:default_fuel`.

  ## `:auto`: the formula

  A static look at a module cannot tell how long it runs (that is the halting
  problem), so `:auto` is a ceiling that fits the shape of the code, then held
  between the configured bounds. It reads `Munition.Module`'s `:stats`, computed
  once when the module is compiled and cached with it, so it costs a few
  multiplications per call:

      budget = clamp(instructions
                     + 1_000 * calls
                     + 10_000 * loops * 100 ^ (max_loop_depth - 1)
                     + 16_384 * memory_pages
                     + data_size,
                     min, max)

    * `instructions` - without loops or calls, each instruction runs at most
      once per call, so the instruction count is an exact ceiling for
      straight-line code (the start function's code included).
    * `1_000 * calls` - a call site can run its callee's body again (and
      recursion repeats it): each is given a thousand instructions of room.
    * `10_000 * loops * 100 ^ (depth - 1)` - each loop is budgeted as a thousand
      iterations of a ten-instruction body; each further level of nesting
      multiplies by 100 (inner loops run once per outer iteration, usually
      over shorter ranges). Only the deepest nesting is known, not which loops
      are nested, so every loop is charged at that depth: an over-estimate,
      which keeps legitimate calls alive; `:max` bounds a runaway.
    * `16_384 * memory_pages` - a guest usually touches the memory it declares:
      writing then reading a 64 KiB page eight bytes at a time.
    * `data_size` - a guest usually reads its data segments once, about one
      instruction per byte.

  Code size is not used (it measures what the instruction count measures, less
  precisely), nor the function count (a function runs only when an export or a
  call site reaches it, and both are counted). With the default bounds a
  straight-line module gets `10_000`, a loop `10_000` and more, a double loop
  about a million per loop, and triple nesting reaches `100_000_000`.

  ## `:adaptive`

  Once the meter has `:min_samples` successful calls of the module's function,
  the budget is the `:quantile` (p99 by default) of their fuel times
  `:headroom`, at least `:min` and at most the `:auto` maximum. Before that, or
  when the meter is not running, it is `:auto`. Only successful calls count: a
  call that ran out of fuel says nothing about what it needed. So if a
  function's work grows past the budget, its calls run out of fuel and the
  budget does not follow; give such calls an explicit budget for a while, or
  `Munition.Fuel.Meter.reset/0`.
  """

  alias Munition.Fuel.Meter

  @default_fuel 10_000_000
  @builtin_profiles %{strict: 1_000_000, generous: 100_000_000}
  @auto_defaults [min: 10_000, max: 100_000_000]
  @adaptive_defaults [min_samples: 20, quantile: 0.99, headroom: 2.0, min: 1_000]

  @doc """
  The default budget for a call: `config :munition, default_fuel: n`, else
  `10_000_000`.
  """
  @spec default_fuel() :: pos_integer()
  def default_fuel do
    case Application.get_env(:munition, :default_fuel, @default_fuel) do
      fuel when is_integer(fuel) and fuel > 0 ->
        fuel

      other ->
        raise ArgumentError,
              "config :munition, :default_fuel must be a positive integer, got: #{inspect(other)}"
    end
  end

  @doc """
  The profiles a call can name, with their budgets.

  ## Examples

      iex> Munition.Fuel.Policy.profiles()
      %{default: 10_000_000, generous: 100_000_000, strict: 1_000_000}
  """
  @spec profiles() :: %{atom() => pos_integer()}
  def profiles do
    configured = Application.get_env(:munition, :fuel_profiles, [])

    unless is_list(configured) or is_map(configured) do
      raise ArgumentError,
            "config :munition, :fuel_profiles must be a keyword list, got: #{inspect(configured)}"
    end

    Enum.each(configured, fn
      {name, _} when name in [:auto, :adaptive, :default] ->
        raise ArgumentError,
              "config :munition, :fuel_profiles cannot define #{inspect(name)}" <>
                if(name == :default, do: " (set :default_fuel instead)", else: " (it is a policy)")

      {name, fuel} when is_atom(name) and is_integer(fuel) and fuel > 0 ->
        :ok

      entry ->
        raise ArgumentError,
              "config :munition, :fuel_profiles entries must be name: positive_integer, got: #{inspect(entry)}"
    end)

    @builtin_profiles
    |> Map.merge(Map.new(configured))
    |> Map.put(:default, default_fuel())
  end

  @doc """
  Resolves the `:fuel` option of `Munition.fire/4` to a number of fuel units for
  calling `function` of `module`. Raises `ArgumentError` for a bad value.

  ## Examples

      iex> {:ok, module} = Munition.compile(~s{(module (func (export "f")))})
      iex> Munition.Fuel.Policy.resolve!(nil, module, "f")
      10_000_000
      iex> Munition.Fuel.Policy.resolve!(:strict, module, "f")
      1_000_000
      iex> Munition.Fuel.Policy.resolve!(:auto, module, "f")
      10_000
      iex> Munition.Fuel.Policy.resolve!(0, module, "f")
      ** (ArgumentError) fuel must be a positive integer (at most 2^63-1), a profile (:default, :generous, :strict), :auto or :adaptive, got: 0
  """
  # Wasmtime keeps fuel in a signed 64-bit counter.
  @max_fuel 0x7FFF_FFFF_FFFF_FFFF

  @spec resolve!(term(), Munition.Module.t(), String.t()) :: pos_integer()
  def resolve!(nil, _module, _function), do: default_fuel()
  def resolve!(fuel, _module, _function) when is_integer(fuel) and fuel > 0 and fuel <= @max_fuel, do: fuel
  def resolve!(:auto, module, _function), do: for_module(module)

  def resolve!(:adaptive, module, function) do
    case history_budget(module, function, adaptive_settings()) do
      {:ok, fuel} -> fuel
      :not_enough_history -> for_module(module)
    end
  end

  # `:adaptive` as prepare_adaptive/1 made it, for `Munition.Pool`.
  def resolve!({:adaptive, %{settings: settings, fallback: fallback}}, module, function) do
    case history_budget(module, function, settings) do
      {:ok, fuel} -> fuel
      :not_enough_history -> fallback
    end
  end

  def resolve!(name, _module, _function) when is_atom(name) do
    profiles = profiles()

    case Map.fetch(profiles, name) do
      {:ok, fuel} -> fuel
      :error -> bad_fuel!(name, profiles)
    end
  end

  def resolve!(other, _module, _function), do: bad_fuel!(other, profiles())

  @doc false
  # The shape of a fuel spec, checked with the other options before anything
  # is compiled or run (a profile against the configured profiles): the spec,
  # or ArgumentError as resolve!/3 raises it.
  @spec check!(term()) :: term()
  def check!(nil), do: nil
  def check!(fuel) when is_integer(fuel) and fuel > 0 and fuel <= @max_fuel, do: fuel
  def check!(spec) when spec in [:auto, :adaptive], do: spec

  def check!(name) when is_atom(name) do
    profiles = profiles()
    if Map.has_key?(profiles, name), do: name, else: bad_fuel!(name, profiles)
  end

  def check!(other), do: bad_fuel!(other, profiles())

  @spec bad_fuel!(term(), map()) :: no_return()
  defp bad_fuel!(value, profiles) do
    names = profiles |> Map.keys() |> Enum.sort() |> Enum.map_join(", ", &inspect/1)

    raise ArgumentError,
          "fuel must be a positive integer (at most 2^63-1), a profile (#{names}), :auto or :adaptive, " <>
            "got: #{inspect(value)}"
  end

  @doc """
  The `:auto` budget of `module`: the formula of the moduledoc, clamped to
  `config :munition, auto_fuel: [min: ..., max: ...]` (defaults `10_000` and
  `100_000_000`).

  ## Options

    * `:min` - the least budget. Defaults to the configured `:min`.
    * `:max` - the largest budget. Defaults to the configured `:max`.

  ## Examples

      iex> {:ok, straight} = Munition.compile(~s{(module (func (export "f") (result i32) i32.const 1))})
      iex> Munition.Fuel.Policy.for_module(straight)
      10_000
      iex> Munition.Fuel.Policy.for_module(straight, min: 1)
      2
  """
  @spec for_module(Munition.Module.t(), keyword()) :: pos_integer()
  def for_module(module, opts \\ [])

  def for_module(%Munition.Module{stats: stats}, opts) do
    opts = Keyword.validate!(opts, [:min, :max])
    bounds = auto_bounds()
    min = bound!(:min, Keyword.get(opts, :min, bounds[:min]))
    max = bound!(:max, Keyword.get(opts, :max, bounds[:max]))

    if min > max do
      raise ArgumentError, "auto fuel :min must not exceed :max, got: #{inspect(min: min, max: max)}"
    end

    stats |> estimate() |> max(min) |> min(max)
  end

  def for_module(other, _opts) do
    raise ArgumentError, "expected a %Munition.Module{} (see Munition.compile/2), got: #{inspect(other)}"
  end

  @doc """
  The unclamped `:auto` estimate for a module's `:stats` (see the moduledoc).

  ## Examples

      iex> Munition.Fuel.Policy.estimate(%{instruction_count: 40, call_count: 1, loop_count: 2,
      ...>   max_loop_depth: 2, memory_pages: 1, data_size: 10})
      40 + 1_000 + 2 * 10_000 * 100 + 16_384 + 10
  """
  @spec estimate(map()) :: non_neg_integer()
  def estimate(stats) when is_map(stats) do
    get = fn key -> stats |> Map.get(key, 0) |> non_neg() end
    loops = get.(:loop_count)
    depth = max(get.(:max_loop_depth), 1)

    get.(:instruction_count) +
      1_000 * get.(:call_count) +
      10_000 * loops * Integer.pow(100, depth - 1) +
      16_384 * get.(:memory_pages) +
      get.(:data_size)
  end

  defp non_neg(n) when is_integer(n) and n >= 0, do: n
  defp non_neg(_), do: 0

  @doc """
  The `:adaptive` budget of `function` of `module` from the meter's history:
  `{:ok, fuel}`, or `:not_enough_history` when the meter has fewer than
  `:min_samples` successful calls of it (or is not running).
  """
  @spec for_history(Munition.Module.t() | String.t(), String.t()) ::
          {:ok, pos_integer()} | :not_enough_history
  def for_history(module, function), do: history_budget(module, function, adaptive_settings())

  @doc false
  # `:adaptive` prepared for the calls of `module`: its settings read from
  # the application environment and checked, and its fallback (the module's
  # `:auto` budget) worked out, once. `Munition.Pool` does this when it
  # starts, so that its calls pay only for reading the history (reading and
  # checking the settings was half of resolving `:adaptive`, 0.7 of 1.5 µs).
  # resolve!/3 takes what it returns.
  @spec prepare_adaptive(Munition.Module.t()) :: {:adaptive, map()}
  def prepare_adaptive(module),
    do: {:adaptive, %{settings: adaptive_settings(), fallback: for_module(module)}}

  defp history_budget(module, function, settings) do
    case Meter.successful_fuel(module, function, settings.quantile) do
      {samples, fuel} when samples >= settings.min_samples and is_integer(fuel) ->
        {:ok, ceil(fuel * settings.headroom) |> max(settings.min) |> min(settings.max)}

      _ ->
        :not_enough_history
    end
  end

  # The configured :adaptive settings, checked; `max` is the ceiling, :auto's
  # (or the floor, if that is higher).
  defp adaptive_settings do
    opts = adaptive_opts()

    %{
      min_samples: opts[:min_samples],
      quantile: opts[:quantile],
      headroom: opts[:headroom],
      min: opts[:min],
      max: max(auto_bounds()[:max], opts[:min])
    }
  end

  defp auto_bounds do
    configured = Application.get_env(:munition, :auto_fuel, [])
    opts = Keyword.merge(@auto_defaults, configured)
    [min: bound!(:min, opts[:min]), max: bound!(:max, opts[:max])]
  end

  defp bound!(_name, value) when is_integer(value) and value > 0, do: value

  defp bound!(name, value) do
    raise ArgumentError, "auto fuel #{inspect(name)} must be a positive integer, got: #{inspect(value)}"
  end

  defp adaptive_opts do
    opts = Keyword.merge(@adaptive_defaults, Application.get_env(:munition, :adaptive_fuel, []))

    valid? =
      Enum.all?(opts, fn
        {:min_samples, n} -> is_integer(n) and n > 0
        {:quantile, q} -> is_number(q) and q > 0 and q <= 1
        {:headroom, h} -> is_number(h) and h > 0
        {:min, m} -> is_integer(m) and m > 0
        _ -> false
      end)

    unless valid? do
      raise ArgumentError,
            "config :munition, :adaptive_fuel takes min_samples (a positive integer), quantile (0 < q <= 1), " <>
              "headroom (> 0) and min (a positive integer), got: #{inspect(opts)}"
    end

    opts
  end
end

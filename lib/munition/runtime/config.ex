defmodule Munition.Runtime.Config do
  @moduledoc """
  Munition's configuration from the application environment, and what the
  engine can do.

  Keys under `config :munition`:

    * `:runtime` - the `Munition.Runtime` of calls that name none. Defaults to
      `Munition.Runtime.Wasmtime`.
    * `:module_cache_size` - compiled modules kept, least recently used evicted.
      Defaults to `128`; `0` disables the cache.
    * `:default_timeout` - milliseconds. Defaults to `5_000`.
    * `:default_max_memory` - bytes. Defaults to `67_108_864` (64 MiB).
    * `:log_limit` - bytes of guest log lines kept per call. Defaults to `65_536`.
    * `:forward_guest_logs` - when `true`, guest log lines (capability `:log`)
      are also sent to `Logger` after each call: level 0 as debug, 1 info,
      2 warning, 3 and above error. Defaults to `false`.
    * `:dump_dir` - when set, every crash's dump is written there (see `Munition.fire/4`).
    * Fuel budgets live under `Munition.Fuel.Policy`.
  """

  @doc """
  The `Munition.Runtime` used when a call names none (`config :munition, :runtime`).
  Defaults to `Munition.Runtime.Wasmtime`.
  """
  @spec runtime() :: module()
  def runtime, do: Application.get_env(:munition, :runtime, Munition.Runtime.Wasmtime)

  @doc "Compiled modules kept in the native cache."
  @spec module_cache_size() :: non_neg_integer()
  def module_cache_size, do: Application.get_env(:munition, :module_cache_size, 128)

  @doc "Default `:timeout` of `Munition.fire/4`, in milliseconds."
  @spec default_timeout() :: pos_integer()
  def default_timeout, do: Application.get_env(:munition, :default_timeout, 5_000)

  @doc "Default `:max_memory` of `Munition.fire/4`, in bytes."
  @spec default_max_memory() :: pos_integer()
  def default_max_memory, do: Application.get_env(:munition, :default_max_memory, 64 * 1024 * 1024)

  @doc "Bytes of guest log lines kept per call."
  @spec log_limit() :: non_neg_integer()
  def log_limit, do: Application.get_env(:munition, :log_limit, 65_536)

  @doc "Whether guest log lines are forwarded to `Logger`."
  @spec forward_guest_logs?() :: boolean()
  def forward_guest_logs?, do: Application.get_env(:munition, :forward_guest_logs, false) == true

  @doc "Default directory for crash dumps, or `nil`."
  @spec dump_dir() :: Path.t() | nil
  def dump_dir, do: Application.get_env(:munition, :dump_dir)

  @doc """
  What the engine of `runtime` (the configured one by default) offers, as its
  `c:Munition.Runtime.info/0` says: for Wasmtime `%{engine: :wasmtime,
  version: "48.0.8", features: [...]}` with features among `:fuel`, `:epochs`,
  `:pooling`, `:coredump`, `:fibers`.
  """
  @spec features(module()) :: map()
  def features(runtime \\ runtime()), do: runtime.info()

  @doc "Whether the engine of `runtime` (the configured one by default) has `feature`."
  @spec feature?(atom(), module()) :: boolean()
  def feature?(feature, runtime \\ runtime()), do: feature in features(runtime).features
end

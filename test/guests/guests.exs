defmodule Munition.Guests do
  @moduledoc false
  # The example guests of examples/guests/, built from source by
  # `make examples` into _build/guests/. Loaded by each test in test/guests/
  # with Code.require_file/2.

  @root Path.expand("../..", __DIR__)
  @dir Path.join(@root, "_build/guests")

  @doc """
  The path of a built guest, by its name under examples/guests/ without the
  extension (`"c/upper"`, `"zig/base64"`). Raises when it is not built.
  """
  @spec path!(String.t()) :: Path.t()
  def path!(name) do
    path = Path.join(@dir, name <> ".wasm")

    unless File.regular?(path) do
      raise """
      the example guest #{name} is not built (no #{Path.relative_to(path, @root)}).
      Run `make examples` (`make test` runs it): it installs the guests' toolchains
      when missing and builds every guest from examples/guests/.
      """
    end

    path
  end

  @doc "The bytes of a built guest (see `path!/1`)."
  @spec read!(String.t()) :: binary()
  def read!(name), do: name |> path!() |> File.read!()

  @doc "The `{module, name}` of each of the guest's imports, in order."
  @spec imports!(String.t()) :: [{String.t(), String.t()}]
  def imports!(name) do
    {:ok, module} = Munition.compile(read!(name))
    Enum.map(module.imports, &{&1.module, &1.name})
  end

  @doc "WASI imports, as `imports!/1` lists them."
  @spec wasi([String.t()]) :: [{String.t(), String.t()}]
  def wasi(names), do: Enum.map(names, &{"wasi_snapshot_preview1", &1})
end

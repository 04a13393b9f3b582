defmodule Munition.Tmp do
  @moduledoc false
  # Paths under the system's temporary directory for the tests.

  @doc """
  `<tmp>/munition-<name>-<OS pid>-<unique integer><ext>`, a path no other
  test of any VM has. The OS pid too: unique integers repeat from one VM to
  the next, and a VM that died in a test (a crash, a kill) left what the
  test had made there, which a later run must never find.
  """
  @spec path(String.t(), String.t()) :: String.t()
  def path(name, ext \\ ""),
    do:
      Path.join(
        System.tmp_dir!(),
        "munition-#{name}-#{System.pid()}-#{System.unique_integer([:positive])}#{ext}"
      )
end

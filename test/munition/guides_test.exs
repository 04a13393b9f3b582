defmodule Munition.GuidesTest do
  # Runs the Elixir of README.md and of every guide, so that what they show
  # is what Munition does.
  #
  # The rule (CONTRIBUTING.md says it too):
  #
  #   * a block fenced ```elixir runs: the blocks of one file in order, in one
  #     binding (a later block sees the variables of the earlier ones), each
  #     with Code.eval_string/3. A block asserts what it shows by matching
  #     (`{:ok, 5, _meta} = Munition.fire(...)`), so a wrong answer is a
  #     MatchError naming the file and line of the block;
  #   * Elixir that cannot run in a test (a `deps` entry, `config` lines, a
  #     call naming another node) is fenced ```elixir-norun; shell commands
  #     ```shell; output and pictures ```text. Nothing else is allowed, so a
  #     typo in a fence tag cannot quietly take a block out of this test.
  #
  # A block must not depend on timing or on the order of other tests: it
  # names its pools and registered functions after its guide and runs guests
  # whose bytes no other test uses where it reads the meter.
  use ExUnit.Case, async: false

  @root Path.expand("../..", __DIR__)

  @guides ~w(getting-started capabilities-and-wasi components forensics fuel pools-and-cluster
             snapshots engines performance limits)

  @files ["README.md" | Enum.map(@guides, &"guides/#{&1}.md")]

  @runs "elixir"
  @allowed_tags ["elixir", "elixir-norun", "shell", "text"]

  for file <- @files do
    @external_resource Path.join(@root, file)
  end

  test "every guide exists, and guides/ holds no other page" do
    assert Enum.sort(Path.wildcard(Path.join(@root, "guides/*.md"))) ==
             Enum.sort(Enum.map(@guides, &Path.join(@root, "guides/#{&1}.md")))
  end

  for file <- @files do
    test "#{file}: every fence is tagged with one of #{inspect(@allowed_tags)}" do
      for {tag, line, _code} <- blocks(unquote(file)) do
        assert tag in @allowed_tags,
               "#{unquote(file)}:#{line}: a block fenced ```#{tag}: use ```elixir to run it, " <>
                 "or one of #{inspect(@allowed_tags -- [@runs])}"
      end
    end

    test "#{file}: its Elixir blocks run and show what Munition returns" do
      unquote(file)
      |> blocks()
      |> Enum.filter(fn {tag, _line, _code} -> tag == @runs end)
      |> Enum.reduce([], fn {_tag, line, code}, binding -> run(unquote(file), line, code, binding) end)
    end
  end

  # {tag, line of the block's first line of code, code} for each fenced
  # block of `file`, in order. Fences are recognised at the start of a line.
  defp blocks(file) do
    file
    |> then(&Path.join(@root, &1))
    |> File.read!()
    |> String.split("\n")
    |> Enum.with_index(1)
    |> Enum.reduce({[], nil}, fn
      {"```" <> tag, number}, {blocks, nil} ->
        {blocks, {String.trim(tag), number + 1, []}}

      {"```" <> _, _number}, {blocks, {tag, first, lines}} ->
        {[{tag, first, lines |> Enum.reverse() |> Enum.join("\n")} | blocks], nil}

      {line, _number}, {blocks, {tag, first, lines}} ->
        {blocks, {tag, first, [line | lines]}}

      {_line, _number}, {blocks, nil} ->
        {blocks, nil}
    end)
    |> case do
      {blocks, nil} -> Enum.reverse(blocks)
      {_blocks, {_tag, first, _lines}} -> flunk("#{file}:#{first - 1}: a fence that is never closed")
    end
  end

  defp run(file, line, code, binding) do
    {_value, binding} = Code.eval_string(code, binding, file: Path.join(@root, file), line: line)
    binding
  rescue
    error ->
      flunk("""
      #{file}:#{line}: this block raised

      #{Exception.format(:error, error, __STACKTRACE__)}#{hint(error)}
      """)
  catch
    kind, reason ->
      flunk("#{file}:#{line}: this block ended with #{Exception.format(kind, reason, __STACKTRACE__)}")
  end

  defp hint(%File.Error{path: "_build/guests/" <> _}),
    do: "\nThe example guests are built by `make examples` (`make test` runs it first)."

  defp hint(_error), do: ""
end

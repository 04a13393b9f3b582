defmodule Munition.Test.Prop do
  @moduledoc false
  # Runs a PropEr property from ExUnit, deterministically.
  #
  # PropEr's macros (?FORALL, ?LET, ...) are Erlang header macros, so the
  # properties in test/property build their generators from :proper_types
  # functions and call :proper.quickcheck/2 themselves, in a function this
  # module is given: that keeps every call into PropEr out of the compiled
  # test support, which Dialyzer checks against a PLT without PropEr.
  #
  # Seeding: Debian's PropEr 1.2 has no `{seed, _}` option. It draws from the
  # calling process's `:rand` state, and seeds that state (from the clock)
  # only when the process has none. So `:rand` is seeded here first, from the
  # run's seed, and the same seed generates the same cases. Generators must
  # stay pure, and properties must not draw from `:rand` in the test process.

  # Debian's PropEr 1.2 calls erlang:get_stacktrace/0, which OTP 23 removed,
  # when a property raises: the run dies with UndefinedFunctionError instead of
  # reporting and shrinking the case. So every property body goes through
  # holds?/1, which turns an exception into `false` and keeps it for the
  # report.

  import ExUnit.Assertions

  @raised {__MODULE__, :raised}

  @doc """
  `fun.()` as a property's verdict: its boolean, or `false` when it raises,
  exits or throws (the exception is kept and reported by `check!/5`).
  """
  @spec holds?((() -> boolean())) :: boolean()
  def holds?(fun) do
    fun.() == true
  catch
    kind, reason ->
      Process.put(@raised, Exception.format(kind, reason, __STACKTRACE__))
      false
  end

  @note {__MODULE__, :note}

  @doc """
  Keeps `term` (what the case under test returned, say) for the report of a
  failure: PropEr runs the shrunk counterexample last, so the note a failure
  shows is that case's. Returns `term`.
  """
  @spec note(term()) :: term()
  def note(term) do
    Process.put(@note, term)
    term
  end

  @doc """
  Runs `run.(proper_options)` (a `:proper.quickcheck/2` call) with
  `numtests` tests from `seed`, and flunks with the counterexample and
  PropEr's output when the property fails. Returns `numtests`.

  `extra` adds PropEr options, such as `{:max_size, 20}`.
  """
  @spec check!(String.t(), non_neg_integer(), pos_integer(), (list() -> term()), list()) :: pos_integer()
  def check!(name, seed, numtests, run, extra \\ []) do
    parent = self()
    tag = make_ref()
    output = fn format, args -> send(parent, {tag, :io_lib.format(format, args)}) end

    Process.delete(@raised)
    Process.delete(@note)
    _ = :rand.seed(:exsplus, {seed + 1, seed + 2, seed + 3})
    result = run.([{:numtests, numtests}, {:on_output, output}, :long_result, :nocolors] ++ extra)
    printed = drain(tag, [])

    case result do
      true ->
        if Munition.Test.Fuzz.fuzz?() or System.get_env("MUNITION_PROP_VERBOSE") in ["1", "true"] do
          summary = printed |> String.split("\n", trim: true) |> Enum.reject(&(&1 =~ ~r/^\.*$/))
          IO.puts("\nproperty #{name} (seed #{seed}): #{Enum.join(summary, " ")}")
        end

        numtests

      {:error, reason} ->
        flunk("property #{name} (seed #{seed}) could not run: #{inspect(reason)}\n#{printed}")

      counterexample ->
        flunk("""
        property #{name} failed (seed #{seed}); shrunk counterexample:

        #{inspect(counterexample, limit: :infinity, printable_limit: 4096, pretty: true)}

        #{raised()}PropEr said:
        #{printed}
        """)
    end
  end

  defp raised do
    case Process.delete(@raised) do
      nil -> ""
      formatted -> "The last failing case raised:\n#{formatted}\n"
    end <>
      case Process.delete(@note) do
        nil -> ""
        note -> "The last case noted: #{inspect(note, limit: 50, printable_limit: 1024)}\n\n"
      end
  end

  defp drain(tag, acc) do
    receive do
      {^tag, chunk} -> drain(tag, [acc, chunk])
    after
      0 -> IO.iodata_to_binary(acc)
    end
  end
end

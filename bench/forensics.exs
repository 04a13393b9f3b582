# Benchmark of forensic capture and analysis (not a test): what a crash of a
# guest with 64 MiB of mostly-zero memory costs, and how fast the analyser
# scans it.
#
#     MIX_ENV=test mix run bench/forensics.exs
#
# The guest has `(memory 1024)` (64 MiB), writes a few bytes near its end and
# hits `unreachable`. Reported: fire/4 latency with `forensics: :full`,
# `:minimal` and `false` (the difference is the capture), the compression
# ratio, and the analyser's search/regions/strings over the 64 MiB.

Code.require_file("support/timing.exs", __DIR__)

defmodule ForensicsBench do
  alias Munition.Bench.Timing

  # Returns the median in microseconds, as the callers compare them.
  def time(label, n, fun) do
    times = Timing.sample(n, fun, 1)
    median = div(Timing.percentile(times, 0.5), 1000)

    IO.puts(
      String.pad_trailing(label, 58) <>
        "median #{fmt(median / 1000)} ms  max #{fmt(List.last(times) / 1_000_000)} ms"
    )

    median
  end

  defp fmt(ms), do: :erlang.float_to_binary(ms * 1.0, decimals: 2)
end

alias Munition.Forensics.{Analyser, Dump}

# The byte scans, as the analyser reaches them: forensics' own native scans.
alias Munition.Forensics.Memory

wat = ~S"""
(module
  (memory (export "memory") 1024)
  (data (i32.const 1024) "a few bytes of state")
  (func $crash (export "crash")
    (i64.store (i32.const 67000000) (i64.const 0x2121743372633373))
    unreachable))
"""

{:ok, module} = Munition.compile(wat)
opts = [max_memory: 128 * 1024 * 1024]
n = 20

IO.puts("fire/4 of a guest with 64 MiB of memory that traps (n=#{n}):")
full = ForensicsBench.time("  forensics: :full", n, fn -> Munition.fire(module, "crash", [], opts) end)

minimal =
  ForensicsBench.time("  forensics: :minimal", n, fn ->
    Munition.fire(module, "crash", [], [forensics: :minimal] ++ opts)
  end)

none =
  ForensicsBench.time("  forensics: false", n, fn ->
    Munition.fire(module, "crash", [], [forensics: false] ++ opts)
  end)

IO.puts(
  "  => capture cost: full #{(full - none) / 1000} ms, minimal #{(minimal - none) / 1000} ms (median difference)"
)

{:crash, :trap, dump} = Munition.fire(module, "crash", [], opts)
[memory] = dump.memories
ratio = memory.size / byte_size(memory.data)

IO.puts(
  "  => memory #{memory.size} bytes, compressed #{byte_size(memory.data)} bytes: #{Float.round(ratio, 1)}x smaller"
)

bytes = Dump.serialize(dump)
IO.puts("  => dump file #{byte_size(bytes)} bytes")

IO.puts("\nDump format and analyser over the 64 MiB memory (n=#{n}):")
ForensicsBench.time("  Dump.serialize/1", n, fn -> Dump.serialize(dump) end)
ForensicsBench.time("  Dump.deserialize/1", n, fn -> Dump.deserialize(bytes) end)
ForensicsBench.time("  Dump.memory/2 (decompress 64 MiB)", n, fn -> Dump.memory(dump) end)

{:ok, raw} = Dump.memory(dump)

ForensicsBench.time("  Memory.search/3 on the raw 64 MiB", n, fn ->
  Memory.search(raw, "s3cr3t!!", 100)
end)

ForensicsBench.time("  Memory.regions/3 on the raw 64 MiB", n, fn ->
  Memory.regions(raw, 16, 10_000)
end)

ForensicsBench.time("  Memory.strings/5 on the raw 64 MiB", n, fn ->
  Memory.strings(raw, 4, 4096, true, 10_000)
end)

ForensicsBench.time("  Analyser.search/2 (decompress + search)", n, fn ->
  Analyser.search(dump, "s3cr3t!!")
end)

ForensicsBench.time("  Analyser.search/2 with a Regex", n, fn -> Analyser.search(dump, ~r/s3cr3t!+/) end)
ForensicsBench.time("  Analyser.strings/2", n, fn -> Analyser.strings(dump) end)
ForensicsBench.time("  Analyser.summary/1", n, fn -> Analyser.summary(dump) end)
ForensicsBench.time("  Dump.to_coredump/1", n, fn -> Dump.to_coredump(dump) end)

# Random (incompressible) bytes: the worst case for search and strings.
noise = :crypto.strong_rand_bytes(64 * 1024 * 1024)

ForensicsBench.time("  Memory.search/3 on 64 MiB of random bytes", n, fn ->
  Memory.search(noise, "s3cr3t!!", 100)
end)

ForensicsBench.time("  Memory.strings/5 on 64 MiB of random bytes", 5, fn ->
  Memory.strings(noise, 4, 4096, true, 1_000_000)
end)

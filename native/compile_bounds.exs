# What compiling costs, for the modules that justify Munition's compile
# limits (see "Compile limits" in Munition.Runtime.Config): the worst modules
# the default limits accept, and compile bombs.
#
#     MIX_ENV=test mix run native/compile_bounds.exs          # every case, each in a fresh VM
#     MIX_ENV=test mix run native/compile_bounds.exs CASE     # one case
#
# For each case it prints the module's size, what `Munition.fire/4` with the
# default options returned and when, how long the compilation took to finish
# (in the background if the caller gave up), and the VM's resident memory
# (VmRSS) before and after, and at its peak (VmHWM, reset before the case).

defmodule CompileBounds do
  import Bitwise

  def leb(n) when n < 0x80, do: <<n>>
  def leb(n), do: <<(n &&& 0x7F) ||| 0x80>> <> leb(n >>> 7)
  def sleb(n) when n >= -64 and n < 64, do: <<n &&& 0x7F>>
  def sleb(n), do: <<(n &&& 0x7F) ||| 0x80>> <> sleb(n >>> 7)
  def vec(items), do: [leb(length(items)) | items]
  def name(string), do: [leb(byte_size(string)), string]

  def section(id, content) do
    content = IO.iodata_to_binary(content)
    [id, leb(byte_size(content)), content]
  end

  # `count` functions () -> () with `locals` i32 locals and `instructions`
  # (iodata, without the final `end`); the first exported as "f".
  def module(count, locals, instructions) do
    decls = if locals > 0, do: vec([[leb(locals), 0x7F]]), else: vec([])
    body = IO.iodata_to_binary([decls, instructions, 0x0B])

    IO.iodata_to_binary([
      <<0, "asm", 1, 0, 0, 0>>,
      section(1, vec([[0x60, 0, 0]])),
      section(3, vec(List.duplicate(0, count))),
      section(7, vec([[name("f"), 0, leb(0)]])),
      section(10, vec(List.duplicate([leb(byte_size(body)), body], count)))
    ])
  end

  # Straight-line code of `bytes` bytes: a chain of additions on local 0.
  def arithmetic(bytes), do: [[0x20, 0], List.duplicate([0x20, 0, 0x6A], div(bytes - 4, 3)), [0x21, 0]]

  # Code that keeps many values alive at once: `n` locals set, then all
  # summed.
  def live_locals(n) do
    sets = for i <- 0..(n - 1), do: [0x41, sleb(i), 0x21, leb(i)]
    gets = for i <- 0..(n - 1), do: [0x20, leb(i)]
    [sets, gets, List.duplicate(0x6A, n - 1), 0x1A]
  end

  @mib 1024 * 1024
  @limits Munition.Runtime.Config.default_limits()

  # name => {description, wasm, limits}
  def cases do
    %{
      "bomb" => {"200,000 empty functions (default limits)", fn -> module(200_000, 0, []) end, []},
      "bomb-unlimited" =>
        {"200,000 empty functions, functions limit raised to 200,000", fn -> module(200_000, 0, []) end,
         [functions: 200_000]},
      "locals-bomb-unlimited" =>
        {"1,000 functions declaring 50,000 locals each, locals limit raised",
         fn -> module(1_000, 50_000, []) end, [locals: 50_000_000]},
      "max-functions" =>
        {"10,000 functions of ~830 bytes of arithmetic (8 MiB, every default limit nearly reached)",
         fn -> module(10_000, 1, arithmetic(div(@limits[:module_size], 10_000) - 12)) end, []},
      "max-locals" =>
        {"10,000 functions declaring 100 locals each and using them all (1,000,000 locals)",
         fn -> module(10_000, 100, live_locals(100)) end, []},
      "max-function-size" =>
        {"7 functions of 1 MiB of arithmetic each (function_size limit)",
         fn -> module(7, 1, arithmetic(@mib - 16)) end, []},
      "max-live-locals" =>
        {"10 functions each keeping 50,000 locals alive (the wasm maximum per function)",
         fn -> module(10, 50_000, live_locals(50_000)) end, [locals: 500_000]}
    }
  end

  def rss do
    status = File.read!("/proc/self/status")

    kib = fn key ->
      String.to_integer(Regex.run(~r/#{key}:\s+(\d+)/, status, capture: :all_but_first) |> hd())
    end

    {kib.("VmRSS") * 1024, kib.("VmHWM") * 1024}
  end

  def mib(bytes), do: "#{Float.round(bytes / @mib, 1)} MiB"

  def await_idle do
    case Munition.Runtime.Wasmtime.compile_stats() do
      %{running: 0, queued: 0} ->
        :ok

      _ ->
        Process.sleep(10)
        await_idle()
    end
  end

  def run(name) do
    {description, build, limits} = Map.fetch!(cases(), name)
    wasm = build.()
    :erlang.garbage_collect()
    # Resets VmHWM to the current RSS.
    File.write!("/proc/self/clear_refs", "5")
    {rss_before, _} = rss()
    %{compilations: compiled_before} = Munition.Runtime.Wasmtime.cache_stats()

    started = System.monotonic_time(:millisecond)
    result = Munition.fire(wasm, "f", [], limits: limits)
    answered = System.monotonic_time(:millisecond) - started
    await_idle()
    finished = System.monotonic_time(:millisecond) - started
    %{compilations: compiled_after} = Munition.Runtime.Wasmtime.cache_stats()
    {rss_after, peak} = rss()

    shown =
      case result do
        {:ok, value, _meta} -> "{:ok, #{inspect(value)}, _}"
        other -> inspect(other, printable_limit: 120) |> String.slice(0, 160)
      end

    IO.puts("""
    #{name}: #{description}
      module:     #{byte_size(wasm)} bytes
      caller saw: #{shown} after #{answered} ms
      compiled:   #{if compiled_after > compiled_before, do: "in #{finished} ms", else: "no (refused)"}
      RSS:        #{mib(rss_before)} before, #{mib(rss_after)} after, #{mib(peak)} at the peak (+#{mib(peak - rss_before)})
    """)
  end
end

case System.argv() do
  [name] ->
    CompileBounds.run(name)

  [] ->
    {load, 0} = System.cmd("cat", ["/proc/loadavg"])
    IO.puts("#{System.schedulers_online()} schedulers, load average #{String.trim(load)}\n")

    for name <- Enum.sort(Map.keys(CompileBounds.cases())) do
      {out, _} = System.cmd("mix", ["run", __ENV__.file, name], stderr_to_stdout: true)
      IO.write(out)
    end
end

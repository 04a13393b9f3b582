defmodule Munition.CompileTest do
  # Compiling under bounds: limits checked by a pre-scan before anything is
  # compiled, compilation on Munition's own threads, and the caller's
  # deadline covering it. Not async: the slow compilations here load the CPU,
  # and each test waits for the ones it started before it ends.
  use ExUnit.Case, async: false
  import Munition.AppEnv
  import Bitwise

  alias Munition.Runtime.{Config, Wasmtime}

  doctest Munition.Runtime.Config

  ## Binary modules, built directly: WAT text for 10,000 functions would be
  ## slow to write and to parse.

  defp leb(n) when n < 0x80, do: <<n>>
  defp leb(n), do: <<(n &&& 0x7F) ||| 0x80>> <> leb(n >>> 7)
  defp vec(items), do: [leb(length(items)) | items]
  defp name(string), do: [leb(byte_size(string)), string]

  defp section(id, content) do
    content = IO.iodata_to_binary(content)
    [id, leb(byte_size(content)), content]
  end

  # `count` functions of type () -> (), each declaring `locals` i32 locals,
  # with an empty body; the first is exported as "f". `salt` makes the bytes
  # (and so the module's hash) unique; `pad` adds that many bytes in a custom
  # section (over 64 KiB, a module goes straight to the compile queue instead
  # of through the express thread).
  defp functions(count, opts \\ []) do
    locals = Keyword.get(opts, :locals, 0)
    salt = Keyword.get(opts, :salt, System.unique_integer([:positive]))
    pad = Keyword.get(opts, :pad, 0)
    local_decls = if locals > 0, do: vec([[leb(locals), 0x7F]]), else: vec([])
    body = IO.iodata_to_binary([local_decls, 0x0B])

    IO.iodata_to_binary([
      <<0, "asm", 1, 0, 0, 0>>,
      section(1, vec([[0x60, 0, 0]])),
      section(3, vec(List.duplicate(0, count))),
      section(7, vec([[name("f"), 0, leb(0)]])),
      section(10, vec(List.duplicate([leb(byte_size(body)), body], count))),
      section(0, [name("salt"), Integer.to_string(salt), :binary.copy(<<0>>, pad)])
    ])
  end

  # Compilations take about 0.1 ms per function here (0.03 ms on a fast
  # machine): 4,000 take 0.1-0.4 s, far longer than the short timeouts below.
  @slow 4_000
  @slow_limits [functions: @slow]

  # Waits until no compilation is running or queued, so the next test does
  # not share the CPU with this one's leftovers.
  defp await_idle(deadline \\ System.monotonic_time(:millisecond) + 120_000) do
    case Wasmtime.compile_stats() do
      %{running: 0, queued: 0} ->
        :ok

      stats ->
        if System.monotonic_time(:millisecond) > deadline,
          do: flunk("compilations still busy: #{inspect(stats)}")

        # The compile threads send nothing when they go idle: poll.
        receive do
        after
          20 -> await_idle(deadline)
        end
    end
  end

  setup do
    on_exit(fn -> await_idle() end)
  end

  describe "limits" do
    # One module and the option that puts it over each limit.
    @over [
      module_size: {~s{(module (func (export "f")))}, 10},
      functions: {~s{(module (func) (func))}, 1},
      function_size: {~s{(module (func nop nop nop nop nop nop nop nop))}, 5},
      locals: {~s{(module (func (local i32 i64)) (func (local f32)))}, 2},
      globals: {~s{(module (global i32 (i32.const 0)) (global i32 (i32.const 0)))}, 1},
      data_segments: {~s{(module (memory 1) (data (i32.const 0) "a") (data (i32.const 8) "b"))}, 1},
      data_size: {~s{(module (memory 1) (data (i32.const 0) "hello"))}, 4},
      table_elements: {~s{(module (table 50 funcref))}, 49},
      imports: {~s{(module (import "a" "b" (func)) (import "a" "c" (func)))}, 1},
      exports: {~s{(module (func (export "f")) (func (export "g")))}, 1}
    ]

    test "a module over each limit is refused with the limit and the value named" do
      for {limit, {wat, max}} <- @over do
        assert {:error, {:module_limit, message}} = Munition.compile(wat, limits: [{limit, max}]),
               "#{limit}: compiled"

        assert message =~
                 ~r/^#{limit}: .*, over the limit of #{max} \(raise it with limits: \[#{limit}: n\]\)$/

        # Raised, it passes.
        assert {:ok, _} = Munition.compile(wat, limits: [{limit, max * 100}]), "#{limit}"
      end
    end

    test "fire/4 and validate/2 take limits too" do
      wat = ~s{(module (func (export "f") (result i32) i32.const 1) (func))}

      assert {:error, {:module_limit, "functions: " <> _}} =
               Munition.fire(wat, "f", [], limits: [functions: 1])

      assert {:error, {:module_limit, _}} = Munition.validate(wat, limits: [functions: 1])
      assert {:ok, 1, _} = Munition.fire(wat, "f", [], limits: [functions: 2])
      assert :ok = Munition.validate(wat, limits: [functions: 2])
    end

    test "the defaults refuse the 200,000-function bomb without compiling it" do
      bomb = functions(200_000)
      %{compilations: compilations} = Wasmtime.cache_stats()

      assert {:error, {:module_limit, message}} = Munition.fire(bomb, "f", [], timeout: 100)
      assert message =~ "functions: the module defines 200000 functions, over the limit of 10000"
      assert %{compilations: ^compilations} = Wasmtime.cache_stats()
      assert %{running: 0} = Wasmtime.compile_stats()
    end

    test "so do they the locals bomb: few bytes, millions of locals" do
      # 1,000 functions declaring 50,000 locals each: 8 KB, 7 s to compile.
      assert {:error, {:module_limit, "locals: " <> _}} = Munition.compile(functions(1_000, locals: 50_000))
    end

    test "limits come from the application environment, under the options" do
      put_env(:limits, functions: 1)
      wat = ~s{(module (func) (func))}
      assert {:error, {:module_limit, "functions: " <> _}} = Munition.compile(wat)
      assert {:ok, _} = Munition.compile(wat, limits: [functions: 2])
      assert Config.limits!().functions == 1
      assert Config.limits!(functions: 5).functions == 5
      assert Config.limits!().module_size == Config.default_limits()[:module_size]
    end

    test "a cached module is held to the caller's limits" do
      wat =
        ~s{(module (func (export "f")) (func) (func) (global i64 (i64.const #{System.unique_integer([:positive])})))}

      assert {:ok, _} = Munition.compile(wat)
      assert {:error, {:module_limit, "functions: " <> _}} = Munition.compile(wat, limits: [functions: 2])

      assert {:error, {:module_limit, "module_size: " <> _}} =
               Munition.compile(wat, limits: [module_size: 10])

      assert {:error, {:module_limit, _}} = Munition.fire(wat, "f", [], limits: [globals: 0])
    end

    test "a module over a limit is refused before it is validated" do
      # Invalid (an i64 where an i32 is declared) and over the function limit.
      wat = ~s{(module (func (result i32) i64.const 0) (func))}
      assert {:error, {:module_limit, _}} = Munition.compile(wat, limits: [functions: 1])
      assert {:error, {:invalid_module, _}} = Munition.compile(wat)
    end

    test "limits that are not limits are the caller's mistake" do
      wat = ~s{(module)}

      assert_raise ArgumentError, ~r/unknown limit :function/, fn ->
        Munition.compile(wat, limits: [function: 1])
      end

      assert_raise ArgumentError, ~r/functions must be a non-negative integer/, fn ->
        Munition.compile(wat, limits: [functions: -1])
      end

      assert_raise ArgumentError, ~r/table_elements must be an integer 0..100000/, fn ->
        Munition.fire(wat, "f", [], limits: [table_elements: 200_000])
      end

      assert_raise ArgumentError, ~r/keyword list/, fn -> Munition.compile(wat, limits: 5) end
      assert_raise ArgumentError, ~r/timeout/, fn -> Munition.compile(wat, timeout: 0) end
    end
  end

  describe "deadlines" do
    test "a compilation that outlives the call's timeout is {:error, {:timeout, _}}, and lands in the cache" do
      slow = functions(@slow)

      assert {:error, {:timeout, message}} = Munition.fire(slow, "f", [], timeout: 20, limits: @slow_limits)
      assert message =~ "compiling the module did not finish within 20 ms: nothing ran"
      {:messages, []} = Process.info(self(), :messages)

      # It went on in the background: once done, a retry is a cache hit.
      await_idle()
      %{compilations: compilations} = Wasmtime.cache_stats()
      assert {:ok, nil, _meta} = Munition.fire(slow, "f", [], timeout: 20, limits: @slow_limits)
      assert %{compilations: ^compilations} = Wasmtime.cache_stats()
    end

    test "compile/2 and validate/2 wait at most :timeout" do
      slow = functions(@slow)
      assert {:error, {:timeout, _}} = Munition.compile(slow, timeout: 10, limits: @slow_limits)
      assert {:error, {:timeout, _}} = Munition.validate(slow, timeout: 10, limits: @slow_limits)
      assert {:ok, %Munition.Module{}} = Munition.compile(slow, timeout: 120_000, limits: @slow_limits)
    end

    test ":compile_timeout bounds compiling alone, for compile/2, validate/2 and fire/4" do
      slow = functions(@slow)
      assert {:error, {:timeout, _}} = Munition.compile(slow, compile_timeout: 10, limits: @slow_limits)
      assert {:error, {:timeout, _}} = Munition.validate(slow, compile_timeout: 10, limits: @slow_limits)

      assert {:error, {:timeout, message}} =
               Munition.fire(slow, "f", [], compile_timeout: 10, timeout: 60_000, limits: @slow_limits)

      assert message =~ "compiling the module did not finish within 10 ms: nothing ran"
      await_idle()
    end

    test "callers of the same bytes share one compilation" do
      slow = functions(@slow)
      %{compilations: before} = Wasmtime.cache_stats()

      results =
        1..3
        |> Enum.map(fn _ ->
          Task.async(fn -> Munition.compile(slow, timeout: 120_000, limits: @slow_limits) end)
        end)
        |> Enum.map(&Task.await(&1, 130_000))

      assert [{:ok, %{hash: hash}}, {:ok, %{hash: hash}}, {:ok, %{hash: hash}}] = results
      assert %{compilations: after_} = Wasmtime.cache_stats()
      assert after_ - before == 1
    end

    test "a compilation still queued when its only caller gives up is dropped" do
      # Every compile thread busy with a slow module, one more queued behind
      # (all over 64 KiB: straight to the queue, not through the express thread).
      threads = Wasmtime.info().max_concurrent_compiles

      busy =
        for _ <- 1..threads do
          slow = functions(@slow, pad: 70_000)
          Task.async(fn -> Munition.compile(slow, timeout: 120_000, limits: @slow_limits) end)
        end

      await_running(threads)
      queued = functions(@slow, pad: 70_000)
      assert {:error, {:timeout, message}} = Munition.compile(queued, timeout: 50, limits: @slow_limits)

      assert message =~ "was dropped"
      assert %{queued: 0} = Wasmtime.compile_stats()
      for task <- busy, do: assert({:ok, _} = Task.await(task, 130_000))
    end
  end

  # A runtime that tells the test how long it was asked to wait for a
  # compilation: the process compiling, or the test registered as
  # :timed_compile_test (a pool compiles in its own process).
  defmodule TimedCompile do
    use Munition.DelegatingRuntime

    @impl true
    def compile(bytes, opts) do
      send(Process.whereis(:timed_compile_test) || self(), {:compile_timeout, opts[:timeout]})
      Munition.Runtime.Wasmtime.compile(bytes, opts)
    end
  end

  describe "the :timeout and :compile_timeout options" do
    @wat ~s{(module (func (export "f")))}

    defp waited(fun) do
      fun.()
      assert_received {:compile_timeout, ms}
      ms
    end

    test ":timeout is the whole call's, everywhere; :compile_timeout bounds compiling within it" do
      # fire/4: compiling gets the whole timeout, or its own bound within it.
      assert waited(fn -> Munition.fire(@wat, "f", [], runtime: TimedCompile) end) == 5_000
      assert waited(fn -> Munition.fire(@wat, "f", [], runtime: TimedCompile, timeout: 900) end) == 900

      assert waited(fn -> Munition.fire(@wat, "f", [], runtime: TimedCompile, compile_timeout: 200) end) ==
               200

      assert waited(fn ->
               Munition.fire(@wat, "f", [], runtime: TimedCompile, compile_timeout: 2_000, timeout: 300)
             end) == 300

      # compile/2 and validate/2: the call is the compilation.
      for call <- [&Munition.compile/2, &Munition.validate/2] do
        assert waited(fn -> call.(@wat, runtime: TimedCompile) end) == 30_000
        assert waited(fn -> call.(@wat, runtime: TimedCompile, compile_timeout: 700) end) == 700
        assert waited(fn -> call.(@wat, runtime: TimedCompile, timeout: 60_000) end) == 60_000
        assert waited(fn -> call.(@wat, runtime: TimedCompile, timeout: 400, compile_timeout: 700) end) == 400
      end

      put_env(:compile_timeout, 1_234)
      assert waited(fn -> Munition.compile(@wat, runtime: TimedCompile) end) == 1_234
      # fire/4's compile is bounded by its :timeout, not the configured compile timeout.
      assert waited(fn -> Munition.fire(@wat, "f", [], runtime: TimedCompile) end) == 5_000
    end

    test "a pool compiles under its :compile_timeout, which its calls cannot change" do
      name = :"timed_compile_#{System.unique_integer([:positive])}"

      Process.register(self(), :timed_compile_test)

      {:ok, pool} =
        Munition.Pool.start_link(
          name: name,
          wasm: @wat,
          runtime: TimedCompile,
          compile_timeout: 750,
          timeout: 50
        )

      assert_received {:compile_timeout, 750}
      assert {:ok, nil, _} = Munition.fire_pooled(name, "f", [])

      assert_raise ArgumentError, ~r/are fixed when the pool starts/, fn ->
        Munition.fire_pooled(name, "f", [], compile_timeout: 10)
      end

      GenServer.stop(pool)
    end

    test "a :compile_timeout that is not one is the caller's mistake, named" do
      for bad <- [0, -1, "10", 86_400_001] do
        message = "compile_timeout must be a positive integer of at most 86400000 ms, got: #{inspect(bad)}"
        assert_raise ArgumentError, message, fn -> Munition.compile(@wat, compile_timeout: bad) end
        assert_raise ArgumentError, message, fn -> Munition.fire(@wat, "f", [], compile_timeout: bad) end
        assert_raise ArgumentError, message, fn -> Munition.validate(@wat, compile_timeout: bad) end
      end
    end
  end

  describe "off the schedulers" do
    test "while compile bombs compile, calls of cached modules and new small modules complete" do
      cached = ~s{(module (func (export "spin") (param i32) (result i32)
        (local i32) (loop (local.set 1 (i32.add (local.get 1) (i32.const 1)))
        (br_if 0 (i32.lt_u (local.get 1) (local.get 0)))) (local.get 1)))}

      {:ok, module} = Munition.compile(cached)
      threads = Wasmtime.info().max_concurrent_compiles

      # More bombs than compile threads: some compile, the others queue.
      bombs =
        for _ <- 1..(threads + 1) do
          bomb = functions(@slow, pad: 70_000)
          Task.async(fn -> Munition.compile(bomb, timeout: 120_000, limits: @slow_limits) end)
        end

      await_running(threads)

      for _ <- 1..10 do
        assert {:ok, 10_000, _} = Munition.fire(cached, "spin", [10_000])
        assert {:ok, 10_000, _} = Munition.fire(module, "spin", [10_000])
      end

      # A module never seen before is small: it does not wait behind the bombs.
      fresh = ~s{(module (func (export "f") (result i32) i32.const #{System.unique_integer([:positive])}))}
      assert {:ok, _, _} = Munition.fire(fresh, "f", [])

      # Nor does a module over a limit: it is refused before it is queued.
      assert {:error, {:module_limit, "functions: " <> _}} =
               Munition.compile(functions(@slow), limits: [functions: 10], timeout: 1_000)

      for bomb <- bombs, do: assert({:ok, _} = Task.await(bomb, 130_000))
    end
  end

  defp await_running(count, deadline \\ System.monotonic_time(:millisecond) + 60_000) do
    cond do
      Wasmtime.compile_stats().running >= count ->
        :ok

      System.monotonic_time(:millisecond) > deadline ->
        flunk("compilations never started: #{inspect(Wasmtime.compile_stats())}")

      true ->
        receive do
        after
          5 -> await_running(count, deadline)
        end
    end
  end
end

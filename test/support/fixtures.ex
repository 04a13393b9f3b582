defmodule Munition.Fixtures do
  @moduledoc false
  # Guests shared by several test modules.

  @doc """
  A guest whose `f(n)` runs its loop `n` times: exactly 4 + 8 * n fuel, and
  whose `boom()` traps. `tag` makes the bytes (and so the module hash)
  distinct per test.
  """
  def counter_wat(tag) do
    ~s{(module (; #{tag} ;) (func (export "f") (param i32)
      (block (loop
        (br_if 1 (i32.eqz (local.get 0)))
        (local.set 0 (i32.sub (local.get 0) (i32.const 1)))
        (br 0))))
      (func (export "boom") unreachable))}
  end

  @doc "A guest of the `:log` built-in: `twice`, `flood`, `then_trap`, `wild` (a range outside memory)."
  def log_wat do
    """
    (module
      (import "munition" "log" (func $log (param i32 i32 i32)))
      (memory (export "memory") 1)
      (data (i32.const 0) "hello from the guest")
      (func (export "twice") (call $log (i32.const 1) (i32.const 0) (i32.const 5)) (call $log (i32.const 3) (i32.const 11) (i32.const 9)))
      (func (export "flood") (local $i i32)
        (loop $again
          (call $log (i32.const 0) (i32.const 0) (i32.const 20))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $again (i32.lt_u (local.get $i) (i32.const 10000)))))
      (func (export "then_trap") (call $log (i32.const 2) (i32.const 0) (i32.const 5)) unreachable)
      (func (export "wild") (call $log (i32.const 1) (i32.const 65530) (i32.const 100))))
    """
  end

  @doc "A guest of the `:random` built-ins: `two` numbers, `fill(ptr, len)` returning the range."
  def random_wat do
    """
    (module
      (import "munition" "get_random" (func $random (result i64)))
      (import "munition" "random_bytes" (func $fill (param i32 i32)))
      (memory (export "memory") 1)
      (func (export "two") (result i64 i64) call $random call $random)
      (func (export "fill") (param $ptr i32) (param $len i32) (result i32 i32)
        (call $fill (local.get $ptr) (local.get $len)) (local.get $ptr) (local.get $len)))
    """
  end

  @doc "A guest calling AssemblyScript's `abort` (\"boom!\" at a.ts:12:3) from `run`."
  def abort_wat do
    """
    (module
      (import "env" "abort" (func $abort (param i32 i32 i32 i32)))
      (memory (export "memory") 1)
      (data (i32.const 60) "\\0a\\00\\00\\00b\\00o\\00o\\00m\\00!\\00")
      (data (i32.const 96) "\\08\\00\\00\\00a\\00.\\00t\\00s\\00")
      (func $assert_positive (export "run") (call $abort (i32.const 64) (i32.const 100) (i32.const 12) (i32.const 3))))
    """
  end

  @doc "`run(n)` sums `env.lookup(i)` for i below n: an Elixir host function called n times."
  def sum_lookups_wat do
    """
    (module
      (import "env" "lookup" (func $lookup (param i32) (result i32)))
      (func (export "run") (param $n i32) (result i32) (local $i i32) (local $sum i32)
        (block $done
          (loop $next
            (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
            (local.set $sum (i32.add (local.get $sum) (call $lookup (local.get $i))))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $next)))
        (local.get $sum)))
    """
  end

  @doc """
  A plugin in two shapes, the same exports either way, for what must hold
  for core modules and components alike (pools, swaps, other nodes):

    * `run(x)` returns `twice(x) + version`, `twice` being an import served
      by an Elixir host function (`twice_function/2`);
    * `version()` returns `version`, calling nothing;
    * `boom()` traps (`unreachable`), `spin()` loops forever.

  `kind` is `:module` (a core module; `twice` is `my.twice`, i32) or
  `:component` (a component; `twice` is `my:host/api.twice`, u32, and
  `greet(name)` returns the string it is given, through the component's
  memory). `tag` makes the bytes (and so the module hash) distinct.
  """
  def plugin_wat(kind, version, tag \\ 0)

  def plugin_wat(:module, version, tag) do
    """
    (module (; #{tag} ;)
      (import "my" "twice" (func $twice (param i32) (result i32)))
      (func (export "run") (param i32) (result i32) (i32.add (call $twice (local.get 0)) (i32.const #{version})))
      (func (export "version") (result i32) (i32.const #{version}))
      (func (export "boom") unreachable)
      (func (export "spin") (loop br 0)))
    """
  end

  def plugin_wat(:component, version, tag) do
    """
    (component (; #{tag} ;)
      (import "my:host/api" (instance $h (export "twice" (func (param "x" u32) (result u32)))))
      (core func $twice (canon lower (func $h "twice")))
      (core module $m
        (import "host" "twice" (func $twice (param i32) (result i32)))
        (memory (export "memory") 1)
        (global $bump (mut i32) (i32.const 1024))
        (func (export "realloc") (param i32 i32 i32 i32) (result i32)
          (global.set $bump (i32.add (global.get $bump) (local.get 3)))
          (i32.sub (global.get $bump) (local.get 3)))
        (func (export "run") (param i32) (result i32) (i32.add (call $twice (local.get 0)) (i32.const #{version})))
        (func (export "version") (result i32) (i32.const #{version}))
        (func (export "greet") (param i32 i32) (result i32)
          (i32.store (i32.const 0) (local.get 0))
          (i32.store (i32.const 4) (local.get 1))
          (i32.const 0))
        (func (export "boom") unreachable)
        (func (export "spin") (loop br 0)))
      (core instance $i (instantiate $m (with "host" (instance (export "twice" (func $twice))))))
      (func (export "run") (param "x" u32) (result u32) (canon lift (core func $i "run")))
      (func (export "version") (result u32) (canon lift (core func $i "version")))
      (func (export "greet") (param "name" string) (result string)
        (canon lift (core func $i "greet") (memory (core memory $i "memory")) (realloc (core func $i "realloc"))))
      (func (export "boom") (canon lift (core func $i "boom")))
      (func (export "spin") (canon lift (core func $i "spin")))
    )
    """
  end

  @doc """
  The host function of `plugin_wat/3`'s `twice` import for `kind`, under the
  capability `:twice`: `fun.(x)` gives its result.
  """
  def twice_function(:module, fun), do: {"my", "twice", {[:i32], [:i32]}, :twice, fn _ctx, x -> fun.(x) end}
  def twice_function(:component, fun), do: {"my:host/api", "twice", :wit, :twice, fn _ctx, x -> fun.(x) end}
end

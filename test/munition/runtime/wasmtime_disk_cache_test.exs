defmodule Munition.Runtime.WasmtimeDiskCacheTest do
  # Compiled code on disk (`:compile_cache_dir`, see Munition.Runtime.Config),
  # of core modules and components: what is loaded, what is refused, and
  # what the counters of Wasmtime.cache_stats/0 say. The counters and the in-memory module cache
  # are node-wide, so this module runs alone. Every test compiles bytes no
  # other test compiles (a unique constant), into a directory of its own.
  use ExUnit.Case, async: false
  import Bitwise
  import Munition.AppEnv

  alias Munition.Runtime.Wasmtime

  setup do
    # A compilation an earlier test left running in the background (one
    # whose caller timed out) would land in the counts: wait for none.
    Munition.Sync.until(fn -> match?(%{running: 0, queued: 0}, Wasmtime.compile_stats()) end)
    root = Munition.Tmp.path("disk-cache")

    on_exit(fn -> File.rm_rf!(root) end)
    # A directory that does not exist yet: the first write creates it.
    %{dir: Path.join(root, "code")}
  end

  defp guest do
    n = System.unique_integer([:positive])
    {~s{(module (func (export "f") (result i32) i32.const #{n}))}, n}
  end

  defp disk, do: Wasmtime.cache_stats().disk
  # Core modules' and components' compilations together.
  defp compilations do
    stats = Wasmtime.cache_stats()
    stats.compilations + stats.components.compilations
  end

  # What changed in the counters while `fun` ran.
  defp counted(fun) do
    {disk, compilations} = {disk(), compilations()}
    result = fun.()
    now = disk()
    counts = Map.new([:hits, :misses, :rejected, :written, :write_failed], &{&1, now[&1] - disk[&1]})
    {result, Map.put(counts, :compilations, compilations() - compilations)}
  end

  defp nothing, do: %{hits: 0, misses: 0, rejected: 0, written: 0, write_failed: 0, compilations: 0}

  # Compiles `bytes` with the cache directory and no in-memory cache (as a
  # restarted node would): every call goes to the compile thread.
  defp compile(bytes, dir), do: Wasmtime.compile(bytes, cache_size: 0, compile_cache_dir: dir)

  defp only_file(dir) do
    assert [file] = File.ls!(dir)
    Path.join(dir, file)
  end

  defp mode(path), do: File.stat!(path).mode &&& 0o777

  # A cache file ends with its 84-byte trailer (`munition_core::code_cache`).
  defp trailer(path) do
    bytes = File.read!(path)
    binary_part(bytes, byte_size(bytes) - 84, 84)
  end

  # Signed LEB128, as `i32.const` takes its operand.
  defp sleb(n) do
    byte = n &&& 0x7F
    rest = n >>> 7

    if (rest == 0 and (byte &&& 0x40) == 0) or (rest == -1 and (byte &&& 0x40) != 0),
      do: <<byte>>,
      else: <<byte ||| 0x80>> <> sleb(rest)
  end

  # Flips a byte of the file at `path` (see `replace!/2`).
  defp flip_byte(path, at) do
    bytes = File.read!(path)
    <<before::binary-size(at), byte, rest::binary>> = bytes
    replace!(path, <<before::binary, bxor(byte, 0x55), rest::binary>>)
  end

  # Puts `bytes` at `path` as another file, owner-only as Munition writes
  # them, renamed over it. Never through the file that is there: a module
  # loaded from it has its code mapped from that file, and Wasmtime reads
  # it until the module is dropped (its unwind information too, at the
  # drop): a file truncated or rewritten under a loaded module is a SIGBUS
  # or worse, which a test once caused (see "Compiled code on disk" in
  # Munition.Runtime.Config).
  defp replace!(path, bytes) do
    temporary = path <> ".test-#{System.unique_integer([:positive])}"
    File.write!(temporary, bytes)
    File.chmod!(temporary, 0o600)
    File.rename!(temporary, path)
  end

  describe "compile/2 with a cache directory" do
    test "writes the code owner-only, then loads it instead of compiling, and the module runs", %{dir: dir} do
      {wat, n} = guest()

      assert {{:ok, compiled}, counts} = counted(fn -> compile(wat, dir) end)
      assert counts == %{nothing() | misses: 1, written: 1, compilations: 1}

      file = only_file(dir)
      assert Path.basename(file) =~ ~r/\A[0-9a-f]{64}\.code\z/
      assert mode(dir) == 0o700
      assert mode(file) == 0o600
      assert <<"MUNCODE", 0, 3::little-32, _::binary>> = trailer(file)

      assert {{:ok, loaded}, counts} = counted(fn -> compile(wat, dir) end)
      assert counts == %{nothing() | hits: 1}
      assert loaded.hash == compiled.hash
      assert loaded.exports == compiled.exports
      assert loaded.stats == compiled.stats
      assert {:ok, ^n, _meta} = Munition.fire(loaded, "f", [])
    end

    test "with the application setting, a module the in-memory cache forgot comes from the disk", %{dir: dir} do
      put_env(:compile_cache_dir, dir)
      {wat, n} = guest()

      assert {{:ok, ^n, _}, counts} = counted(fn -> Munition.fire(wat, "f", []) end)
      assert counts == %{nothing() | misses: 1, written: 1, compilations: 1}

      :ok = Munition.Native.module_cache_clear()

      assert {{:ok, ^n, _}, counts} = counted(fn -> Munition.fire(wat, "f", []) end)
      assert counts == %{nothing() | hits: 1}
    end

    test "is keyed by the wasm compiled: WAT text and its binary share one file", %{dir: dir} do
      {wat, n} = guest()
      # The same module in binary, as the WAT parser writes it: a type
      # [] -> [i32], one function, its export "f", and `i32.const n; end`.
      body = <<0, 0x41>> <> sleb(n) <> <<0x0B>>

      wasm =
        <<0, "asm", 1, 0, 0, 0>> <>
          <<1, 5, 1, 0x60, 0, 1, 0x7F>> <>
          <<3, 2, 1, 0>> <>
          <<7, 5, 1, 1, "f", 0, 0>> <> <<10, byte_size(body) + 2, 1, byte_size(body)>> <> body

      assert {:ok, _} = compile(wat, dir)
      assert {{:ok, from_binary}, counts} = counted(fn -> compile(wasm, dir) end)
      assert counts == %{nothing() | hits: 1}
      assert {:ok, ^n, _} = Munition.fire(from_binary, "f", [])
    end

    test "a module from the disk is checked against the caller's limits as a compiled one", %{dir: dir} do
      {wat, _} = guest()
      assert {:ok, _} = compile(wat, dir)

      assert {{:error, {:module_limit, message}}, counts} =
               counted(fn ->
                 Wasmtime.compile(wat, cache_size: 0, compile_cache_dir: dir, limits: [functions: 0])
               end)

      assert counts == nothing()

      assert message =~ "functions"
    end

    test "compile_cache_dir: nil keeps nothing on disk", %{dir: dir} do
      {wat, _} = guest()
      assert {{:ok, _}, counts} = counted(fn -> compile(wat, nil) end)
      assert counts == %{nothing() | compilations: 1}
      refute File.exists?(dir)
    end
  end

  describe "files that are not loaded" do
    test "a flipped byte, in the code or its trailer: refused, compiled, written again", %{dir: dir} do
      {wat, n} = guest()
      {:ok, _} = compile(wat, dir)
      file = only_file(dir)
      trailer = File.stat!(file).size - 84

      # The first and the last byte of code; the trailer's key, length, digest.
      for {at, why} <- [
            {0, "BLAKE3 digest"},
            {trailer - 1, "BLAKE3 digest"},
            {trailer + 20, "another key"},
            {trailer + 46, "truncated or extended"},
            {trailer + 60, "BLAKE3 digest"}
          ] do
        flip_byte(file, at)

        assert {{:ok, module}, counts} = counted(fn -> compile(wat, dir) end)
        assert counts == %{nothing() | rejected: 1, written: 1, compilations: 1}

        assert disk().last_problem =~ why
        assert disk().last_problem =~ file
        assert {:ok, ^n, _} = Munition.fire(module, "f", [])
        # Written again whole: the next compile loads it.
        assert {{:ok, _}, counts} = counted(fn -> compile(wat, dir) end)
        assert counts == %{nothing() | hits: 1}
      end
    end

    test "a truncated file: refused, compiled, written again", %{dir: dir} do
      {wat, _} = guest()
      {:ok, _} = compile(wat, dir)
      file = only_file(dir)
      bytes = File.read!(file)

      # Shorter than a trailer, or cut so that its end is not one.
      for {keep, why} <- [
            {0, "truncated"},
            {10, "truncated"},
            {84, "not the magic"},
            {byte_size(bytes) - 1, "not the magic"}
          ] do
        replace!(file, binary_part(bytes, 0, keep))

        assert {{:ok, _}, counts} = counted(fn -> compile(wat, dir) end)
        assert counts == %{nothing() | rejected: 1, written: 1, compilations: 1}

        assert disk().last_problem =~ why
        assert File.read!(file) |> byte_size() == byte_size(bytes)
      end
    end

    test "another module's file under this module's name: refused", %{dir: dir} do
      {wat, _} = guest()
      {other, _} = guest()
      {:ok, _} = compile(other, dir)
      others = only_file(dir)
      {:ok, _} = compile(wat, dir)
      [mine] = File.ls!(dir) -- [Path.basename(others)]
      replace!(Path.join(dir, mine), File.read!(others))

      assert {{:ok, _}, counts} = counted(fn -> compile(wat, dir) end)
      assert counts == %{nothing() | rejected: 1, written: 1, compilations: 1}

      assert disk().last_problem =~ "is for another key"
    end

    test "a file writable by group or others: refused, and replaced by a private one", %{dir: dir} do
      {wat, _} = guest()
      {:ok, _} = compile(wat, dir)
      file = only_file(dir)

      for writable <- [0o620, 0o602] do
        File.chmod!(file, writable)

        assert {{:ok, _}, counts} = counted(fn -> compile(wat, dir) end)
        assert counts == %{nothing() | rejected: 1, written: 1, compilations: 1}

        assert disk().last_problem =~ "the file is writable by group or others"
        assert mode(file) == 0o600
      end
    end

    test "a directory writable by group or others: nothing loaded from it or written to it", %{dir: dir} do
      {wat, _} = guest()
      {:ok, _} = compile(wat, dir)
      File.chmod!(dir, 0o770)

      assert {{:ok, _}, counts} = counted(fn -> compile(wat, dir) end)
      assert counts == %{nothing() | rejected: 1, write_failed: 1, compilations: 1}

      assert disk().last_problem =~ "the directory is writable by group or others (mode 0770)"

      {other, _} = guest()

      assert {{:ok, _}, counts} = counted(fn -> compile(other, dir) end)
      assert counts == %{nothing() | write_failed: 1, compilations: 1, rejected: 1}

      assert length(File.ls!(dir)) == 1
    end

    test "a symbolic link to a good file: refused", %{dir: dir} do
      {wat, _} = guest()
      {:ok, _} = compile(wat, dir)
      file = only_file(dir)
      elsewhere = Path.join(Path.dirname(dir), "elsewhere.code")
      File.rename!(file, elsewhere)
      File.ln_s!(elsewhere, file)

      assert {{:ok, _}, counts} = counted(fn -> compile(wat, dir) end)
      assert counts == %{nothing() | rejected: 1, written: 1, compilations: 1}

      assert disk().last_problem =~ "not a regular file"
    end

    @tag :root
    test "another user's file or directory: refused; the file is replaced by this user's", %{dir: dir} do
      {wat, _} = guest()
      {:ok, _} = compile(wat, dir)
      file = only_file(dir)
      File.chown!(file, 65534)

      assert {{:ok, _}, counts} = counted(fn -> compile(wat, dir) end)
      assert counts == %{nothing() | rejected: 1, written: 1, compilations: 1}

      assert disk().last_problem =~ "the file is owned by uid 65534"
      assert File.stat!(file).uid != 65534

      File.chown!(dir, 65534)

      assert {{:ok, _}, counts} = counted(fn -> compile(wat, dir) end)
      assert counts == %{nothing() | rejected: 1, write_failed: 1, compilations: 1}

      assert disk().last_problem =~ "the directory is owned by uid 65534"
    end
  end

  # A component whose export `f` returns a constant no other test uses
  # (`double`: twice it, through the host function `host_double/0`).
  defp component do
    n = System.unique_integer([:positive])

    wat = """
    (component
      (import "test:disk/host" (instance $host
        (export "double" (func (param "x" u32) (result u32)))))
      (alias export $host "double" (func $double))
      (core func $double_lowered (canon lower (func $double)))
      (core instance $imports (export "double" (func $double_lowered)))
      (core module $m
        (import "host" "double" (func $double (param i32) (result i32)))
        (func (export "f") (result i32) i32.const #{n})
        (func (export "double") (result i32) (call $double (i32.const #{n}))))
      (core instance $i (instantiate $m (with "host" (instance $imports))))
      (func (export "f") (result u32) (canon lift (core func $i "f")))
      (func (export "double") (result u32) (canon lift (core func $i "double"))))
    """

    {wat, n}
  end

  defp host_double, do: {"test:disk/host", "double", :wit, :double, fn _ctx, x -> 2 * x end}

  defp fire_component(module, function) do
    Munition.fire(module, function, [], capabilities: [:double], host_functions: [host_double()])
  end

  describe "components" do
    test "written owner-only, then loaded instead of compiled, linked and listed as compiled; it runs",
         %{dir: dir} do
      {wat, n} = component()

      assert {{:ok, compiled}, counts} = counted(fn -> Wasmtime.compile(wat, compile_cache_dir: dir) end)

      assert counts == %{nothing() | misses: 1, written: 1, compilations: 1}
      assert compiled.kind == :component
      file = only_file(dir)
      assert mode(file) == 0o600
      assert <<"MUNCODE", 0, 3::little-32, _::binary>> = trailer(file)

      # As on a restarted node: the in-memory cache has forgotten it.
      :ok = Munition.Native.module_cache_clear()

      assert {{:ok, loaded}, counts} = counted(fn -> Wasmtime.compile(wat, compile_cache_dir: dir) end)

      assert counts == %{nothing() | hits: 1}
      assert loaded.kind == :component
      assert loaded.hash == compiled.hash
      assert loaded.imports == compiled.imports
      assert loaded.exports == compiled.exports
      assert loaded.stats == compiled.stats
      assert {:ok, ^n, _} = fire_component(loaded, "f")
      # Its import is linked on the loaded component, to an Elixir function.
      doubled = 2 * n
      assert {:ok, ^doubled, _} = fire_component(loaded, "double")
    end

    test "with the application setting, fire/4 writes a component's code and a restarted cache loads it",
         %{dir: dir} do
      put_env(:compile_cache_dir, dir)
      {wat, n} = component()

      assert {{:ok, ^n, _}, counts} = counted(fn -> fire_component(wat, "f") end)
      assert counts == %{nothing() | misses: 1, written: 1, compilations: 1}

      :ok = Munition.Native.module_cache_clear()

      assert {{:ok, ^n, _}, counts} = counted(fn -> fire_component(wat, "f") end)
      assert counts == %{nothing() | hits: 1}
    end

    test "a flipped byte in a component's file: refused, compiled, written again", %{dir: dir} do
      {wat, n} = component()
      {:ok, _} = compile(wat, dir)
      file = only_file(dir)
      size = File.stat!(file).size

      for {at, why} <- [{0, "BLAKE3 digest"}, {size - 84 + 20, "another key"}, {size - 1, "BLAKE3 digest"}] do
        flip_byte(file, at)

        assert {{:ok, module}, counts} = counted(fn -> compile(wat, dir) end)
        assert counts == %{nothing() | rejected: 1, written: 1, compilations: 1}

        assert disk().last_problem =~ why
        assert disk().last_problem =~ file
        assert {:ok, ^n, _} = fire_component(module, "f")

        assert {{:ok, _}, counts} = counted(fn -> compile(wat, dir) end)
        assert counts == %{nothing() | hits: 1}
      end
    end

    test "a core module's file is never taken for a component's: each kind has keys of its own",
         %{dir: dir} do
      {module_wat, _} = guest()
      {wat, n} = component()
      {:ok, _} = compile(module_wat, dir)
      module_file = only_file(dir)
      {:ok, _} = compile(wat, dir)
      [component_name] = File.ls!(dir) -- [Path.basename(module_file)]
      File.cp!(module_file, Path.join(dir, component_name))

      assert {{:ok, component}, counts} = counted(fn -> compile(wat, dir) end)
      assert counts == %{nothing() | rejected: 1, written: 1, compilations: 1}

      assert disk().last_problem =~ "is for another key"
      assert {:ok, ^n, _} = fire_component(component, "f")
      # And the module's file still serves the module.
      assert {{:ok, _}, counts} = counted(fn -> compile(module_wat, dir) end)
      assert counts == %{nothing() | hits: 1}
    end
  end

  describe "the setting" do
    test "is off by default: compiling writes nothing and reads nothing" do
      assert Munition.Runtime.Config.compile_cache_dir() == nil
      {wat, n} = guest()

      assert {{:ok, ^n, _}, counts} = counted(fn -> Munition.fire(wat, "f", []) end)
      assert counts == %{nothing() | compilations: 1}
    end

    test "is expanded to an absolute path, and anything but a path or nil is refused" do
      put_env(:compile_cache_dir, "relative/code")
      assert Munition.Runtime.Config.compile_cache_dir() == Path.expand("relative/code")

      for bad <- ["", ~c"/var/cache", :dir] do
        put_env(:compile_cache_dir, bad)

        assert_raise ArgumentError,
                     ~r/compile_cache_dir: must be .* got: #{Regex.escape(inspect(bad))}/,
                     fn ->
                       Munition.Runtime.Config.compile_cache_dir()
                     end
      end

      assert_raise ArgumentError, ~r/:compile_cache_dir must be/, fn ->
        Wasmtime.compile("(module)", compile_cache_dir: 42)
      end
    end
  end

  test "cache_stats/0 reports the disk under :disk" do
    assert %{disk: %{hits: _, misses: _, rejected: _, written: _, write_failed: _, last_problem: _} = disk} =
             Wasmtime.cache_stats()

    assert map_size(disk) == 6
  end
end

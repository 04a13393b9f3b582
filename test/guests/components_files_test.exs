Code.require_file("guests.exs", __DIR__)

defmodule Munition.Guests.ComponentsFilesTest do
  # Files for components (WASI 0.2's wasi:filesystem): files_c
  # (examples/guests/components/files, C stdio through wasi-libc and the
  # WASI adapter) reads and writes the paths it is given. A temporary
  # directory is its only preopen: readable with `:wasi_fs`, writable only
  # when marked `:read_write` and `:wasi_fs_write` is granted too, absent
  # without `:wasi_fs`, and nothing outside it in reach by `..`, an absolute
  # path or a symlink.
  use ExUnit.Case, async: false

  import Munition.Guests, only: [read!: 1]

  setup_all do
    {:ok, module} = Munition.compile(read!("components/files_c"), compile_timeout: 600_000)
    %{module: module}
  end

  setup %{module: module} do
    dir = Munition.Tmp.path("files-test")

    File.mkdir_p!(dir)
    on_exit(fn -> File.rm_rf!(dir) end)
    File.write!(Path.join(dir, "hello.txt"), "hello from the host\n")
    %{module: module, dir: dir}
  end

  defp fire(module, function, args, capabilities, preopen) do
    Munition.fire(module, function, args,
      capabilities: capabilities,
      wasi: [preopens: [preopen]],
      fuel: 100_000_000
    )
  end

  test "with :wasi_fs the guest reads a file under its preopen", %{module: module, dir: dir} do
    assert {:ok, {:ok, "hello from the host\n"}, meta} =
             fire(module, "read", ["/data/hello.txt"], [:wasi, :wasi_fs], {"/data", dir})

    assert meta.inert_links == []

    assert {:ok, {:error, "No such file or directory"}, _meta} =
             fire(module, "read", ["/data/missing.txt"], [:wasi, :wasi_fs], {"/data", dir})
  end

  test "a read-only preopen refuses writes and the host's files stay as they were",
       %{module: module, dir: dir} do
    hello = Path.join(dir, "hello.txt")

    assert {:ok, {:error, "Operation not permitted"}, _meta} =
             fire(module, "write", ["/data/hello.txt", "overwritten"], [:wasi, :wasi_fs], {"/data", dir})

    assert {:ok, {:error, "Operation not permitted"}, _meta} =
             fire(module, "write", ["/data/new.txt", "created"], [:wasi, :wasi_fs], {"/data", dir})

    assert File.read!(hello) == "hello from the host\n"
    refute File.exists?(Path.join(dir, "new.txt"))
  end

  test "a :read_write preopen with :wasi_fs_write granted takes writes", %{module: module, dir: dir} do
    capabilities = [:wasi, :wasi_fs, :wasi_fs_write]

    assert {:ok, :ok, _meta} =
             fire(
               module,
               "write",
               ["/data/new.txt", "written by the guest"],
               capabilities,
               {"/data", dir, :read_write}
             )

    assert File.read!(Path.join(dir, "new.txt")) == "written by the guest"

    assert {:ok, {:ok, "written by the guest"}, _meta} =
             fire(module, "read", ["/data/new.txt"], capabilities, {"/data", dir, :read_write})
  end

  test "a :read_write preopen without :wasi_fs_write is read-only", %{module: module, dir: dir} do
    preopen = {"/data", dir, :read_write}

    assert {:ok, {:error, "Operation not permitted"}, _meta} =
             fire(module, "write", ["/data/hello.txt", "overwritten"], [:wasi, :wasi_fs], preopen)

    assert {:ok, {:error, "Operation not permitted"}, _meta} =
             fire(module, "write", ["/data/new.txt", "created"], [:wasi, :wasi_fs], preopen)

    assert File.read!(Path.join(dir, "hello.txt")) == "hello from the host\n"
    refute File.exists?(Path.join(dir, "new.txt"))

    assert {:ok, {:ok, "hello from the host\n"}, _meta} =
             fire(module, "read", ["/data/hello.txt"], [:wasi, :wasi_fs], preopen)
  end

  test "without :wasi_fs no preopen reaches the guest, and the audit trail says why",
       %{module: module, dir: dir} do
    for preopen <- [{"/data", dir}, {"/data", dir, :read_write}] do
      # wasi-libc finds no preopen for the path: ENOTCAPABLE.
      assert {:ok, {:error, "Capabilities insufficient"}, meta} =
               fire(module, "read", ["/data/hello.txt"], [:wasi], preopen)

      assert %{
               module: "wasi:filesystem/preopens@0.2.12",
               name: "get-directories",
               needs: :wasi_fs,
               reason: :no_preopen
             } in meta.inert_links

      assert Enum.any?(meta.inert_links, &match?(%{module: "wasi:filesystem/types@0.2.12"}, &1))
      assert Enum.all?(meta.inert_links, &(&1.reason == :no_preopen))
    end

    assert {:ok, {:error, "Capabilities insufficient"}, _meta} =
             fire(
               module,
               "write",
               ["/data/new.txt", "created"],
               [:wasi, :wasi_fs_write],
               {"/data", dir, :read_write}
             )

    refute File.exists?(Path.join(dir, "new.txt"))
  end

  test "no path leads out of the preopen: .., an absolute host path, a symlink",
       %{module: module, dir: dir} do
    # A file beside the preopen, which every path below aims at.
    outside = dir <> "-outside"
    File.mkdir_p!(outside)
    on_exit(fn -> File.rm_rf!(outside) end)
    secret = Path.join(outside, "secret.txt")
    File.write!(secret, "outside the preopen")
    :ok = File.ln_s(secret, Path.join(dir, "link.txt"))
    :ok = File.ln_s(outside, Path.join(dir, "link_dir"))

    capabilities = [:wasi, :wasi_fs, :wasi_fs_write]
    preopen = {"/data", dir, :read_write}
    name = Path.basename(outside)

    # Wasmtime refuses what resolves out of the preopen (EPERM); wasi-libc
    # finds no preopen for a path outside "/data" (ENOTCAPABLE).
    for {path, reason} <- [
          {"/data/../#{name}/secret.txt", "Operation not permitted"},
          {"/data/../../../../../../..#{secret}", "Operation not permitted"},
          {"/data/link.txt", "Operation not permitted"},
          {"/data/link_dir/secret.txt", "Operation not permitted"},
          {"/data/../etc/passwd", "Operation not permitted"},
          {secret, "Capabilities insufficient"},
          {"/etc/passwd", "Capabilities insufficient"}
        ] do
      assert {:ok, {:error, ^reason}, _meta} = fire(module, "read", [path], capabilities, preopen),
             "read #{path}"

      assert {:ok, {:error, ^reason}, _meta} =
               fire(module, "write", [path, "escaped"], capabilities, preopen),
             "write #{path}"
    end

    assert File.read!(secret) == "outside the preopen"
    assert File.ls!(outside) == ["secret.txt"]
    refute File.exists?(Path.join(Path.dirname(dir), "secret.txt"))
  end
end

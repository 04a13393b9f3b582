defmodule Munition.PrecompiledTest do
  # How the NIF reaches priv/native (native/build.exs, loaded by mix.exs):
  # choosing precompiled or source, fetching over HTTP and file:// (loopback
  # only), verifying, caching. `make consumer` compiles a dependent with no
  # cargo on its PATH from an artifact that `mix munition.native.package` built.
  use ExUnit.Case, async: false

  alias Munition.NativeBuild

  @version "0.1.0"

  setup do
    tmp = Munition.Tmp.path("precompiled")

    File.mkdir_p!(tmp)

    on_exit(fn ->
      Application.delete_env(:munition, :native_base_url)
      File.rm_rf!(tmp)
    end)

    artifact = NativeBuild.artifact_name(@version, NativeBuild.nif_version(), NativeBuild.target())
    lib_name = String.replace_suffix(artifact, ".tar.gz", "")
    bytes = NativeBuild.pack("not really a library", lib_name)
    served = Path.join(tmp, "served")
    File.mkdir_p!(served)
    File.write!(Path.join(served, artifact), bytes)

    %{
      artifact: artifact,
      lib_name: lib_name,
      bytes: bytes,
      checksum: NativeBuild.checksum(bytes),
      served: served,
      tmp_dir: tmp,
      cache: Path.join(tmp, "cache")
    }
  end

  describe "names (rustler_precompiled's)" do
    test "an artifact names the version, the NIF version and the target" do
      assert NativeBuild.artifact_name("0.1.0", "2.16", "x86_64-unknown-linux-gnu") ==
               "libmunition_native-v0.1.0-nif-2.16-x86_64-unknown-linux-gnu.so.tar.gz"

      assert NativeBuild.checksum_file_name() == "checksum-Elixir.Munition.Native.exs"
    end

    test "targets from Erlang's system architecture" do
      assert NativeBuild.target_from_architecture("x86_64-pc-linux-gnu") == "x86_64-unknown-linux-gnu"
      assert NativeBuild.target_from_architecture("aarch64-unknown-linux-gnu") == "aarch64-unknown-linux-gnu"
      assert NativeBuild.target_from_architecture("x86_64-pc-linux-musl") == "x86_64-unknown-linux-musl"
      assert NativeBuild.target_from_architecture("aarch64-apple-darwin23.4.0") == "aarch64-apple-darwin"
      assert NativeBuild.target_from_architecture("x86_64-apple-darwin21.6.0") == "x86_64-apple-darwin"
    end

    test "a checksum file written and read back", %{tmp_dir: tmp} do
      assert NativeBuild.read_checksums(tmp) == %{}

      sums = %{
        "b.tar.gz" => "sha256:" <> String.duplicate("2", 64),
        "a.tar.gz" => "sha256:" <> String.duplicate("1", 64)
      }

      NativeBuild.write_checksums(tmp, sums)
      assert NativeBuild.read_checksums(tmp) == sums
    end

    test "a malformed checksum file is a Mix error naming it", %{tmp_dir: tmp} do
      path = Path.join(tmp, NativeBuild.checksum_file_name())

      for content <- [~s(%{"a.tar.gz" => :oops}), ~s(%{"a.tar.gz" => "sha256:01"}), "[1, 2]", "%{"] do
        File.write!(path, content)

        assert_raise Mix.Error, ~r/checksum-Elixir.Munition.Native.exs/, fn ->
          NativeBuild.read_checksums(tmp)
        end
      end
    end

    test "the repository's checksum file is well formed (empty until a release fills it)" do
      assert is_map(NativeBuild.read_checksums(File.cwd!()))
    end

    test "the artifact with the highest NIF version the VM loads, for its target" do
      names =
        for nif <- ~w(2.15 2.16 2.17 3.0),
            target <- ~w(x86_64-unknown-linux-gnu aarch64-apple-darwin),
            do: NativeBuild.artifact_name("0.1.0", nif, target)

      pick = &NativeBuild.loadable(names, "0.1.0", &1, &2)
      assert pick.("x86_64-unknown-linux-gnu", "2.16") =~ "-nif-2.16-x86_64-unknown-linux-gnu"
      assert pick.("x86_64-unknown-linux-gnu", "2.17") =~ "-nif-2.17-x86_64-unknown-linux-gnu"
      assert pick.("aarch64-apple-darwin", "2.99") =~ "-nif-2.17-aarch64-apple-darwin"
      assert pick.("x86_64-unknown-linux-gnu", "2.14") == nil
      assert NativeBuild.loadable(names, "0.2.0", "x86_64-unknown-linux-gnu", "2.16") == nil
    end

    test "an artifact's URL is appended to the base URL's path, its query kept" do
      assert NativeBuild.artifact_url("https://h.example/r/v0.1.0/", "a.tar.gz") ==
               "https://h.example/r/v0.1.0/a.tar.gz"

      assert NativeBuild.artifact_url("https://h.example/r?sig=1", "a.tar.gz") ==
               "https://h.example/r/a.tar.gz?sig=1"

      assert NativeBuild.artifact_url("file:///srv/nifs", "a.tar.gz") == "file:///srv/nifs/a.tar.gz"
      assert NativeBuild.artifact_url("file:///", "a.tar.gz") == "file:///a.tar.gz"
    end
  end

  describe "plan/3" do
    setup %{tmp_dir: tmp, artifact: artifact, checksum: checksum} do
      NativeBuild.write_checksums(tmp, %{artifact => checksum})
      :ok
    end

    test "precompiled when the package lists this target and a base URL is set", ctx do
      env = %{"MUNITION_NATIVE_BASE_URL" => "file://#{ctx.served}/"}

      assert NativeBuild.plan(ctx.tmp_dir, @version, env) ==
               {:precompiled, ctx.artifact, ctx.checksum, "file://#{ctx.served}/"}
    end

    test "the base URL from the application environment", ctx do
      Application.put_env(:munition, :native_base_url, "https://example.invalid/releases")

      assert {:precompiled, _, _, "https://example.invalid/releases"} =
               NativeBuild.plan(ctx.tmp_dir, @version, %{})
    end

    test "from source, saying why, with MUNITION_BUILD, no base URL, or no artifact", ctx do
      url = %{"MUNITION_NATIVE_BASE_URL" => "file:///nowhere"}

      assert {:source, "MUNITION_BUILD is set"} =
               NativeBuild.plan(ctx.tmp_dir, @version, Map.put(url, "MUNITION_BUILD", "1"))

      assert {:source, "no base URL" <> _} = NativeBuild.plan(ctx.tmp_dir, @version, %{})

      assert {:source, "the package lists no precompiled NIF for " <> why} =
               NativeBuild.plan(ctx.tmp_dir, "9.9.9", url)

      assert why =~ "libmunition_native-v9.9.9"

      assert why =~ NativeBuild.target()
    end

    test "a base URL of another scheme, or a relative file:// one, is the caller's mistake, named", ctx do
      for url <- ["ftp://host", "file://relative/dir", "nifs/"] do
        assert_raise Mix.Error, ~r/#{Regex.escape(url)}/, fn ->
          NativeBuild.plan(ctx.tmp_dir, @version, %{"MUNITION_NATIVE_BASE_URL" => url})
        end
      end
    end

    test "MUNITION_BUILD wins: nothing else is read", ctx do
      File.write!(Path.join(ctx.tmp_dir, NativeBuild.checksum_file_name()), "%{")

      assert {:source, "MUNITION_BUILD is set"} =
               NativeBuild.plan(ctx.tmp_dir, @version, %{
                 "MUNITION_BUILD" => "1",
                 "MUNITION_NATIVE_BASE_URL" => "ftp://host"
               })
    end
  end

  describe "fetch_verified/4" do
    test "over HTTP from an :inets server on loopback, then from the cache", ctx do
      {server, base_url} = serve(ctx.served, ctx.tmp_dir)
      assert {:ok, bytes} = NativeBuild.fetch_verified(ctx.artifact, ctx.checksum, base_url, ctx.cache)
      assert bytes == ctx.bytes
      assert NativeBuild.unpack(bytes, ctx.lib_name) == "not really a library"

      # The server gone, the cached copy (checksum verified again) serves.
      :ok = :inets.stop(:httpd, server)
      assert {:ok, ^bytes} = NativeBuild.fetch_verified(ctx.artifact, ctx.checksum, base_url, ctx.cache)
    end

    test "from a file:// URL", ctx do
      assert {:ok, bytes} =
               NativeBuild.fetch_verified(ctx.artifact, ctx.checksum, "file://#{ctx.served}", ctx.cache)

      assert bytes == ctx.bytes
      assert File.read!(Path.join(ctx.cache, ctx.artifact)) == ctx.bytes
    end

    test "a tampered artifact is refused, naming both checksums, and never cached", ctx do
      {server, base_url} = serve(ctx.served, ctx.tmp_dir)
      tampered = NativeBuild.pack("a library someone else built", ctx.lib_name)
      File.write!(Path.join(ctx.served, ctx.artifact), tampered)

      for url <- [base_url, "file://#{ctx.served}"] do
        error =
          assert_raise Mix.Error, fn ->
            NativeBuild.fetch_verified(ctx.artifact, ctx.checksum, url, ctx.cache)
          end

        assert error.message =~ ctx.checksum
        assert error.message =~ NativeBuild.checksum(tampered)
        assert error.message =~ "refusing to load it"
      end

      refute File.exists?(Path.join(ctx.cache, ctx.artifact))
      :ok = :inets.stop(:httpd, server)
    end

    test "a corrupted cached copy is fetched again", ctx do
      File.mkdir_p!(ctx.cache)
      File.write!(Path.join(ctx.cache, ctx.artifact), "corrupted")

      assert {:ok, bytes} =
               NativeBuild.fetch_verified(ctx.artifact, ctx.checksum, "file://#{ctx.served}", ctx.cache)

      assert bytes == ctx.bytes
      assert File.read!(Path.join(ctx.cache, ctx.artifact)) == ctx.bytes
    end

    test "a missing artifact is an error saying where it was looked for", ctx do
      {server, base_url} = serve(ctx.served, ctx.tmp_dir)
      File.rm!(Path.join(ctx.served, ctx.artifact))

      assert {:error, {:fetch, message}} =
               NativeBuild.fetch_verified(ctx.artifact, ctx.checksum, base_url, ctx.cache)

      assert message =~ "#{base_url}/#{ctx.artifact}: HTTP 404"

      assert {:error, {:fetch, message}} =
               NativeBuild.fetch_verified(ctx.artifact, ctx.checksum, "file://#{ctx.served}", ctx.cache)

      assert message =~ "#{ctx.served}/#{ctx.artifact}: no such file"
      :ok = :inets.stop(:httpd, server)
    end
  end

  test "the glibc versions a library needs, read from its bytes" do
    assert NativeBuild.glibc_needed("..GLIBC_2.2.5..GLIBC_2.17..GLIBC_2.14..") == "2.17"
    assert NativeBuild.glibc_needed("GLIBC_2.34 GLIBC_2.9") == "2.34"
    assert NativeBuild.glibc_needed("no versions here") == nil
  end

  defp serve(dir, tmp) do
    {:ok, _} = Application.ensure_all_started(:inets)
    root = Path.join(tmp, "httpd")
    File.mkdir_p!(root)

    {:ok, server} =
      :inets.start(:httpd,
        port: 0,
        bind_address: {127, 0, 0, 1},
        server_name: ~c"munition-test",
        server_root: String.to_charlist(root),
        document_root: String.to_charlist(dir),
        modules: [:mod_get, :mod_head]
      )

    port = Keyword.fetch!(:httpd.info(server), :port)
    {server, "http://127.0.0.1:#{port}"}
  end
end

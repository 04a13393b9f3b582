# How Munition's NIF reaches priv/native: built from source by cargo, or a
# precompiled artifact fetched, checked against the checksum file shipped in the
# package, and cached. mix.exs loads this file, so all of it exists before
# anything of the project is compiled, both in this repository and when
# Munition is a dependency (hex.pm and rustler_precompiled are not needed).
#
# Artifact and checksum names are rustler_precompiled's, so a later switch to it
# is a small change:
#
#   libmunition_native-v0.1.0-nif-2.16-x86_64-unknown-linux-gnu.so.tar.gz
#   checksum-Elixir.Munition.Native.exs  (%{artifact => "sha256:<hex>"})

defmodule Munition.NativeBuild do
  @moduledoc false

  @crate "munition_native"
  @checksum_file "checksum-Elixir.Munition.Native.exs"
  # The glibc a precompiled artifact is linked against (`cargo zigbuild`):
  # Rust's own floor since 1.64, so the artifact loads wherever Rust programs do.
  @glibc_floor "2.17"

  def crate, do: @crate
  def checksum_file_name, do: @checksum_file
  def glibc_floor, do: @glibc_floor

  ## Names

  @doc "The library's file name inside an artifact."
  def lib_name(version, nif_version, target),
    do: "lib#{@crate}-v#{version}-nif-#{nif_version}-#{target}.#{lib_ext(target)}"

  @doc "An artifact's file name: the library, gzipped in a tar."
  def artifact_name(version, nif_version, target),
    do: lib_name(version, nif_version, target) <> ".tar.gz"

  defp lib_ext(target) do
    # rustler_precompiled's choice: `:erlang.load_nif/2` looks for `.so` on macOS too.
    if String.contains?(target, "windows"), do: "dll", else: "so"
  end

  @doc "The NIF version of the running VM, as \"2.16\"."
  def nif_version, do: to_string(:erlang.system_info(:nif_version))

  @doc """
  The Rust target triple of the running VM, from Erlang's system architecture
  (`x86_64-pc-linux-gnu` becomes `x86_64-unknown-linux-gnu`), as
  rustler_precompiled names it.
  """
  def target do
    :erlang.system_info(:system_architecture) |> to_string() |> target_from_architecture()
  end

  def target_from_architecture(arch) do
    case String.split(arch, "-") do
      [cpu, _vendor, "linux", abi | _] -> "#{cpu(cpu)}-unknown-linux-#{abi(abi)}"
      [cpu, _vendor, "linux"] -> "#{cpu(cpu)}-unknown-linux-gnu"
      [cpu, "apple", "darwin" <> _ | _] -> "#{cpu(cpu)}-apple-darwin"
      [cpu, _vendor, "freebsd" <> _ | _] -> "#{cpu(cpu)}-unknown-freebsd"
      _ -> arch
    end
  end

  defp cpu("amd64"), do: "x86_64"
  defp cpu("arm64"), do: "aarch64"
  defp cpu(cpu), do: cpu

  defp abi("musl" <> _), do: "musl"
  defp abi("gnu" <> _), do: "gnu"
  defp abi(abi), do: abi

  ## Checksums

  @doc """
  The checksums in `dir`'s checksum file: `%{}` when there is none. A file
  that is not a map of artifact names to `"sha256:<64 hex digits>"` is a Mix
  error naming it.
  """
  def read_checksums(dir) do
    path = Path.join(dir, @checksum_file)

    checksums =
      if File.exists?(path) do
        try do
          {value, _} = Code.eval_file(path)
          value
        rescue
          error -> Mix.raise("#{path} cannot be read: #{Exception.message(error)}")
        end
      else
        %{}
      end

    valid? =
      is_map(checksums) and
        Enum.all?(checksums, fn {name, sum} ->
          is_binary(name) and is_binary(sum) and sum =~ ~r/\Asha256:[0-9a-f]{64}\z/
        end)

    unless valid? do
      Mix.raise(
        "#{path} must hold a map of artifact names to \"sha256:<hex>\" checksums, got: #{inspect(checksums)}"
      )
    end

    checksums
  end

  def write_checksums(dir, checksums) do
    lines = for {name, sum} <- Enum.sort(checksums), do: "  #{inspect(name)} => #{inspect(sum)},\n"
    File.write!(Path.join(dir, @checksum_file), ["%{\n", lines, "}\n"])
  end

  def checksum(bytes), do: "sha256:" <> Base.encode16(:crypto.hash(:sha256, bytes), case: :lower)

  ## Choosing how to get the library

  @doc """
  What to do for the project at `root` (version `version`): `{:precompiled,
  artifact, checksum, base_url}`, or `{:source, why}` with a sentence saying why
  the library is built from source. `MUNITION_BUILD` is looked at first: with it
  set, nothing else (the base URL, the checksum file) is read.

  The artifact is the one listed for this target with the highest NIF version
  the running VM loads (the same major version, a minor version up to the
  VM's), as rustler_precompiled chooses.
  """
  def plan(root, version, env \\ System.get_env()) do
    if env["MUNITION_BUILD"] in ["1", "true"] do
      {:source, "MUNITION_BUILD is set"}
    else
      plan_precompiled(root, version, base_url(env))
    end
  end

  defp plan_precompiled(_root, _version, nil) do
    {:source,
     "no base URL for precompiled NIFs is configured (MUNITION_NATIVE_BASE_URL or " <>
       "config :munition, native_base_url: ...)"}
  end

  defp plan_precompiled(root, version, base_url) do
    checksums = read_checksums(root)

    case loadable(Map.keys(checksums), version, target(), nif_version()) do
      nil ->
        {:source,
         "the package lists no precompiled NIF for #{target()} that NIF #{nif_version()} loads " <>
           "(#{artifact_name(version, nif_version(), target())} or an older NIF version)"}

      artifact ->
        {:precompiled, artifact, Map.fetch!(checksums, artifact), base_url}
    end
  end

  @doc "Of the artifact names listed, the one for `target` with the highest NIF version `vm_nif` loads."
  def loadable(names, version, target, vm_nif) do
    [vm_major, vm_minor] = String.split(vm_nif, ".") |> Enum.map(&String.to_integer/1)

    names
    |> Enum.flat_map(fn name ->
      with [nif] <-
             Regex.run(~r/\Alib#{@crate}-v#{Regex.escape(version)}-nif-(\d+\.\d+)-/, name,
               capture: :all_but_first
             ),
           ^name <- artifact_name(version, nif, target),
           [^vm_major, minor] when minor <= vm_minor <-
             String.split(nif, ".") |> Enum.map(&String.to_integer/1) do
        [{minor, name}]
      else
        _ -> []
      end
    end)
    |> Enum.max(fn -> nil end)
    |> case do
      nil -> nil
      {_minor, name} -> name
    end
  end

  defp base_url(env) do
    case env["MUNITION_NATIVE_BASE_URL"] || Application.get_env(:munition, :native_base_url) do
      url when url in [nil, ""] ->
        nil

      url when is_binary(url) ->
        case URI.parse(url) do
          %URI{scheme: scheme} when scheme in ["http", "https"] ->
            url

          %URI{scheme: "file", host: host, path: "/" <> _} when host in [nil, "", "localhost"] ->
            url

          _ ->
            Mix.raise(
              "the precompiled NIFs' base URL must be http://, https:// or file:// with an absolute path, " <>
                "got: #{inspect(url)}"
            )
        end

      other ->
        Mix.raise("config :munition, native_base_url must be a string, got: #{inspect(other)}")
    end
  end

  @doc "Where `artifact` is under `base_url`: appended to its path (a query string stays a query string)."
  def artifact_url(base_url, artifact) do
    uri = URI.parse(base_url)
    URI.to_string(%URI{uri | path: String.trim_trailing(uri.path || "", "/") <> "/" <> artifact})
  end

  ## Fetching, verifying, caching

  @doc "Where fetched artifacts are kept: MUNITION_NATIVE_CACHE_DIR, or the user's cache."
  def cache_dir(env \\ System.get_env()) do
    env["MUNITION_NATIVE_CACHE_DIR"] || Path.join(:filename.basedir(:user_cache, ~c"munition"), "precompiled")
  end

  @doc """
  The verified bytes of `artifact`: from the cache when a cached copy has the
  expected checksum, otherwise fetched from `base_url` and cached. `{:error,
  {:fetch, message}}` when it cannot be fetched; a fetched artifact whose
  checksum differs raises (nothing of it is written or loaded).
  """
  def fetch_verified(artifact, expected, base_url, cache_dir) do
    cached = Path.join(cache_dir, artifact)

    with {:ok, bytes} <- File.read(cached), ^expected <- checksum(bytes) do
      {:ok, bytes}
    else
      _ ->
        url = artifact_url(base_url, artifact)

        with {:ok, bytes} <- download(url) do
          case checksum(bytes) do
            ^expected ->
              File.mkdir_p!(cache_dir)
              write_atomically(cached, bytes)
              {:ok, bytes}

            actual ->
              Mix.raise("""
              the precompiled NIF #{url} has checksum #{actual}, but the package's \
              #{@checksum_file} lists #{expected}: refusing to load it. Set MUNITION_BUILD=1 to build from source.\
              """)
          end
        end
    end
  end

  def download(url) do
    case URI.parse(url) do
      %URI{scheme: "file", path: path} -> read_file(url, URI.decode(path))
      %URI{} -> http_get(url)
    end
  end

  defp read_file(url, path) do
    case File.read(path) do
      {:ok, bytes} -> {:ok, bytes}
      {:error, reason} -> {:error, {:fetch, "#{url}: #{:file.format_error(reason)}"}}
    end
  end

  defp http_get(url) do
    for app <- [:inets, :ssl] do
      with {:error, reason} <- Application.ensure_all_started(app) do
        Mix.raise(
          "fetching a precompiled NIF needs OTP's #{app} application, which cannot start: #{inspect(reason)}"
        )
      end
    end

    http_options = [
      timeout: 120_000,
      connect_timeout: 15_000,
      autoredirect: true,
      ssl: [
        verify: :verify_peer,
        cacerts: cacerts!(),
        depth: 4,
        customize_hostname_check: [match_fun: :public_key.pkix_verify_hostname_match_fun(:https)]
      ]
    ]

    case :httpc.request(:get, {String.to_charlist(url), []}, http_options, body_format: :binary) do
      {:ok, {{_, 200, _}, _headers, body}} -> {:ok, body}
      {:ok, {{_, status, reason}, _headers, _body}} -> {:error, {:fetch, "#{url}: HTTP #{status} #{reason}"}}
      {:error, reason} -> {:error, {:fetch, "#{url}: #{inspect(reason)}"}}
    end
  end

  # The system's CA certificates (OTP 25's :public_key.cacerts_get/0): an
  # https:// base URL is refused with a clear message where they cannot be had.
  defp cacerts! do
    unless function_exported?(:public_key, :cacerts_get, 0) do
      Mix.raise(
        "an https:// base URL for precompiled NIFs needs OTP 25 or later (its CA store); use file:// or build from source"
      )
    end

    try do
      :public_key.cacerts_get()
    rescue
      error ->
        Mix.raise(
          "the system's CA certificates cannot be read for an https:// base URL: #{Exception.message(error)}"
        )
    end
  end

  @doc "The library inside an artifact's bytes."
  def unpack(artifact_bytes, lib_name) do
    case :erl_tar.extract({:binary, artifact_bytes}, [:compressed, :memory]) do
      {:ok, files} ->
        case List.keyfind(files, String.to_charlist(lib_name), 0) do
          {_, lib} -> lib
          nil -> Mix.raise("the precompiled NIF artifact holds no #{lib_name}")
        end

      {:error, reason} ->
        Mix.raise("the precompiled NIF artifact cannot be unpacked: #{inspect(reason)}")
    end
  end

  @doc "The artifact's bytes for a built library."
  def pack(lib_bytes, lib_name) do
    path = Path.join(System.tmp_dir!(), "munition-artifact-#{System.unique_integer([:positive])}.tar.gz")

    try do
      :ok =
        :erl_tar.create(String.to_charlist(path), [{String.to_charlist(lib_name), lib_bytes}], [:compressed])

      File.read!(path)
    after
      File.rm(path)
    end
  end

  # Written under a temporary name and renamed: a VM that has the old library
  # loaded keeps its mapping intact, and no reader sees half a file.
  def write_atomically(path, bytes) do
    tmp = "#{path}.tmp#{System.unique_integer([:positive])}"
    File.write!(tmp, bytes)
    File.rename!(tmp, path)
  end

  ## Building from source

  def cargo!(why) do
    System.find_executable("cargo") ||
      Mix.raise("""
      Munition builds its native library from source because #{why}, and that \
      needs Rust's cargo, which is not on PATH. Install Rust 1.95 or later (https://rustup.rs), \
      or configure precompiled NIFs (see the getting-started guide), and compile again.
      """)
  end

  @doc "The cargo target directory for `root`: CARGO_TARGET_DIR when set."
  def target_dir(root) do
    case System.get_env("CARGO_TARGET_DIR") do
      dir when dir in [nil, ""] -> Path.join(root, "target")
      dir -> Path.expand(dir, root)
    end
  end

  @doc """
  Builds the release library in `root` with `cargo <command>` ("build", or
  "zigbuild" with `zig_target` such as "x86_64-unknown-linux-gnu.2.17"), its
  output streamed, and returns the built library's path; raises when it fails.
  """
  def build!(root, cargo, command \\ "build", zig_target \\ nil) do
    target = if zig_target, do: ["--target", zig_target], else: []

    case System.cmd(cargo, [command, "--release", "--locked", "-p", @crate | target],
           cd: root,
           stderr_to_stdout: true,
           into: IO.stream(:stdio, :line)
         ) do
      {_, 0} -> :ok
      {_, status} -> Mix.raise("cargo #{command} failed with exit status #{status}")
    end

    # An explicit target builds under its triple (without the glibc suffix).
    triple = if zig_target, do: [zig_target |> String.split(".") |> hd()], else: []
    Path.join([target_dir(root)] ++ triple ++ ["release", built_name()])
  end

  def built_name do
    case :os.type() do
      {:unix, :darwin} -> "lib#{@crate}.dylib"
      {:win32, _} -> "#{@crate}.dll"
      _ -> "lib#{@crate}.so"
    end
  end

  @doc """
  The newest glibc symbol version a built library needs ("2.34"), read from its
  bytes (the version names of its dynamic symbols); nil when it needs none.
  """
  def glibc_needed(lib_bytes) do
    Regex.scan(~r/GLIBC_(\d+)\.(\d+)(?:\.(\d+))?/, lib_bytes, capture: :all_but_first)
    |> Enum.map(fn parts -> parts |> Enum.reject(&(&1 == "")) |> Enum.map(&String.to_integer/1) end)
    |> Enum.max(fn -> nil end)
    |> case do
      nil -> nil
      parts -> Enum.join(parts, ".")
    end
  end
end

defmodule Mix.Tasks.Compile.MunitionNative do
  @moduledoc false
  # Puts the NIF in priv/native: a precompiled artifact when the package lists
  # one for this target and a base URL is configured, otherwise built by cargo.
  # A file beside the library (`.origin`) says which it holds, so switching
  # between the two replaces it. Mix does not recompile a dependency when the
  # environment changes: after setting MUNITION_BUILD or a base URL, run
  # `mix deps.compile munition --force` (`--force` always installs again).
  use Mix.Task.Compiler

  alias Munition.NativeBuild

  @impl true
  def run(args) do
    root = Path.dirname(Mix.Project.project_file())
    dest = Path.join([Mix.Project.app_path(), "priv", "native", NativeBuild.crate() <> ".so"])
    File.mkdir_p!(Path.dirname(dest))
    force = "--force" in args

    case NativeBuild.plan(root, Mix.Project.config()[:version]) do
      {:precompiled, artifact, checksum, base_url} ->
        if not force and origin(dest) == "precompiled #{checksum}" and File.exists?(dest) do
          {:noop, []}
        else
          install_precompiled(root, dest, artifact, checksum, base_url)
        end

      {:source, why} ->
        if not force and origin(dest) == "source" and not stale?(root, dest) do
          {:noop, []}
        else
          build(root, dest, why)
        end
    end
  end

  defp install_precompiled(root, dest, artifact, checksum, base_url) do
    case NativeBuild.fetch_verified(artifact, checksum, base_url, NativeBuild.cache_dir()) do
      {:ok, bytes} ->
        lib_name = String.replace_suffix(artifact, ".tar.gz", "")
        install(dest, NativeBuild.unpack(bytes, lib_name), "precompiled #{checksum}")
        Mix.shell().info("munition_native: precompiled #{artifact} (#{checksum}), no cargo build")
        {:ok, []}

      {:error, {:fetch, message}} ->
        build(root, dest, "the precompiled NIF could not be fetched: #{message}")
    end
  end

  defp build(root, dest, why) do
    cargo = NativeBuild.cargo!(why)
    Mix.shell().info("Compiling munition_native from source with cargo: #{why}")
    built = NativeBuild.build!(root, cargo)

    case File.read(built) do
      {:ok, library} -> install(dest, library, "source")
      {:error, reason} -> Mix.raise("cargo built no #{built}: #{:file.format_error(reason)}")
    end

    {:ok, []}
  end

  # The marker goes first and comes back last: a compile stopped in between
  # leaves no marker, so the next one installs again.
  defp install(dest, library, origin) do
    File.rm(origin_path(dest))
    NativeBuild.write_atomically(dest, library)
    NativeBuild.write_atomically(origin_path(dest), origin)
  end

  defp stale?(root, dest) do
    sources =
      Path.wildcard(Path.join(root, "native/**/*.{rs,toml}")) ++
        Enum.map(["Cargo.toml", "Cargo.lock"], &Path.join(root, &1))

    not File.exists?(dest) or Mix.Utils.stale?(Enum.filter(sources, &File.exists?/1), [dest])
  end

  defp origin_path(dest), do: dest <> ".origin"

  defp origin(dest) do
    case File.read(origin_path(dest)) do
      {:ok, origin} -> origin
      {:error, _} -> nil
    end
  end
end

defmodule Mix.Tasks.Munition.Native.Package do
  @shortdoc "Builds the release NIF for this machine's target as a precompiled artifact"
  @moduledoc """
  Builds the release NIF for this machine's target and writes, into DIR, its
  artifact and the checksum file that ships inside the package.

      mix munition.native.package DIR [--glibc VERSION | --no-glibc-floor]

  On Linux with glibc the library is linked against glibc #{Munition.NativeBuild.glibc_floor()}
  (`--glibc` for another) through `cargo zigbuild`, so that it loads on systems
  older than the one that built it; the task reads the glibc versions the built
  library needs and fails if any is newer than the floor. `--no-glibc-floor`
  builds with plain cargo against this machine's glibc (the floor it reports is
  then this machine's).

  The artifact's name carries Munition's version, the NIF version and the
  target triple (rustler_precompiled's naming); the checksum file in DIR is
  merged, so artifacts built on several machines into one DIR share one
  checksum file. To publish: upload the artifacts to the base URL users will
  configure, copy DIR's checksum file to the project root, and publish the
  package.
  """
  use Mix.Task

  alias Munition.NativeBuild

  @impl true
  def run(argv) do
    {opts, rest} = OptionParser.parse!(argv, strict: [glibc: :string, no_glibc_floor: :boolean])

    dir =
      case rest do
        [dir] -> Path.expand(dir)
        _ -> Mix.raise("usage: mix munition.native.package DIR [--glibc VERSION | --no-glibc-floor]")
      end

    root = Path.dirname(Mix.Project.project_file())
    version = Mix.Project.config()[:version]
    target = NativeBuild.target()

    floor =
      if opts[:no_glibc_floor] || not String.ends_with?(target, "-gnu"),
        do: nil,
        else: opts[:glibc] || NativeBuild.glibc_floor()

    cargo = NativeBuild.cargo!("it is packaging a precompiled NIF")

    built =
      if floor do
        zigbuild = System.find_executable("cargo-zigbuild")

        unless zigbuild,
          do:
            Mix.raise(
              "linking against glibc #{floor} needs cargo-zigbuild on PATH (`pip install cargo-zigbuild ziglang`, or `make native-package`); --no-glibc-floor builds without it"
            )

        Mix.shell().info("Building munition_native for #{target} against glibc #{floor} (cargo zigbuild)")

        NativeBuild.build!(root, cargo, "zigbuild", "#{target}.#{floor}")
      else
        NativeBuild.build!(root, cargo)
      end

    lib = File.read!(built)
    needed = NativeBuild.glibc_needed(lib)

    if floor && needed && Version.compare(semver(needed), semver(floor)) == :gt do
      Mix.raise("the built library needs glibc #{needed}, newer than the floor #{floor}")
    end

    nif_version = NativeBuild.nif_version()
    lib_name = NativeBuild.lib_name(version, nif_version, target)
    artifact = NativeBuild.artifact_name(version, nif_version, target)
    bytes = NativeBuild.pack(lib, lib_name)
    checksum = NativeBuild.checksum(bytes)

    File.mkdir_p!(dir)
    NativeBuild.write_atomically(Path.join(dir, artifact), bytes)
    NativeBuild.write_checksums(dir, Map.put(NativeBuild.read_checksums(dir), artifact, checksum))

    Mix.shell().info("""
    #{Path.join(dir, artifact)}
      #{checksum}
      needs glibc #{needed || "(none)"}; checksum file: #{Path.join(dir, NativeBuild.checksum_file_name())}\
    """)
  end

  defp semver(version) do
    case String.split(version, ".") do
      [major, minor] -> "#{major}.#{minor}.0"
      _ -> version
    end
  end
end

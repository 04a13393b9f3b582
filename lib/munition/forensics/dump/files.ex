defmodule Munition.Forensics.Dump.Files do
  @moduledoc false
  # Dump files on disk: their names, private permissions, atomic writes and
  # bounded reads. `Munition.Forensics.Dump.write/2`,
  # `Munition.Forensics.Dump.write_to_dir/2` and
  # `Munition.Forensics.Dump.read/2` are built on it; what the bytes mean is
  # `Munition.Forensics.Dump.Format`'s.
  #
  # A dump holds the whole memory of a guest, which can be customer data or
  # credentials, so:
  #
  #   * a dump file is mode `0600` (read and write for its owner only), whatever
  #     the process umask;
  #   * a directory this module creates is mode `0700`; a directory that already
  #     existed keeps its mode;
  #   * the bytes are first written in a staging directory of mode `0700` next
  #     to the target, then renamed into place, so no other user can open the
  #     file before its mode is `0600` (Erlang creates files with mode `0666`
  #     less the umask, and the mode cannot be given at creation), and a reader
  #     sees the whole file or none.

  @private_file 0o600
  @private_dir 0o700

  @doc """
  Writes `bytes` to `path`, mode `0600`, atomically (see the moduledoc). The
  directory of `path` must exist. An existing file at `path` is replaced.
  """
  @spec write(iodata(), Path.t()) :: :ok | {:error, File.posix()}
  def write(bytes, path) do
    # The staging directory takes a name no writer uses for a dump: its
    # random part keeps concurrent writers of one path apart.
    staging = "#{path}.#{random_suffix()}.tmp"
    staged = Path.join(staging, "dump")

    with :ok <- mkdir_private(staging) do
      result =
        with :ok <- write_private(staged, bytes) do
          File.rename(staged, path)
        end

      # Whatever happened, nothing is left behind but the file itself.
      _ = File.rm_rf(staging)
      result
    end
  end

  @doc """
  Writes `bytes` into `dir` under the name `name_fun` returns, creating `dir`
  and its missing parents (mode `0700`) if needed. Returns the path written.

  When a file of that name exists, it is kept and `name_fun` is asked for
  another name: give it a random part.
  """
  @spec write_new(iodata(), Path.t(), (() -> String.t())) :: {:ok, Path.t()} | {:error, File.posix()}
  def write_new(bytes, dir, name_fun) when is_function(name_fun, 0) do
    with :ok <- mkdir_p_private(dir), do: write_new_name(bytes, dir, name_fun)
  end

  defp write_new_name(bytes, dir, name_fun) do
    path = Path.join(dir, name_fun.())

    if File.exists?(path) do
      write_new_name(bytes, dir, name_fun)
    else
      with :ok <- write(bytes, path), do: {:ok, path}
    end
  end

  @doc """
  The contents of the file at `path`, or `{:error, {:too_large, size, bound}}`
  without reading it when it holds more than `bound` bytes.
  """
  @spec read(Path.t(), non_neg_integer()) ::
          {:ok, binary()} | {:error, File.posix() | {:too_large, non_neg_integer(), non_neg_integer()}}
  def read(path, bound) do
    with {:ok, %File.Stat{size: size}} <- File.stat(path),
         :ok <- if(size > bound, do: {:error, {:too_large, size, bound}}, else: :ok) do
      File.read(path)
    end
  end

  @doc """
  A unique, sortable file name for `dump`, such as
  `20250102T030405.123456Z-trap-1f2e3d4c.munition-dump`: the capture time in
  UTC to the microsecond (now, for a dump without one), the reason, and a
  random part, so that names sorted sort dumps by capture time.
  """
  @spec name(Munition.Forensics.Dump.t()) :: String.t()
  def name(dump) do
    time =
      case dump.captured_at do
        %DateTime{} = at -> at
        _ -> DateTime.utc_now()
      end

    {micro, _precision} = time.microsecond
    stamp = Calendar.strftime(time, "%Y%m%dT%H%M%S") <> ".#{String.pad_leading("#{micro}", 6, "0")}Z"

    "#{stamp}-#{dump.reason || "unknown"}-#{random_suffix()}.munition-dump"
  end

  # Nobody else can reach the file: it is created inside a directory of mode
  # 0700, and its own mode is set before a byte is written.
  defp write_private(path, bytes) do
    with {:ok, file} <- File.open(path, [:write, :exclusive, :binary, :raw]) do
      written = with :ok <- File.chmod(path, @private_file), do: :file.write(file, bytes)

      # A write error can surface only when the file is closed.
      closed = File.close(file)
      if written == :ok, do: closed, else: written
    end
  end

  # Each level of `dir` that does not exist is created mode 0700; levels that
  # exist are left as they are, whoever made them.
  defp mkdir_p_private(dir) do
    cond do
      File.dir?(dir) ->
        :ok

      Path.dirname(dir) == dir ->
        :ok

      true ->
        # A parent that cannot be made shows in the error of this level.
        _ = mkdir_p_private(Path.dirname(dir))

        case mkdir_private(dir) do
          {:error, :eexist} -> if File.dir?(dir), do: :ok, else: {:error, :eexist}
          other -> other
        end
    end
  end

  # The directory is created with the umask's mode and is empty until its
  # mode is 0700: whoever opened it meanwhile cannot look up what is created
  # in it afterwards, as lookups check the mode at the time.
  defp mkdir_private(dir) do
    with :ok <- File.mkdir(dir), do: File.chmod(dir, @private_dir)
  end

  defp random_suffix, do: Base.encode16(:rand.bytes(4), case: :lower)
end

defmodule Munition.Host.WASI do
  @moduledoc """
  WASI preview 1 (`wasi_snapshot_preview1`): what a guest compiled for
  `wasm32-wasi`/`wasm32-wasip1` imports, granted piece by piece as
  capabilities, and commands (`Munition.run/2`).

      Munition.run(File.read!("hello.wasm"), capabilities: [:wasi], wasi: [args: ["hello", "world"]])
      #=> {:ok, 0, %{stdout: "Hello, world!\\n", stderr: "", exit_code: 0, ...}}

  ## The implementation: Wasmtime's own, bounded by Munition

  Munition uses Wasmtime's `wasmtime-wasi` crate (same version as the
  engine, preview 1 only): its handling of descriptors, paths and preopens is
  Wasmtime's, including `cap-std`'s sandboxing of every path a guest opens
  (no `..`, absolute path or symlink leads out of a preopen: the guest gets an
  errno). Writing WASI again would mean writing that sandbox again.

  Munition links imports one by one from its own table (below): each granted
  function (or file function linked inert, below) is taken from a Wasmtime
  linker that defines them all once per node, so an import that is refused
  never reaches Wasmtime's code. Each
  store gets a fresh WASI context, dropped with the store: nothing is shared
  between calls.

  Munition replaces the functions that would break its bounds:

    * `clock_time_get`, `clock_res_get` - Munition's clocks, real or
      deterministic (below);
    * `poll_oneoff`, `sched_yield` - a guest that sleeps is suspended, its
      thread given back, and resumed at its wake time or ended at its
      deadline (Wasmtime's would sleep on a thread or on Tokio timers that
      outlive the deadline);
    * `fd_read`, `fd_write`, `fd_pread`, `fd_pwrite`, `random_get` - the
      guest pays fuel for the bytes it moves (8 bytes per unit of fuel, as for
      the built-ins, plus one unit per iovec entry), then Wasmtime's own
      function does the work (`random_get` is Munition's: the OS CSPRNG, in
      chunks checked against the deadline);
    * `proc_exit` - an exit code is a result, not a failure: any code ends the
      call as `{:ok, ...}` (see "Exit codes").

  On Wasmtime, file operations run on `wasmtime-wasi`'s own threads, never
  on a BEAM scheduler: the guest is suspended until the operation is done, and the
  thread that finished it wakes the process driving the guest.

  ## On Wasmi: the same table, files on the guest's thread

  `wasmtime-wasi`'s preview-1 functions are generated for Wasmtime and not
  for use outside it, so `Munition.Runtime.Wasmi` runs Munition's own
  preview 1 through the same table and capabilities: the functions above
  that Munition already replaces (one implementation for both engines),
  and its own descriptor and file functions (the same bounded capture, the
  same errnos and fuel for bytes moved). Its files keep the guarantees
  above: preopens given only with `:wasi_fs`, read-only unless marked
  `:read_write` with `:wasi_fs_write` granted, and every path resolved
  under its directory by `cap-primitives` (4.0.3, the crate `wasmtime-wasi`
  sandboxes with), so no `..`, absolute path or symlink leads out of a
  preopen (`EPERM`). A sleeping guest is suspended as for an Elixir host
  call, holding no thread; but a file operation runs on the thread running
  the guest's slice, a dirty CPU scheduler (Wasmi has no fiber to park the guest on while another
  thread works), each one bounded: a read or write moves one buffer of at
  most 128 MiB, a directory listing stops when the guest's buffer is full,
  at most 1024 descriptors are open. `fd_allocate` and
  `fd_fdstat_set_rights` are `ENOTSUP`, as on Wasmtime, and so is
  `fd_fdstat_set_flags` changing the flags.

  ## Capabilities

  | function | capability |
  |---|---|
  | `fd_write`, `fd_read`, `fd_close`, `fd_seek`, `fd_tell`, `fd_fdstat_get`, `fd_prestat_get`, `fd_prestat_dir_name` | `:wasi_stdio` |
  | `args_get`, `args_sizes_get` | `:wasi_args` |
  | `environ_get`, `environ_sizes_get` | `:wasi_env` |
  | `clock_time_get`, `clock_res_get` | `:wasi_clock` |
  | `random_get` | `:wasi_random` |
  | `proc_exit` | `:wasi_exit` |
  | `poll_oneoff`, `sched_yield` | `:wasi_poll` |
  | `path_open`, `path_filestat_get`, `path_readlink`, `fd_pread`, `fd_readdir`, `fd_filestat_get`, `fd_advise`, `fd_fdstat_set_flags`, `fd_fdstat_set_rights`, `fd_renumber`, `fd_sync`, `fd_datasync` | `:wasi_fs` |
  | `fd_pwrite`, `fd_allocate`, `fd_filestat_set_size`, `fd_filestat_set_times`, `path_create_directory`, `path_filestat_set_times`, `path_link`, `path_remove_directory`, `path_rename`, `path_symlink`, `path_unlink_file` | `:wasi_fs_write` |
  | `sock_accept`, `sock_recv`, `sock_send`, `sock_shutdown`, `proc_raise` | none: always refused (`needs: nil`) |

  The group `:wasi` is every WASI capability but `:wasi_fs` and
  `:wasi_fs_write`: enough for a program that prints (C's `printf` with
  wasi-libc, Rust's `println!`), reads stdin, its arguments and environment,
  the time and random bytes, sleeps and exits, whatever file functions it
  imports besides (below). Files are granted apart: a directory in
  `:preopens` and `:wasi_fs` (with `:wasi_fs_write` to write). (`:all`
  stays Munition's own built-ins: granting it never grants WASI.)

  As for other imports, a module that imports a WASI function that is not
  granted, nor linked inert (below), does not run:
  `{:error, {:capability_denied, [...]}}` lists every one with the
  capability that would grant it.

  ## Files the guest cannot reach

  What `:wasi_fs` and `:wasi_fs_write` give is directories: the preopens
  reach the guest only with `:wasi_fs`, and are writable only with
  `:wasi_fs_write` too. A file function has nothing to act on without them,
  so a call granting `:wasi_stdio` (as `:wasi` does) links the file
  functions whose capability it does not grant *inert* instead of refusing
  the module: QuickJS-ng's `qjs` and Lua, built with wasi-libc, import
  `path_open`, `path_rename`, `path_unlink_file`, ... for `fopen`,
  `rename` and `remove`, and print `2` with `capabilities: [:wasi]`. Each
  is still the function of the table (the same code on each engine as when
  granted); what it can reach is what the call gives:

    * with no directory (`:wasi_fs` not granted): the guest's descriptors
      are stdin 0, stdout 1 and stderr 2, and never more (only `path_open`
      makes one, under a directory). Every `path_*` function answers `EBADF`
      (no descriptor is a directory), as do `fd_readdir`, `fd_advise`,
      `fd_allocate`, `fd_sync`, `fd_datasync`, `fd_fdstat_set_flags`,
      `fd_fdstat_set_rights`, `fd_filestat_set_size` and
      `fd_filestat_set_times` (stdio is no file); `fd_pread` on stdin and
      `fd_pwrite` on stdout and stderr are `ESPIPE` (`EBADF` the other way
      round); `fd_filestat_get` on stdio succeeds with the zero stat it
      always gives them. Nothing on the host is touched, and stdio is left
      as it was;
    * with read-only directories only (`:wasi_fs` granted, `:wasi_fs_write`
      not): every function of `:wasi_fs_write` is refused by the directory
      or file it names, as under a read-only preopen with `:wasi_fs_write`
      granted: the `path_*` ones and `fd_filestat_set_times` on a directory
      are `EPERM`, `fd_pwrite`, `fd_allocate` and `fd_filestat_set_size` on
      a directory `EBADF`, and each on a file opened for reading an errno
      (which one differs between the engines).

  `fd_renumber` is never linked inert: with no directory it still acts on
  stdio, and not the same way on both engines (on Wasmtime it moves stdout
  or stderr onto another's number, closing that one; on Wasmi it answers
  `EBADF`), so it needs `:wasi_fs` as before. Sockets and `proc_raise` stay
  refused.

  The metadata of every call and every dump say which imports were linked
  inert (`:inert_links`, see "Inert links" in `Munition.Host.Capabilities`):

      %{module: "wasi_snapshot_preview1", name: "path_open", needs: :wasi_fs, reason: :no_preopen}
      %{module: "wasi_snapshot_preview1", name: "path_rename", needs: :wasi_fs_write, reason: :no_writable_preopen}

  A call that gives `:preopens` without granting `:wasi_fs` still gives the
  guest no directory (the preopens are dropped, as they always were): its
  file functions are linked inert with `reason: :no_preopen`, which is where
  to look when a guest finds none of its files. Likewise a `:read_write`
  preopen without `:wasi_fs_write` is read-only, and the write functions
  say `:no_writable_preopen`.

  ## The `:wasi` option

  Of `Munition.fire/4`, `Munition.run/2` and `Munition.Pool` (per call: a
  pooled call's `:wasi` keys override the pool's, key by key):

    * `:args` - the guest's arguments, strings, `argv[0]` (the program's name)
      first: nothing is added. Defaults to `["main"]`, because programs
      built by real toolchains assume `argc >= 1` (a Zig command given no
      arguments at all traps in its argument parsing).
    * `:env` - its environment, `[{"KEY", "value"}]` or a map. Defaults to
      none: the host's environment is never inherited.
    * `:stdin` - a binary the guest reads as its stdin. Defaults to `""`
      (end of file at once).
    * `:preopens` - directories the guest may open files in:
      `[{"/data", host_path}]` (read-only) or `{"/out", host_path, :read_write}`.
      Given to the guest only when `:wasi_fs` is granted, and writable only
      when marked `:read_write` and `:wasi_fs_write` is granted too (else
      the file functions are linked inert: see "Files the guest cannot
      reach").
    * `:stdout_limit`, `:stderr_limit` - bytes of each kept. Defaults to
      `65_536`. Past it the guest's writes still succeed, the rest is dropped
      and the result says `stdout_truncated: true`.
    * `:clock` - `:real` (default) or `:deterministic` (below).
    * `:http_allow` - where a component's outgoing HTTP (`wasi:http`, see
      "Outgoing HTTP" below) may go: a list of `"host"`, `"host:port"`,
      `"http://host"`, `"https://host:port"`, ... Given to the guest only
      when `:wasi_http` is granted. Defaults to `[]`: every request denied.
    * `:http_response_limit` - bytes of one response body the guest may
      read. A response announcing more (its `content-length`) fails with
      WASI's `HTTP-response-body-size` before any is read; a body that
      grows past it fails as it is read (a stream error whose text says
      so: `wasmtime-wasi-http` 48 gives a body's error no error code).
      Defaults to `16_777_216` (16 MiB).

  The guest's stdio never reaches the host's.

  ## Outgoing HTTP

  A component that imports `wasi:http/outgoing-handler` (WASI 0.2) is
  linked to `wasmtime-wasi-http`'s implementation (48.0.8, the engine's
  version) whatever the call grants, so a plugin that imports it and never
  sends a request runs under `:wasi`. What a request reaches is decided
  when it is sent: nothing, with WASI's own error code
  `HTTP-request-denied` (an error the guest sees and can return, not a
  trap), unless the call grants `:wasi_http` (not part of `:wasi`) *and*
  the request matches an entry of `:http_allow`:

    * the host is the entry's, compared without case and as written: a
      name matches that name only (`"localhost"` is not `"127.0.0.1"`; no
      name is resolved to match, and the address it resolves to when the
      request is sent is not checked again), an IPv6 address is written in
      brackets (`"[::1]:8080"`); no wildcards, no subdomains;
    * the port is the entry's, or else the default port of the request's
      scheme: `"api.example.com"` lets through `http://api.example.com`
      (port 80) and `https://api.example.com` (443), not port 8080;
    * the scheme, when the entry names one, is the request's:
      `"https://api.example.com"` refuses `http://api.example.com`.

  A request whose authority carries user information (`user@host`) is
  denied. Redirects are not followed (a guest that follows one sends a new
  request, checked again). Requests are sent by `wasmtime-wasi-http`'s own
  client (HTTP/1.1 over Tokio, TLS by rustls with the webpki roots) on
  `wasmtime-wasi`'s threads: the guest waits suspended, holding no
  scheduler thread, and the process driving the call (its own, as for
  Elixir host functions) is woken when the response comes. Nothing outlives
  the call's deadline: a request still waiting for its response, or a body
  still arriving, fails at the deadline, and the guest, resumed past it,
  ends at once as `{:crash, :timeout, dump}`; the connection is closed when
  the call's store goes, on every path. With `:wasi_http` granted and no
  `:http_allow`, every request is denied.

  A call that does not grant `:wasi_http` lists the `wasi:http` functions in
  its `:inert_links` with `reason: :no_http_grant` (see "Inert links" in
  `Munition.Host.Capabilities`).

  ## What comes back

  A call has a WASI configuration when it is given `:wasi` or is granted any
  WASI capability. Its metadata (`{:ok, result, metadata}`) then has
  `:stdout` and `:stderr` (binaries) and `:stdout_truncated` and
  `:stderr_truncated`, and the dump of a crash the same fields with what was
  written until the crash. A call without one has none of these keys.

  ## Exit codes

  `Munition.run/2` runs a command's `_start` and returns `{:ok, exit_code,
  metadata}`: `0` when `_start` returns or calls `proc_exit(0)`, `n` for
  `proc_exit(n)` (any 32-bit code, as the guest gave it): a result to match,
  not a crash. In `Munition.fire/4`, a guest that calls `proc_exit` in the
  middle of a call ends it as `{:ok, nil, metadata}` with
  `metadata.exit_code`; a call that returns normally has no `:exit_code`.

  A module exporting `_initialize` (a WASI reactor) has it called by
  `Munition.fire/4` before the export it is asked for (in the same fresh
  instance, on the same fuel and deadline).

  ## Time

  With `clock: :real`, the wall clock is the host's and the monotonic clock
  counts from the start of the call. With `clock: :deterministic`, the wall
  clock starts at 2000-01-01T00:00:00Z and the monotonic clock at 0, and both
  advance one nanosecond per unit of fuel consumed (about one wasm
  instruction), plus the time slept: a sleep takes no real time, the clocks
  jump to the wake time. Two runs of the same guest with the same inputs see
  the same times. Wasmtime's own reads of the clock (a file time set to
  "now") see the starting instant.

  Sleeping (`poll_oneoff` with clock subscriptions; C's `sleep`, Rust's
  `thread::sleep`) on the real clock suspends the guest without holding a
  thread until its wake time or its deadline, whichever is first: a guest
  asleep for an hour with a 100 ms timeout ends at about 100 ms as
  `{:crash, :timeout, dump}` with `dump.trap == :interrupt`. `poll_oneoff`
  reports stdin, stdout, stderr and files always ready (they are memory or
  local files), and other descriptors with `EBADF`. CPU-time clocks are not
  offered (`EBADF`, as in Wasmtime).

  ## Hostile guests

  Every pointer, length and descriptor a guest passes is checked, and the
  host is never touched outside the guest's memory. A bad descriptor, a bad
  flag, a length that overflows or asks Wasmtime to copy more than it copies
  in one call (128 MiB) returns an errno (`EBADF`, `EINVAL`, `EOVERFLOW`,
  `ENOMEM`, ...). A pointer or range outside the guest's memory is, as WASI
  says a function shall and as Wasmtime does, a trap: `{:crash, :trap, dump}`
  with `dump.trap == :memory_out_of_bounds` (`:heap_misaligned` for a
  misaligned one), in Munition's functions and Wasmtime's alike. Bytes moved
  are paid for in fuel before they move, and `random_get` checks the deadline
  as it goes.

  ## Who drives a call with files

  A call whose guest may open files (preopens given and `:wasi_fs` granted)
  is driven by a linked process of its own, as a call with Elixir host
  functions is: a file operation finishing
  on Wasmtime's thread wakes that process with a message, and the caller's
  mailbox is never written to (on Wasmi the operation is done within the
  slice, so no message comes at all). So is a call whose component may send
  HTTP requests (`:wasi_http` granted and `:http_allow` given): a response
  arriving on Wasmtime's threads wakes it the same way. Other WASI calls
  are driven by the caller and never messaged (a sleep is waited for with
  a plain timeout).

  """

  @module "wasi_snapshot_preview1"
  @fs [:wasi_fs, :wasi_fs_write]
  # The one file function that does something to stdin, stdout and stderr
  # with no directory: on Wasmtime it moves or closes them, on Wasmi it
  # answers EBADF. Not the same on both engines, so never linked inert.
  @never_inert ["fd_renumber"]
  @defaults %{
    args: ["main"],
    env: [],
    stdin: "",
    preopens: [],
    stdout_limit: 65_536,
    stderr_limit: 65_536,
    clock: :real,
    http_allow: [],
    http_response_limit: 16_777_216
  }

  @doc "The import module of WASI preview 1."
  @spec import_module() :: String.t()
  def import_module, do: @module

  @doc """
  Capabilities that grant WASI functions, from the runtime's table of
  built-ins (`builtins`, see `Munition.Host.Capabilities.builtins/1`).
  """
  @spec capabilities([map()]) :: [atom()]
  def capabilities(builtins) do
    for %{module: @module, capability: capability} <- builtins, uniq: true, do: capability
  end

  @doc "The capabilities of the group `:wasi`: all WASI capabilities but the filesystem's."
  @spec group([map()]) :: [atom()]
  def group(builtins), do: capabilities(builtins) -- @fs

  @doc """
  Why the WASI built-in `builtin` (a row of `Munition.Host.Capabilities.builtins/1`)
  reaches nothing in a call that grants `granted` without its capability:
  `:no_preopen` for a function of `:wasi_fs` (the guest has no directory),
  `:no_writable_preopen` for one of `:wasi_fs_write` (it has no writable
  one), or `nil` when it is not linked inert: its capability is granted, it
  is no file function, it is `fd_renumber`, or `:wasi_stdio` is not granted
  (see "Files the guest cannot reach" above).

      iex> path_open = %{module: "wasi_snapshot_preview1", name: "path_open", capability: :wasi_fs}
      iex> Munition.Host.WASI.inert(path_open, [:wasi_stdio])
      :no_preopen
      iex> Munition.Host.WASI.inert(path_open, [:wasi_stdio, :wasi_fs])
      nil
      iex> Munition.Host.WASI.inert(path_open, [:wasi_clock])
      nil
  """
  @spec inert(map(), [atom()]) :: :no_preopen | :no_writable_preopen | nil
  def inert(%{module: @module, name: name, capability: capability}, granted)
      when capability in @fs and name not in @never_inert do
    if :wasi_stdio in granted and capability not in granted, do: inert_reason(capability)
  end

  def inert(_builtin, _granted), do: nil

  defp inert_reason(:wasi_fs), do: :no_preopen
  defp inert_reason(:wasi_fs_write), do: :no_writable_preopen

  @doc """
  Checks the `:wasi` option of a call, raising `ArgumentError` naming the
  value. Returns the keys given, normalized, as a map (`nil` for `nil`).
  """
  @spec check!(term()) :: map() | nil
  def check!(nil), do: nil

  def check!(opts) when is_list(opts) do
    unless Keyword.keyword?(opts), do: bad!("wasi", "a keyword list", opts)

    Map.new(opts, fn
      {:args, args} ->
        {:args, strings!(:args, args)}

      {:env, env} ->
        {:env, env!(env)}

      {:stdin, stdin} when is_binary(stdin) ->
        {:stdin, stdin}

      {:stdin, other} ->
        bad!("wasi stdin", "a binary", other)

      {:preopens, preopens} ->
        {:preopens, preopens!(preopens)}

      {:stdout_limit, limit} ->
        {:stdout_limit, limit!(:stdout_limit, limit)}

      {:stderr_limit, limit} ->
        {:stderr_limit, limit!(:stderr_limit, limit)}

      {:clock, clock} when clock in [:real, :deterministic] ->
        {:clock, clock}

      {:clock, other} ->
        bad!("wasi clock", ":real or :deterministic", other)

      {:http_allow, hosts} ->
        {:http_allow, http_allow!(hosts)}

      {:http_response_limit, limit} ->
        {:http_response_limit, limit!(:http_response_limit, limit)}

      {key, _} ->
        raise ArgumentError, "unknown wasi option #{inspect(key)} (known: #{inspect(Map.keys(@defaults))})"
    end)
  end

  def check!(other), do: bad!("wasi", "a keyword list", other)

  @doc """
  The WASI configuration the runtime gets for a call: `nil` when the call has
  none (no `:wasi` option given and no WASI capability granted), else every
  key with its default, preopens kept only when `:wasi_fs` is granted and
  writable only when marked `:read_write` and `:wasi_fs_write` is granted,
  and the HTTP allowlist kept only when `:wasi_http` is granted.
  """
  @spec config(map() | nil, [atom()]) :: map() | nil
  def config(wasi, granted) do
    if wasi == nil and not Enum.any?(granted, &wasi_capability?/1) do
      nil
    else
      config = Map.merge(@defaults, wasi || %{})

      preopens =
        if :wasi_fs in granted do
          for {guest, host, mode} <- config.preopens,
              do: {guest, host, mode == :read_write and :wasi_fs_write in granted}
        else
          []
        end

      http_allow = if :wasi_http in granted, do: config.http_allow, else: []

      %{config | preopens: preopens, http_allow: http_allow}
    end
  end

  defp wasi_capability?(capability), do: String.starts_with?(Atom.to_string(capability), "wasi_")

  defp strings!(name, list) when is_list(list) do
    Enum.map(list, fn
      string when is_binary(string) -> text!("wasi #{name}", string)
      other -> bad!("wasi #{name}", "a list of strings", other)
    end)
  end

  defp strings!(name, other), do: bad!("wasi #{name}", "a list of strings", other)

  defp env!(env) when is_map(env), do: env |> Enum.sort() |> env!()

  defp env!(env) when is_list(env) do
    Enum.map(env, fn
      {key, value} when is_binary(key) and is_binary(value) ->
        if key == "" or String.contains?(key, "="),
          do: bad!("wasi env", "variable names that are non-empty and have no \"=\"", key)

        {text!("wasi env", key), text!("wasi env", value)}

      other ->
        bad!("wasi env", "{name, value} string pairs", other)
    end)
  end

  defp env!(other), do: bad!("wasi env", "a list of {name, value} string pairs or a map", other)

  # What a guest reads as a C string: valid UTF-8 (Wasmtime's strings) and
  # no NUL byte (it would cut it short).
  defp text!(name, string) do
    if String.valid?(string) and not String.contains?(string, <<0>>),
      do: string,
      else: bad!(name, "UTF-8 strings without NUL bytes", string)
  end

  defp preopens!(preopens) when is_list(preopens) do
    Enum.map(preopens, fn
      {guest, host} -> preopen!(guest, host, :read_only)
      {guest, host, mode} when mode in [:read_only, :read_write] -> preopen!(guest, host, mode)
      other -> bad!("wasi preopens", "{guest_path, host_path} or {guest_path, host_path, :read_write}", other)
    end)
  end

  defp preopens!(other), do: bad!("wasi preopens", "a list", other)

  defp preopen!(guest, host, mode) when is_binary(guest) and is_binary(host) do
    _ = text!("wasi preopens", guest)
    _ = text!("wasi preopens", host)
    unless File.dir?(host), do: bad!("wasi preopens", "host paths of existing directories", host)
    {guest, host, mode}
  end

  defp preopen!(guest, host, _mode),
    do: bad!("wasi preopens", "string paths", {guest, host})

  # `:http_allow`'s entries, each `{scheme, host, port}` for the runtime
  # (`nil` for a scheme or port the entry leaves open), the host in lower
  # case: `host`, `host:port`, `scheme://host` or `scheme://host:port`, the
  # scheme `http` or `https`, the host a name, an IPv4 address or an IPv6
  # one in brackets. Nothing else (no path, user, wildcard) is taken, so an
  # entry cannot mean more than it looks.
  @http_host ~r/\A(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)(?::([0-9]{1,5}))?\z/

  defp http_allow!(hosts) when is_list(hosts), do: Enum.map(hosts, &http_host!/1)
  defp http_allow!(other), do: bad!("wasi http_allow", "a list of hosts", other)

  defp http_host!(entry) when is_binary(entry) do
    {scheme, authority} =
      case String.split(entry, "://", parts: 2) do
        [scheme, authority] -> {String.downcase(scheme), authority}
        [authority] -> {nil, authority}
      end

    with true <- scheme in [nil, "http", "https"],
         [_, host | port] <- Regex.run(@http_host, authority),
         {:ok, port} <- http_port(port) do
      {scheme, String.downcase(host), port}
    else
      _ -> bad_http_host!(entry)
    end
  end

  defp http_host!(other), do: bad_http_host!(other)

  defp http_port([]), do: {:ok, nil}

  defp http_port([port]) do
    port = String.to_integer(port)
    if port in 1..65_535, do: {:ok, port}, else: :error
  end

  @spec bad_http_host!(term()) :: no_return()
  defp bad_http_host!(entry) do
    bad!("wasi http_allow", ~s{a list of "host", "host:port" or "http(s)://host[:port]" strings}, entry)
  end

  # A 32-bit guest cannot write more than 4 GiB at once anyway.
  @max_limit 4 * 1024 * 1024 * 1024

  defp limit!(_name, limit) when is_integer(limit) and limit >= 0 and limit <= @max_limit, do: limit

  defp limit!(name, other),
    do: bad!("wasi #{name}", "a non-negative integer of at most #{@max_limit}", other)

  @spec bad!(String.t(), String.t(), term()) :: no_return()
  defp bad!(name, expected, value) do
    raise ArgumentError, "#{name} must be #{expected}, got: #{inspect(value)}"
  end
end

defmodule Munition.Host.WASIContract do
  @moduledoc false
  # The WASI contract (Munition.Host.WASI, Munition.run/2), written once and
  # run against every engine, as Munition.Conformance is:
  # test/munition/host/wasi_test.exs uses it once per runtime. Where the
  # engines differ, the difference is asserted here, never
  # skipped.

  defmacro __using__(runtime: runtime) do
    quote do
      use ExUnit.Case, async: true

      @runtime unquote(runtime)

      defp run(wasm, opts \\ []), do: Munition.run(wasm, Keyword.put_new(opts, :runtime, @runtime))

      defp fire(wasm, function, args, opts \\ []),
        do: Munition.fire(wasm, function, args, Keyword.put_new(opts, :runtime, @runtime))

      alias Munition.Forensics.Dump
      alias Munition.Host.Capabilities

      @module "wasi_snapshot_preview1"

      # Errno values of WASI preview 1.
      @badf 8

      ## Guests. Memory: 0..8 an iovec, 8..12 a count the host writes, 16..64
      ## scratch, 64..256 pointers, 256.. subscriptions and events, 1024.. data,
      ## 2048.. buffers.

      defp rows, do: Enum.filter(Capabilities.builtins(), &(&1.module == @module))
      defp row(name), do: Enum.find(rows(), &(&1.name == name)) || flunk("no WASI function #{name}")

      defp import_line(name) do
        row = row(name)
        params = if row.params == [], do: "", else: "(param #{Enum.join(row.params, " ")})"
        results = if row.results == [], do: "", else: "(result #{Enum.join(row.results, " ")})"
        ~s{(import "#{@module}" "#{name}" (func $#{name} #{params} #{results}))}
      end

      # A module importing `names`, with `$write(fd, ptr, len) -> errno`
      # (needs fd_write) and `body` as its functions.
      defp guest(names, body, data \\ "") do
        write =
          if "fd_write" in names do
            """
            (func $write (param $fd i32) (param $ptr i32) (param $len i32) (result i32)
              (i32.store (i32.const 0) (local.get $ptr))
              (i32.store (i32.const 4) (local.get $len))
              (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8)))
            """
          else
            ""
          end

        """
        (module
          #{Enum.map_join(names, "\n", &import_line/1)}
          (memory (export "memory") 1)
          #{data}
          #{write}
          #{body})
        """
      end

      # `bytes` as a WAT string literal.
      defp wat_string(bytes), do: for(<<byte <- bytes>>, into: "", do: "\\" <> Base.encode16(<<byte>>))

      # A command printing `text` to `fd`.
      defp printer(text, fd \\ 1) do
        guest(
          ["fd_write"],
          ~s{(func (export "_start") (drop (call $write (i32.const #{fd}) (i32.const 1024) (i32.const #{byte_size(text)}))))},
          ~s{(data (i32.const 1024) "#{wat_string(text)}")}
        )
      end

      # Writes the buffer that `sizes`/`get` fill (args or environ) to stdout.
      defp lister(sizes, get) do
        guest(
          [sizes, get, "fd_write"],
          """
          (func (export "_start")
            (drop (call $#{sizes} (i32.const 16) (i32.const 20)))
            (drop (call $#{get} (i32.const 64) (i32.const 2048)))
            (drop (call $write (i32.const 1) (i32.const 2048) (i32.load (i32.const 20)))))
          """
        )
      end

      @echo """
      (func (export "_start")
        (i32.store (i32.const 0) (i32.const 2048))
        (i32.store (i32.const 4) (i32.const 4096))
        (drop (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
        (drop (call $write (i32.const 1) (i32.const 2048) (i32.load (i32.const 8)))))
      """

      defp exiter(code),
        do: guest(["proc_exit"], ~s{(func (export "_start") (call $proc_exit (i32.const #{code})))})

      # `sleep(ns)`: poll_oneoff on one relative monotonic clock subscription;
      # returns the errno, the number of events at 20.
      @sleep """
      (func $sleep (export "sleep") (param $ns i64) (result i32)
        (i64.store (i32.const 256) (i64.const 7))
        (i32.store8 (i32.const 264) (i32.const 0))
        (i32.store (i32.const 272) (i32.const 1))
        (i64.store (i32.const 280) (local.get $ns))
        (i64.store (i32.const 288) (i64.const 0))
        (i32.store16 (i32.const 296) (i32.const 0))
        (call $poll_oneoff (i32.const 256) (i32.const 512) (i32.const 1) (i32.const 20)))
      (func (export "events") (result i32) (i32.load (i32.const 20)))
      (func (export "event_userdata") (result i64) (i64.load (i32.const 512)))
      """

      @now """
      (func $now (export "now") (param $clock i32) (result i64)
        (drop (call $clock_time_get (local.get $clock) (i64.const 0) (i32.const 16)))
        (i64.load (i32.const 16)))
      """

      defp tmp_dir(tag) do
        dir = Munition.Tmp.path("wasi-#{tag}")

        File.rm_rf!(dir)
        File.mkdir_p!(dir)
        on_exit(fn -> File.rm_rf!(dir) end)
        dir
      end

      # A preopen `data/` holding hello.txt, next to secret.txt outside it, and a
      # symlink in it pointing at the secret.
      defp sandbox do
        root = tmp_dir("fs")
        data = Path.join(root, "data")
        File.mkdir_p!(data)
        File.write!(Path.join(data, "hello.txt"), "file contents")
        secret = Path.join(root, "secret.txt")
        File.write!(secret, "the secret")
        File.ln_s!(secret, Path.join(data, "link"))
        %{root: root, data: data, secret: secret}
      end

      # `cat()`: opens `path` under the preopen (fd 3), reads it to stdout;
      # returns path_open's errno. `create(text)`: creates `path` and writes
      # into it; returns the first errno.
      defp file_guest(path) do
        guest(
          ["path_open", "fd_read", "fd_write"],
          """
          (func (export "cat") (result i32) (local $errno i32)
            (local.set $errno (call $path_open (i32.const 3) (i32.const 1) (i32.const 1024) (i32.const #{byte_size(path)})
              (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 24)))
            (if (local.get $errno) (then (return (local.get $errno))))
            (i32.store (i32.const 0) (i32.const 2048))
            (i32.store (i32.const 4) (i32.const 4096))
            (drop (call $fd_read (i32.load (i32.const 24)) (i32.const 0) (i32.const 1) (i32.const 8)))
            (drop (call $write (i32.const 1) (i32.const 2048) (i32.load (i32.const 8))))
            (i32.const 0))
          (func (export "create") (result i32) (local $errno i32)
            (local.set $errno (call $path_open (i32.const 3) (i32.const 0) (i32.const 1024) (i32.const #{byte_size(path)})
              (i32.const 1) (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 24)))
            (if (local.get $errno) (then (return (local.get $errno))))
            (call $write (i32.load (i32.const 24)) (i32.const 1536) (i32.const 7)))
          """,
          ~s{(data (i32.const 1024) "#{wat_string(path)}") (data (i32.const 1536) "written")}
        )
      end

      # Every file function but fd_renumber, each called with honest
      # arguments on one descriptor (`probe(fd)`, its errnos in this order):
      # "hello.txt" at 1024 and "new" at 1040 its paths, an iovec at 0 over
      # "LEAKED" at 2048. Then "ok" is written to stdout: stdio still works.
      # `fileprobe()` opens hello.txt under the preopen (fd 3) for reading
      # and probes the file it gets.
      @probed [
        {"path_open", "$fd 0 1024 9 0 (i64 2) (i64 0) 0 24"},
        {"path_filestat_get", "$fd 0 1024 9 2112"},
        {"path_readlink", "$fd 1024 9 3072 64 16"},
        {"fd_pread", "$fd 0 1 (i64 0) 16"},
        {"fd_readdir", "$fd 3072 256 (i64 0) 16"},
        {"fd_filestat_get", "$fd 2112"},
        {"fd_advise", "$fd (i64 0) (i64 0) 0"},
        {"fd_fdstat_set_flags", "$fd 0"},
        {"fd_fdstat_set_rights", "$fd (i64 0) (i64 0)"},
        {"fd_sync", "$fd"},
        {"fd_datasync", "$fd"},
        {"fd_pwrite", "$fd 0 1 (i64 0) 16"},
        {"fd_allocate", "$fd (i64 0) (i64 1)"},
        {"fd_filestat_set_size", "$fd (i64 0)"},
        {"fd_filestat_set_times", "$fd (i64 0) (i64 0) 2"},
        {"path_create_directory", "$fd 1040 3"},
        {"path_filestat_set_times", "$fd 0 1024 9 (i64 0) (i64 0) 2"},
        {"path_link", "$fd 0 1024 9 $fd 1040 3"},
        {"path_remove_directory", "$fd 1024 9"},
        {"path_rename", "$fd 1024 9 $fd 1040 3"},
        {"path_symlink", "1024 9 $fd 1040 3"},
        {"path_unlink_file", "$fd 1024 9"}
      ]

      defp probed, do: Enum.map(@probed, &elem(&1, 0))

      defp probe_guest do
        args = fn text ->
          text
          |> String.split(~r/(\(i64 \d+\)|\S+)/, include_captures: true, trim: true)
          |> Enum.reject(&(String.trim(&1) == ""))
          |> Enum.map_join(" ", fn
            "$fd" -> "(local.get $fd)"
            "(i64 " <> n -> "(i64.const #{String.trim_trailing(n, ")")})"
            n -> "(i32.const #{n})"
          end)
        end

        results = Enum.map_join(@probed, " ", fn _ -> "i32" end)

        guest(
          ["fd_write" | probed()],
          """
          (func $probe (export "probe") (param $fd i32) (result #{results})
            (i32.store (i32.const 0) (i32.const 2048)) (i32.store (i32.const 4) (i32.const 6))
            #{Enum.map_join(@probed, "\n", fn {name, text} -> "(call $#{name} #{args.(text)})" end)}
            (drop (call $write (i32.const 1) (i32.const 1056) (i32.const 2))))
          (func (export "fileprobe") (result #{results})
            (drop (call $path_open (i32.const 3) (i32.const 0) (i32.const 1024) (i32.const 9)
              (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 24)))
            (call $probe (i32.load (i32.const 24))))
          (func (export "trap") unreachable)
          """,
          ~s{(data (i32.const 1024) "hello.txt") (data (i32.const 1040) "new") (data (i32.const 1056) "ok")} <>
            ~s{(data (i32.const 2048) "LEAKED")}
        )
      end

      # What the metadata and the dump say of `names` linked inert.
      defp inert(names) do
        for name <- names, capability = row(name).capability, capability in [:wasi_fs, :wasi_fs_write] do
          reason = if capability == :wasi_fs, do: :no_preopen, else: :no_writable_preopen
          %{module: @module, name: name, needs: capability, reason: reason}
        end
      end

      # Everything under `dir`, with the contents of its files.
      defp tree(dir) do
        for path <- Path.wildcard(Path.join(dir, "**"), match_dot: true), into: %{} do
          {Path.relative_to(path, dir), if(File.regular?(path), do: File.read!(path), else: :dir)}
        end
      end

      describe "the table" do
        test "every WASI function but sockets and proc_raise is a built-in under one WASI capability" do
          names = Enum.map(rows(), & &1.name)
          assert length(names) == 41
          assert length(Enum.uniq(names)) == 41
          refute Enum.any?(names, &String.starts_with?(&1, "sock_"))
          refute "proc_raise" in names

          assert rows() |> Enum.map(& &1.capability) |> Enum.uniq() |> Enum.sort() ==
                   [:wasi_args, :wasi_clock, :wasi_env, :wasi_exit, :wasi_fs, :wasi_fs_write] ++
                     [:wasi_poll, :wasi_random, :wasi_stdio]

          assert row("fd_write").capability == :wasi_stdio
          assert row("path_open").capability == :wasi_fs
          assert row("path_unlink_file").capability == :wasi_fs_write
          assert row("poll_oneoff").capability == :wasi_poll
        end

        test "the :wasi group is everything but the filesystem; :all grants no WASI" do
          assert Capabilities.expand!([:wasi]) ==
                   [:wasi_args, :wasi_clock, :wasi_env, :wasi_exit, :wasi_poll, :wasi_random, :wasi_stdio]

          assert Capabilities.expand!([:all]) == [:abort, :log, :random, :time]
        end

        test "each capability grants its functions and nothing else; :wasi_stdio links the file functions inert" do
          for capability <- Enum.uniq(Enum.map(rows(), & &1.capability)) do
            {mine, others} = Enum.split_with(rows(), &(&1.capability == capability))

            # Every file function but fd_renumber (see "files out of reach").
            inert =
              if capability == :wasi_stdio,
                do:
                  Enum.filter(
                    others,
                    &(&1.capability in [:wasi_fs, :wasi_fs_write] and &1.name != "fd_renumber")
                  ),
                else: []

            wat = guest(Enum.map(rows(), & &1.name), "")
            assert {:error, {:capability_denied, denied}} = Munition.validate(wat, capabilities: [capability])
            assert Enum.map(denied, & &1.name) == Enum.map(others -- inert, & &1.name)
            assert Enum.all?(denied, &(&1.needs == row(&1.name).capability))
            assert mine != []
          end

          assert length(probed()) == 22
        end

        test "denied imports name the capability that grants them; sockets need nothing grantable" do
          wat = """
          (module
            (import "#{@module}" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
            (import "#{@module}" "path_open" (func (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
            (import "#{@module}" "fd_renumber" (func (param i32 i32) (result i32)))
            (import "#{@module}" "sock_accept" (func (param i32 i32 i32) (result i32)))
            (import "#{@module}" "proc_raise" (func (param i32) (result i32))))
          """

          # path_open is linked inert under :wasi (see "files out of reach").
          assert Munition.validate(wat, capabilities: [:wasi]) ==
                   {:error,
                    {:capability_denied,
                     [
                       %{module: @module, name: "fd_renumber", needs: :wasi_fs},
                       %{module: @module, name: "sock_accept", needs: nil},
                       %{module: @module, name: "proc_raise", needs: nil}
                     ]}}

          # Without :wasi_stdio nothing is linked inert.
          assert {:error, {:capability_denied, denied}} = Munition.validate(wat, capabilities: [:wasi_clock])
          assert %{module: @module, name: "path_open", needs: :wasi_fs} in denied

          assert {:error, {:capability_denied, [%{name: "fd_write", needs: :wasi_stdio} | _]}} = run(wat)
        end
      end

      describe "stdout and stderr" do
        test "are captured, never reaching the host's" do
          assert {:ok, 0, %{stdout: "hello\n", stderr: "", stdout_truncated: false, stderr_truncated: false}} =
                   run(printer("hello\n"), capabilities: [:wasi])

          assert {:ok, 0, %{stdout: "", stderr: "oops"}} = run(printer("oops", 2), capabilities: [:wasi])
        end

        test "are bounded: past the limit the rest is dropped and marked truncated" do
          assert {:ok, 0, %{stdout: "hel", stdout_truncated: true, stderr_truncated: false}} =
                   run(printer("hello"), capabilities: [:wasi], wasi: [stdout_limit: 3])

          assert {:ok, 0, %{stderr: "", stderr_truncated: true}} =
                   run(printer("hello", 2), capabilities: [:wasi], wasi: [stderr_limit: 0])
        end

        test "the guest is told its writes succeeded, truncated or not" do
          wat =
            guest(
              ["fd_write"],
              ~s{(func (export "run") (result i32 i32) (call $write (i32.const 1) (i32.const 1024) (i32.const 5)) (i32.load (i32.const 8)))},
              ~s{(data (i32.const 1024) "hello")}
            )

          assert {:ok, [0, 5], %{stdout: "he", stdout_truncated: true}} =
                   fire(wat, "run", [], capabilities: [:wasi_stdio], wasi: [stdout_limit: 2])
        end

        test "bytes written are paid for in fuel" do
          wat =
            guest(
              ["fd_write"],
              ~s{(func (export "run") (result i32) (call $write (i32.const 1) (i32.const 0) (i32.const 65536)))}
            )

          assert {:crash, :fuel_exhausted, _} = fire(wat, "run", [], capabilities: [:wasi], fuel: 5_000)
          assert {:ok, 0, %{fuel_consumed: fuel}} = fire(wat, "run", [], capabilities: [:wasi])
          assert fuel > 65_536 / 8
        end

        test "a call without a WASI configuration has no output keys; one with the :wasi option has them" do
          wat = ~s{(module (func (export "f") (result i32) i32.const 1))}
          assert {:ok, 1, meta} = fire(wat, "f", [])
          refute Map.has_key?(meta, :stdout)
          refute Map.has_key?(meta, :output)
          assert {:ok, 1, %{stdout: "", stderr: ""}} = fire(wat, "f", [], wasi: [])
        end
      end

      describe "stdin, args and env" do
        test "stdin is the binary given, and empty by default" do
          wat = guest(["fd_read", "fd_write"], @echo)

          assert {:ok, 0, %{stdout: "from the host"}} =
                   run(wat, capabilities: [:wasi], wasi: [stdin: "from the host"])

          assert {:ok, 0, %{stdout: ""}} = run(wat, capabilities: [:wasi])
        end

        test "args are the ones given" do
          wat = lister("args_sizes_get", "args_get")

          assert {:ok, 0, %{stdout: "prog\0a b\0"}} =
                   run(wat, capabilities: [:wasi_args, :wasi_stdio], wasi: [args: ["prog", "a b"]])

          # By default, one argument: a program's name, as toolchains' start-up code expects.
          assert {:ok, 0, %{stdout: "main\0"}} = run(wat, capabilities: [:wasi])
          assert {:ok, 0, %{stdout: ""}} = run(wat, capabilities: [:wasi], wasi: [args: []])
        end

        test "the host's environment is never inherited; the env given is" do
          System.put_env("MUNITION_SECRET", "hunter2")
          on_exit(fn -> System.delete_env("MUNITION_SECRET") end)
          wat = lister("environ_sizes_get", "environ_get")

          assert {:ok, 0, %{stdout: ""}} = run(wat, capabilities: [:wasi])

          assert {:ok, 0, %{stdout: "K=V\0"}} = run(wat, capabilities: [:wasi], wasi: [env: [{"K", "V"}]])

          assert {:ok, 0, %{stdout: "A=1\0MUNITION_SECRET=given\0"}} =
                   run(wat,
                     capabilities: [:wasi],
                     wasi: [env: %{"MUNITION_SECRET" => "given", "A" => "1"}]
                   )
        end

        test "bad options raise ArgumentError naming the value" do
          wat = printer("x")
          assert_raise ArgumentError, ~r/wasi args .* got: 42/, fn -> run(wat, wasi: [args: [42]]) end
          assert_raise ArgumentError, ~r/got: "A=B"/, fn -> run(wat, wasi: [env: [{"A=B", "1"}]]) end
          assert_raise ArgumentError, ~r/got: :stdin/, fn -> run(wat, wasi: [stdin: :stdin]) end
          assert_raise ArgumentError, ~r/got: -1/, fn -> run(wat, wasi: [stdout_limit: -1]) end
          assert_raise ArgumentError, ~r/got: :wall/, fn -> run(wat, wasi: [clock: :wall]) end
          assert_raise ArgumentError, ~r/unknown wasi option :net/, fn -> run(wat, wasi: [net: true]) end

          assert_raise ArgumentError, ~r/got: "\/nonexistent"/, fn ->
            run(wat, wasi: [preopens: [{"/", "/nonexistent"}]])
          end

          assert_raise ArgumentError, ~r/got: <<97, 0, 98>>/, fn -> run(wat, wasi: [args: ["a\0b"]]) end

          assert_raise ArgumentError, ~r/wasi must be a keyword list, got: "x"/, fn ->
            run(wat, wasi: "x")
          end
        end
      end

      describe "exit codes" do
        test "proc_exit(n) is the result of run/2, not a crash" do
          assert {:ok, 0, %{exit_code: 0}} = run(exiter(0), capabilities: [:wasi])
          assert {:ok, 3, %{exit_code: 3, stdout: ""}} = run(exiter(3), capabilities: [:wasi])
          assert {:ok, 4_294_967_295, _} = run(exiter(-1), capabilities: [:wasi])
        end

        test "a _start that returns exits with 0" do
          assert {:ok, 0, %{exit_code: 0, stdout: "bye"}} = run(printer("bye"), capabilities: [:wasi])
        end

        test "in fire/4, proc_exit ends the call with {:ok, nil, %{exit_code: n}}" do
          wat =
            guest(
              ["proc_exit"],
              ~s{(func (export "run") (result i32) (call $proc_exit (i32.const 5)) (i32.const 1))}
            )

          assert {:ok, nil, %{exit_code: 5}} = fire(wat, "run", [], capabilities: [:wasi])
        end

        test "proc_exit in the start function ends the call too" do
          wat =
            guest(
              ["proc_exit"],
              ~s{(func $s (call $proc_exit (i32.const 2))) (start $s) (func (export "run"))}
            )

          assert {:ok, nil, %{exit_code: 2}} = fire(wat, "run", [], capabilities: [:wasi])
        end

        test "a module without _start is not a command" do
          assert {:error, {:function_not_found, "_start"}} =
                   run(~s{(module (func (export "main")))}, capabilities: [:wasi])
        end

        test "a trap in _start is a crash, with the output written so far in the dump" do
          wat =
            guest(
              ["fd_write"],
              ~s{(func (export "_start") (drop (call $write (i32.const 1) (i32.const 1024) (i32.const 6))) unreachable)},
              ~s{(data (i32.const 1024) "before")}
            )

          assert {:crash, :trap,
                  %Dump{trap: :unreachable, stdout: "before", stderr: "", stdout_truncated: false}} =
                   run(wat, capabilities: [:wasi])
        end
      end

      describe "reactors" do
        test "fire/4 calls _initialize before the export" do
          wat = """
          (module
            (global $ready (mut i32) (i32.const 0))
            (func (export "_initialize") (global.set $ready (i32.const 42)))
            (func (export "get") (result i32) (global.get $ready)))
          """

          assert {:ok, 42, _} = fire(wat, "get", [])
          assert {:ok, nil, _} = fire(wat, "_initialize", [])
        end

        test "a reactor's _initialize may use WASI, and its trap is the call's crash" do
          wat =
            guest(
              ["fd_write"],
              """
              (global $calls (mut i32) (i32.const 0))
              (func (export "_initialize")
                (global.set $calls (i32.add (global.get $calls) (i32.const 1)))
                (drop (call $write (i32.const 1) (i32.const 1024) (i32.const 5))))
              (func (export "get") (result i32) (global.get $calls))
              """,
              ~s{(data (i32.const 1024) "init\\n")}
            )

          assert {:ok, 1, %{stdout: "init\n"}} = fire(wat, "get", [], capabilities: [:wasi])

          trapping =
            ~s{(module (func (export "_initialize") unreachable) (func (export "get") (result i32) i32.const 1))}

          assert {:crash, :trap, %Dump{trap: :unreachable}} = fire(trapping, "get", [])
        end
      end

      describe "time" do
        test "a short sleep suspends and returns its clock event" do
          wat = guest(["poll_oneoff"], @sleep)
          assert {:ok, 0, _} = fire(wat, "sleep", [1_000_000], capabilities: [:wasi])
        end

        test "a guest asleep past its deadline ends as a timeout, with its output so far" do
          wat =
            guest(
              ["fd_write", "poll_oneoff"],
              @sleep <>
                ~s{(func (export "_start") (drop (call $write (i32.const 1) (i32.const 1024) (i32.const 7))) (drop (call $sleep (i64.const 3600000000000))))},
              ~s{(data (i32.const 1024) "before\\n")}
            )

          assert {:crash, :timeout, %Dump{trap: :interrupt, stdout: "before\n", message: message}} =
                   run(wat, capabilities: [:wasi], timeout: 100)

          assert message =~ "slept"
          refute_received _
        end

        test "the deterministic clock starts at 2000-01-01 and advances with fuel and sleeps, reproducibly" do
          wat =
            guest(
              ["clock_time_get", "poll_oneoff"],
              @now <>
                @sleep <>
                """
                (func (export "slept") (result i64) (local $before i64)
                  (local.set $before (call $now (i32.const 1)))
                  (drop (call $sleep (i64.const 3600000000000)))
                  (i64.sub (call $now (i32.const 1)) (local.get $before)))
                """
            )

          opts = [capabilities: [:wasi], wasi: [clock: :deterministic]]
          assert {:ok, wall, _} = fire(wat, "now", [0], opts)
          assert {:ok, ^wall, _} = fire(wat, "now", [0], opts)
          assert wall > 946_684_800_000_000_000 and wall < 946_684_800_000_000_000 + 1_000_000
          assert {:ok, monotonic, _} = fire(wat, "now", [1], opts)
          assert monotonic == wall - 946_684_800_000_000_000

          # An hour's sleep takes no real time (the default timeout is 5 s).
          assert {:ok, slept, _} = fire(wat, "slept", [], opts)
          assert slept >= 3_600_000_000_000 and slept < 3_600_000_000_000 + 1_000_000
          assert {:ok, ^slept, _} = fire(wat, "slept", [], opts)
        end

        test "the real clock is the host's" do
          wat = guest(["clock_time_get"], @now)
          # Bracketed by the host's clock read before and after: no time bound.
          before = System.os_time(:nanosecond)
          assert {:ok, wall, _} = fire(wat, "now", [0], capabilities: [:wasi_clock])
          assert wall >= before and wall <= System.os_time(:nanosecond)

          assert {:ok, @badf, _} =
                   fire(
                     guest(
                       ["clock_time_get"],
                       ~s{(func (export "cpu") (result i32) (call $clock_time_get (i32.const 2) (i64.const 0) (i32.const 16)))}
                     ),
                     "cpu",
                     [],
                     capabilities: [:wasi]
                   )
        end

        test "poll_oneoff reports stdin ready and a bad descriptor as EBADF" do
          wat =
            guest(
              ["poll_oneoff"],
              """
              (func (export "poll") (param $fd i32) (result i32 i32 i32)
                (i32.store8 (i32.const 264) (i32.const 1))
                (i32.store (i32.const 272) (local.get $fd))
                (call $poll_oneoff (i32.const 256) (i32.const 512) (i32.const 1) (i32.const 20))
                (i32.load (i32.const 20))
                (i32.load16_u (i32.const 520)))
              """
            )

          assert {:ok, [0, 1, 0], _} = fire(wat, "poll", [0], capabilities: [:wasi])
          assert {:ok, [0, 1, @badf], _} = fire(wat, "poll", [1], capabilities: [:wasi])
          assert {:ok, [0, 1, @badf], _} = fire(wat, "poll", [99], capabilities: [:wasi])
        end
      end

      describe "random" do
        test "random_get fills guest memory, paid for in fuel" do
          wat =
            guest(
              ["random_get"],
              ~s{(func (export "fill") (param $len i32) (result i32) (call $random_get (i32.const 2048) (local.get $len)))}
            )

          assert {:ok, 0, %{fuel_consumed: fuel}} = fire(wat, "fill", [32_768], capabilities: [:wasi])
          assert fuel > 32_768 / 8

          assert {:crash, :fuel_exhausted, _} =
                   fire(wat, "fill", [32_768], capabilities: [:wasi], fuel: 1_000)

          assert {:crash, :trap, %Dump{trap: :memory_out_of_bounds, message: message}} =
                   fire(wat, "fill", [65_536], capabilities: [:wasi])

          assert message =~ "random_get"
        end
      end

      describe "files" do
        test "a preopen is read under :wasi_fs" do
          box = sandbox()

          assert {:ok, 0, %{stdout: "file contents"}} =
                   fire(file_guest("hello.txt"), "cat", [],
                     capabilities: [:wasi, :wasi_fs],
                     wasi: [preopens: [{"/data", box.data}]]
                   )
        end

        test "no path leads out of a preopen: .., an absolute path, a symlink" do
          box = sandbox()
          opts = [capabilities: [:wasi, :wasi_fs], wasi: [preopens: [{"/data", box.data}]]]

          for path <- ["../secret.txt", "/etc/passwd", box.secret, "link", "./../data/../secret.txt"] do
            assert {:ok, errno, %{stdout: ""}} = fire(file_guest(path), "cat", [], opts)
            assert errno != 0, "#{path} was opened"
          end
        end

        # Wasmtime runs them off the schedulers, Wasmi on the slice's thread.
        test "file operations, repeated, leave nothing in the caller's mailbox" do
          box = sandbox()
          opts = [capabilities: [:wasi, :wasi_fs], wasi: [preopens: [{"/data", box.data}]]]

          for _ <- 1..20 do
            assert {:ok, 0, %{stdout: "file contents"}} = fire(file_guest("hello.txt"), "cat", [], opts)
          end

          refute_received _
        end

        test "a hard link from a read-only preopen into a writable one is refused: the file stays read-only" do
          box = sandbox()
          out = Path.join(box.root, "out")
          File.mkdir_p!(out)

          # path_link(3: /data read-only, "hello.txt", 4: /out writable, "x"),
          # then the same from /out to /out.
          wat =
            guest(
              ["path_link"],
              """
              (func (export "link") (result i32 i32)
                (call $path_link (i32.const 3) (i32.const 0) (i32.const 1024) (i32.const 9)
                  (i32.const 4) (i32.const 1040) (i32.const 1))
                (call $path_link (i32.const 4) (i32.const 0) (i32.const 1048) (i32.const 1)
                  (i32.const 4) (i32.const 1056) (i32.const 1)))
              """,
              ~s{(data (i32.const 1024) "hello.txt") (data (i32.const 1040) "x") } <>
                ~s{(data (i32.const 1048) "y") (data (i32.const 1056) "z")}
            )

          File.write!(Path.join(out, "y"), "mine")

          opts = [
            capabilities: [:wasi, :wasi_fs, :wasi_fs_write],
            wasi: [preopens: [{"/data", box.data}, {"/out", out, :read_write}]]
          ]

          # EPERM from the read-only side; a link within the writable one is made.
          assert {:ok, [63, 0], _} = fire(wat, "link", [], opts)
          refute File.exists?(Path.join(out, "x"))
          assert File.read!(Path.join(out, "z")) == "mine"
        end

        test "a file's life: the same errnos and results on every engine" do
          box = sandbox()

          names =
            ~w(fd_write fd_read fd_seek fd_tell fd_pwrite fd_pread fd_filestat_get fd_readdir fd_close) ++
              ~w(path_open path_create_directory path_rename path_unlink_file path_remove_directory) ++
              ~w(path_filestat_get)

          fd = "(i32.load (i32.const 24))"

          wat =
            guest(
              names,
              """
              (func (export "life") (result i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i64 i64 i32 i32)
                (i32.store (i32.const 40) (i32.const 1552)) (i32.store (i32.const 44) (i32.const 6))
                (i32.store (i32.const 56) (i32.const 2560)) (i32.store (i32.const 60) (i32.const 64))
                (call $path_create_directory (i32.const 3) (i32.const 1024) (i32.const 1))
                (call $path_create_directory (i32.const 3) (i32.const 1024) (i32.const 1))
                (call $path_open (i32.const 3) (i32.const 0) (i32.const 1040) (i32.const 3)
                  (i32.const 1) (i64.const 66) (i64.const 0) (i32.const 0) (i32.const 24))
                (call $write #{fd} (i32.const 1536) (i32.const 5))
                (call $fd_pwrite #{fd} (i32.const 40) (i32.const 1) (i64.const 5) (i32.const 48))
                (call $fd_seek #{fd} (i64.const 0) (i32.const 0) (i32.const 32))
                (call $fd_pread #{fd} (i32.const 56) (i32.const 1) (i64.const 0) (i32.const 52))
                (drop (call $write (i32.const 1) (i32.const 2560) (i32.load (i32.const 52))))
                (call $fd_filestat_get #{fd} (i32.const 2048))
                (call $fd_seek #{fd} (i64.const -1) (i32.const 0) (i32.const 32))
                (call $fd_tell #{fd} (i32.const 32))
                (call $path_rename (i32.const 3) (i32.const 1040) (i32.const 3) (i32.const 3) (i32.const 1056) (i32.const 3))
                (call $path_unlink_file (i32.const 3) (i32.const 1040) (i32.const 3))
                (call $path_remove_directory (i32.const 3) (i32.const 1024) (i32.const 1))
                (call $path_filestat_get (i32.const 3) (i32.const 0) (i32.const 1056) (i32.const 3) (i32.const 2112))
                (call $fd_readdir (i32.const 3) (i32.const 3072) (i32.const 1024) (i64.const 0) (i32.const 16))
                (call $fd_close #{fd})
                (call $fd_close #{fd})
                (i64.load (i32.const 2080))
                (i64.load (i32.const 2144))
                (i32.load8_u (i32.const 2128))
                (i32.load (i32.const 16)))
              (func (export "refused") (result i32 i32 i32)
                (call $path_open (i32.const 3) (i32.const 1) (i32.const 1072) (i32.const 13)
                  (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 24))
                (call $path_open (i32.const 3) (i32.const 0) (i32.const 1040) (i32.const 3)
                  (i32.const 1) (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 24))
                (call $fd_read (i32.const 3) (i32.const 56) (i32.const 1) (i32.const 52)))
              """,
              ~s{(data (i32.const 1024) "d") (data (i32.const 1040) "d/f") (data (i32.const 1056) "d/g")} <>
                ~s{(data (i32.const 1072) "../secret.txt") (data (i32.const 1536) "hello") (data (i32.const 1552) " world")}
            )

          writable = [
            capabilities: [:wasi, :wasi_fs, :wasi_fs_write],
            wasi: [preopens: [{"/data", box.data, :read_write}]]
          ]

          # created, EEXIST, opened, written, pwritten, sought, pread, stat,
          # EINVAL, told, renamed, ENOENT, ENOTEMPTY, stat, listed, closed,
          # EBADF; the sizes stat found, the file type (regular), the bytes
          # listed (., .., hello.txt, link, d: five 24-byte headers and names)
          assert {:ok, [0, 20, 0, 0, 0, 0, 0, 0, 28, 0, 0, 44, 55, 0, 0, 0, 8, 11, 11, 4, 137],
                  %{stdout: "hello world"}} = fire(wat, "life", [], writable)

          assert File.read!(Path.join([box.data, "d", "g"])) == "hello world"
          refute File.exists?(Path.join([box.data, "d", "f"]))

          # The escape, a write under a read-only preopen, a read of a directory.
          read_only = [
            capabilities: [:wasi, :wasi_fs, :wasi_fs_write],
            wasi: [preopens: [{"/data", box.data}]]
          ]

          assert {:ok, [63, 63, 8], _} = fire(wat, "refused", [], read_only)
        end

        test "preopens are given only with :wasi_fs" do
          box = sandbox()

          wat =
            guest(
              ["fd_prestat_get"],
              ~s{(func (export "pre") (result i32) (call $fd_prestat_get (i32.const 3) (i32.const 16)))}
            )

          opts = [wasi: [preopens: [{"/data", box.data}]]]
          assert {:ok, @badf, _} = fire(wat, "pre", [], [capabilities: [:wasi]] ++ opts)
          assert {:ok, 0, _} = fire(wat, "pre", [], [capabilities: [:wasi, :wasi_fs]] ++ opts)
        end

        test "writes need a :read_write preopen and :wasi_fs_write" do
          box = sandbox()
          wat = file_guest("new.txt")
          created = Path.join(box.data, "new.txt")

          for {caps, mode} <- [
                {[:wasi, :wasi_fs, :wasi_fs_write], :read_only},
                {[:wasi, :wasi_fs], :read_write}
              ] do
            assert {:ok, errno, _} =
                     fire(wat, "create", [],
                       capabilities: caps,
                       wasi: [preopens: [{"/data", box.data, mode}]]
                     )

            assert errno != 0
            refute File.exists?(created)
          end

          assert {:ok, 0, _} =
                   fire(wat, "create", [],
                     capabilities: [:wasi, :wasi_fs, :wasi_fs_write],
                     wasi: [preopens: [{"/data", box.data, :read_write}]]
                   )

          assert File.read!(created) == "written"
        end
      end

      describe "files out of reach (inert links)" do
        test "under :wasi, every file function but fd_renumber is linked inert, and the metadata says so" do
          assert {:ok, _errnos, %{inert_links: inert_links, capabilities: granted}} =
                   fire(probe_guest(), "probe", [3], capabilities: [:wasi])

          assert inert_links == inert(probed())
          assert granted == Capabilities.expand!([:wasi])
          assert Enum.count(inert_links, &(&1.reason == :no_preopen)) == 11

          # Granted, nothing is inert; with :wasi_fs alone, the writes are.
          assert {:ok, _, %{inert_links: []}} =
                   fire(probe_guest(), "probe", [3], capabilities: [:wasi, :wasi_fs, :wasi_fs_write])

          assert {:ok, _, %{inert_links: writes}} =
                   fire(probe_guest(), "probe", [3], capabilities: [:wasi, :wasi_fs])

          assert writes == Enum.filter(inert(probed()), &(&1.needs == :wasi_fs_write))

          # A call with no WASI has none, and says so.
          assert {:ok, 1, %{inert_links: []}} =
                   fire(~s{(module (func (export "f") (result i32) i32.const 1))}, "f", [])
        end

        test "with no directory, each answers WASI's errno on stdio and beyond, and the host is untouched" do
          box = sandbox()
          before = tree(box.root)

          # Preopens given without :wasi_fs are not given to the guest.
          opts = [capabilities: [:wasi], wasi: [preopens: [{"/data", box.data, :read_write}]]]

          # EBADF everywhere: no descriptor is a directory, stdio is no file;
          # but stdin cannot fd_pread and stdout and stderr cannot fd_pwrite
          # (ESPIPE), and stdio's fd_filestat_get is the zero stat.
          badf = List.duplicate(@badf, 22)
          stdio = List.replace_at(badf, 5, 0)

          for {fd, errnos} <- [
                {0, List.replace_at(stdio, 3, 70)},
                {1, List.replace_at(stdio, 11, 70)},
                {2, List.replace_at(stdio, 11, 70)},
                {3, badf},
                {4, badf}
              ] do
            assert {:ok, ^errnos, %{stdout: "ok", stderr: ""}} = fire(probe_guest(), "probe", [fd], opts)
          end

          assert tree(box.root) == before
        end

        test "under a read-only directory, the write functions are linked inert and change nothing" do
          box = sandbox()
          before = tree(box.root)

          # Marked :read_write, but without :wasi_fs_write the preopen is read-only.
          opts = [capabilities: [:wasi, :wasi_fs], wasi: [preopens: [{"/data", box.data, :read_write}]]]

          # On the directory: the reads work (path_open opens hello.txt, its
          # stat, the listing: 0), the writes are EBADF (no file) or EPERM.
          assert {:ok, [0, 0, 28, @badf, 0, 0 | errnos], %{stdout: "ok"}} =
                   fire(probe_guest(), "probe", [3], opts)

          assert Enum.drop(errnos, 5) == [@badf, @badf, @badf, 63, 63, 63, 63, 63, 63, 63, 63]

          # On a file opened for reading: every write is refused (the errnos
          # differ between the engines, not what they refuse).
          assert {:ok, [_, _, _, 0, _, 0 | errnos], %{stdout: "ok"}} =
                   fire(probe_guest(), "fileprobe", [], opts)

          assert errnos |> Enum.drop(5) |> Enum.all?(&(&1 != 0))

          assert tree(box.root) == before
        end

        test "with a preopen and :wasi_fs, path_open opens the file; nothing is inert with :wasi_fs_write too" do
          box = sandbox()

          assert {:ok, 0, %{stdout: "file contents", inert_links: []}} =
                   fire(file_guest("hello.txt"), "cat", [],
                     capabilities: [:wasi, :wasi_fs],
                     wasi: [preopens: [{"/data", box.data}]]
                   )

          # The same guest under :wasi: no directory, so EBADF.
          assert {:ok, @badf, %{stdout: "", inert_links: [%{name: "path_open", reason: :no_preopen}]}} =
                   fire(file_guest("hello.txt"), "cat", [],
                     capabilities: [:wasi],
                     wasi: [preopens: [{"/data", box.data}]]
                   )
        end

        # It is the one file function that acts on stdio with no directory.
        test "fd_renumber is never inert: on Wasmtime it moves stdio, on Wasmi it cannot" do
          wat =
            guest(
              ["fd_renumber", "fd_write"],
              """
              (func (export "run") (result i32)
                (call $fd_renumber (i32.const 1) (i32.const 2))
                (drop (call $write (i32.const 2) (i32.const 1024) (i32.const 2))))
              """,
              ~s{(data (i32.const 1024) "ok")}
            )

          assert {:error, {:capability_denied, [%{name: "fd_renumber", needs: :wasi_fs}]}} =
                   fire(wat, "run", [], capabilities: [:wasi])

          # Stdout moved onto stderr's number on Wasmtime: "ok" goes to stdout.
          expected =
            if @runtime == Munition.Runtime.Wasmi,
              do: {@badf, "", "ok"},
              else: {0, "ok", ""}

          assert {:ok, errno, %{stdout: stdout, stderr: stderr}} =
                   fire(wat, "run", [], capabilities: [:wasi, :wasi_fs])

          assert {errno, stdout, stderr} == expected
        end

        test "a crash's dump lists the inert links, in its file too" do
          assert {:crash, :trap, %Dump{inert_links: inert_links} = dump} =
                   fire(probe_guest(), "trap", [], capabilities: [:wasi])

          assert inert_links == inert(probed())
          assert {:ok, %Dump{inert_links: ^inert_links}} = Dump.deserialize(Dump.serialize(dump))
        end

        test "a pool links them once, and every call's metadata says so" do
          name = :"wasi_inert_pool_#{System.unique_integer([:positive])}"

          start_supervised!(
            {Munition.Pool, name: name, wasm: probe_guest(), capabilities: [:wasi], runtime: @runtime}
          )

          expected = inert(probed())

          assert {:ok, _, %{inert_links: ^expected}} = Munition.fire_pooled(name, "probe", [1])

          assert {:ok, _, %{inert_links: ^expected}} =
                   Munition.fire_pooled(name, "probe", [1], fuel: 1_000_000)
        end
      end

      describe "hostile guests" do
        # Every parameter a wild pointer, a huge length or a bad descriptor, in
        # four patterns, into every WASI function (but proc_exit, which ends the
        # call): each returns an errno, or traps cleanly on a pointer outside
        # memory (as WASI says a function shall), and the VM and the next call
        # live.
        test "hostile pointers and lengths into every WASI function return an errno or trap cleanly" do
          box = sandbox()
          wild = 0xFFFFFFF0
          huge = 0x7FFFFFFF

          patterns = [
            fn _ -> wild end,
            fn index -> if index == 0, do: 3, else: wild end,
            fn index -> if index == 0, do: 1, else: wild end,
            fn index -> if index == 0, do: 1, else: huge end
          ]

          opts = [
            capabilities: [:wasi, :wasi_fs, :wasi_fs_write],
            wasi: [preopens: [{"/data", box.data, :read_write}]],
            fuel: 1_000_000,
            timeout: 2_000
          ]

          for %{name: name, params: params} <- rows(), name != "proc_exit", pattern <- patterns do
            args =
              params
              |> Enum.with_index()
              |> Enum.map_join(" ", fn {type, index} -> "(#{type}.const #{pattern.(index)})" end)

            wat = guest([name], ~s{(func (export "run") (result i32) (call $#{name} #{args}))})

            case fire(wat, "run", [], opts) do
              {:ok, errno, _} when is_integer(errno) ->
                assert errno in 0..76, "#{name}(#{args}) returned #{errno}"

              {:crash, :trap, %Dump{trap: trap}} ->
                assert trap in [:memory_out_of_bounds, :heap_misaligned],
                       "#{name}(#{args}) trapped with #{trap}"

              other ->
                flunk("#{name}(#{args}) returned #{inspect(other)}")
            end
          end

          assert {:ok, 0, %{stdout: "alive"}} = run(printer("alive"), capabilities: [:wasi])
          assert File.read!(Path.join(box.data, "hello.txt")) == "file contents"
        end

        test "huge iovec counts and ranges outside memory are clean traps, never a touch outside" do
          wat =
            guest(
              ["fd_write", "fd_read"],
              """
              (func (export "write") (param $ptr i32) (param $count i32) (result i32)
                (call $fd_write (i32.const 1) (local.get $ptr) (local.get $count) (i32.const 8)))
              (func (export "read") (param $buf i32) (param $len i32) (result i32)
                (i32.store (i32.const 0) (local.get $buf)) (i32.store (i32.const 4) (local.get $len))
                (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
              """
            )

          opts = [capabilities: [:wasi], wasi: [stdin: "input"]]

          for {function, args} <- [
                {"write", [0, 0x7FFFFFFF]},
                {"write", [0xFFFFFFF8, 2]},
                {"read", [0xFFFFFFF0, 0x20]}
              ] do
            assert {:crash, :trap, %Dump{trap: :memory_out_of_bounds, stdout: ""}} =
                     fire(wat, function, args, opts)
          end

          # 4 GiB is more than Wasmtime copies in one call: ENOMEM before any
          # pointer is followed.
          assert {:ok, 48, _} = fire(wat, "read", [16, 0xFFFFFFFF], opts)

          assert {:ok, 0, %{stdout: ""}} = fire(wat, "write", [0, 0], opts)
        end
      end

      describe "pools" do
        test "a pooled call's :wasi keys override the pool's one by one" do
          name = :"wasi_pool_#{System.unique_integer([:positive])}"
          wat = guest(["fd_read", "fd_write"], @echo)

          start_supervised!(
            {Munition.Pool,
             name: name, wasm: wat, capabilities: [:wasi], wasi: [stdin: "pool", stdout_limit: 3]}
          )

          assert {:ok, nil, %{stdout: "poo", stdout_truncated: true}} =
                   Munition.fire_pooled(name, "_start", [])

          assert {:ok, nil, %{stdout: "cal", stdout_truncated: true}} =
                   Munition.fire_pooled(name, "_start", [], wasi: [stdin: "call"])
        end
      end
    end
  end
end

defmodule Munition.NativeTest do
  # What the native library guarantees below the runtimes' callbacks. Counts
  # node-wide stores, so this module runs alone.
  use ExUnit.Case, async: false
  import Bitwise

  alias Munition.Instance.State
  alias Munition.Runtime.{Wasmi, Wasmtime}

  # 8 MiB of memory: over the 4 MiB a normal scheduler may release.
  @large ~s{(module (memory (export "memory") 128) (func (export "f")))}

  describe "instance_reaped/0" do
    for runtime <- [Wasmtime, Wasmi] do
      @runtime runtime

      test "a large store whose caller died without a cleanup is released by the reaper (#{inspect(runtime)})" do
        {:ok, module} = @runtime.compile(@large)
        baseline = @runtime.live_count()
        {handed, _released} = Munition.Native.instance_reaped()

        state = %State{
          module: module,
          function: "f",
          args: [],
          runtime: @runtime,
          fuel: 1_000_000,
          timeout: 10_000,
          max_memory: 16 <<< 20
        }

        # The caller dies holding the handle: the scheduler that frees its
        # heap runs the handle's destructor, which has no process to ask for
        # a dirty scheduler, and hands the store to the reaper's thread.
        {pid, ref} =
          spawn_monitor(fn ->
            {:ok, instance, :ready} = @runtime.instantiate(module, state)
            true = is_reference(instance)
          end)

        assert_receive {:DOWN, ^ref, :process, ^pid, :normal}
        Munition.Sync.until(fn -> @runtime.live_count() == baseline end)

        {handed_after, released_after} = Munition.Native.instance_reaped()
        assert handed_after >= handed + 1
        assert released_after >= handed + 1
      end
    end
  end

  # A dirty scheduler thread gives its core away for 100 µs after a slice
  # that left its guest running, when the VM's normal schedulers busy-wait
  # and more threads are runnable than the machine has CPUs (native
  # engine/give_way.rs). Here every CPU is taken by a busy shell loop, so
  # the machine is oversubscribed whenever a guest runs too; the pauses are
  # counted node-wide, and this module runs alone.
  if File.exists?("/proc/loadavg") do
    describe "instance_slice_pauses/0" do
      @forever ~s{(module (func (export "f") (loop $l (br $l))))}
      @plenty 1_000_000_000_000_000

      setup do
        # Compiled first, in this VM's module cache: with every CPU taken,
        # compiling inside the call could outlast its 50 ms deadline.
        {:ok, _} = Munition.compile(@forever)

        # Their OS pids are read now: once the test process exits, its
        # ports are closed, and a shell loop that never reads goes on.
        busy =
          for _ <- 1..:erlang.system_info(:logical_processors_online) do
            port = Port.open({:spawn_executable, "/bin/sh"}, args: ["-c", "while :; do :; done"])
            {:os_pid, pid} = Port.info(port, :os_pid)
            Integer.to_string(pid)
          end

        on_exit(fn -> System.cmd("kill", ["-9" | busy]) end)
        :ok
      end

      # The test VM's own flags decide what this VM does.
      @busy_wait not Enum.any?(
                   Enum.chunk_every(:erlang.system_info(:emu_args), 2, 1),
                   &(&1 == [~c"-sbwt", ~c"none"])
                 )

      @tag skip: if(@busy_wait, do: false, else: "this VM was started with +sbwt none")
      test "a guest still running after its slice gives way on an oversubscribed machine" do
        before = Munition.Native.instance_slice_pauses()
        assert {:crash, :timeout, _} = Munition.fire(@forever, "f", [], timeout: 50, fuel: @plenty)
        assert Munition.Native.instance_slice_pauses() > before
      end

      test "a VM started with +sbwt none, whose schedulers do not busy-wait, never pauses" do
        {peer, node} = Munition.Peers.start!("no_busy_wait", ["+sbwt", "none"])

        try do
          # Compiled in the peer's module cache first (see the setup).
          {:ok, _} = :erpc.call(node, Munition, :compile, [@forever])
          before = :erpc.call(node, Munition.Native, :instance_slice_pauses, [])

          assert {:crash, :timeout, _} =
                   :erpc.call(node, Munition, :fire, [@forever, "f", [], [timeout: 50, fuel: @plenty]])

          assert :erpc.call(node, Munition.Native, :instance_slice_pauses, []) == before
        after
          Munition.Peers.stop(peer)
        end
      end
    end
  end
end

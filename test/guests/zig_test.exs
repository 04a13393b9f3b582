Code.require_file("guests.exs", __DIR__)

defmodule Munition.Guests.ZigTest do
  # Guests in Zig (PyPI's ziglang, version pinned in the Makefile): a
  # freestanding library through the binary ABI, and a WASI command.
  # Sources in examples/guests/zig/.
  use ExUnit.Case, async: true

  import Munition.Guests, only: [read!: 1, imports!: 1, wasi: 1]

  describe "base64 (freestanding, binary ABI)" do
    setup do
      %{wasm: read!("zig/base64")}
    end

    test "imports nothing" do
      assert imports!("zig/base64") == []
    end

    test "encodes and decodes", %{wasm: wasm} do
      for {plain, encoded} <- [
            {"hello", "aGVsbG8="},
            {"", ""},
            {<<0, 1, 2, 253, 254, 255>>, "AAEC/f7/"},
            {"Munition", "TXVuaXRpb24="}
          ] do
        assert {:ok, ^encoded, _} = Munition.fire(wasm, "base64_encode", [plain], result: :binary)
        assert {:ok, ^plain, _} = Munition.fire(wasm, "base64_decode", [encoded], result: :binary)
      end
    end

    test "agrees with Elixir's Base on 64 KiB of random bytes", %{wasm: wasm} do
      bytes = :crypto.strong_rand_bytes(65_536)
      {:ok, encoded, _} = Munition.fire(wasm, "base64_encode", [bytes], result: :binary)
      assert encoded == Base.encode64(bytes)
      assert {:ok, ^bytes, _} = Munition.fire(wasm, "base64_decode", [encoded], result: :binary)
    end

    test "input that is not base64 traps, and the dump names the function and its file", %{
      wasm: wasm
    } do
      assert {:crash, :trap, dump} = Munition.fire(wasm, "base64_decode", ["not base64!"], result: :binary)

      assert dump.trap == :unreachable
      # Built with its DWARF: the backtrace has names and the source file.
      assert [%{func_name: "base64_decode", file: file} | _] = dump.backtrace
      assert String.ends_with?(file, "base64.zig")
      # The argument is in the dump's copy of the guest's memory.
      assert dump.args == ["not base64!"]
      assert {:ok, [_offset]} = Munition.Forensics.Analyser.search(dump, "not base64!")
    end
  end

  describe "greet (WASI command)" do
    test "needs WASI's args, environment, stdout and exit" do
      assert imports!("zig/greet") ==
               wasi(~w(args_sizes_get args_get environ_sizes_get environ_get proc_exit fd_write))
    end

    test "greets the world by default" do
      assert {:ok, 0, %{stdout: "Hello, world!\n", stderr: ""}} =
               Munition.run(read!("zig/greet"), capabilities: [:wasi])
    end

    test "greets each name in its arguments, with the GREETING of its environment" do
      assert {:ok, 0, %{stdout: "Hi, Ada!\nHi, Grace!\n"}} =
               Munition.run(read!("zig/greet"),
                 capabilities: [:wasi],
                 wasi: [args: ["greet", "Ada", "Grace"], env: [{"GREETING", "Hi"}]]
               )
    end
  end
end

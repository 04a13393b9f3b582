Code.require_file("guests.exs", __DIR__)

defmodule Munition.Guests.CTest do
  # Guests in C built by Debian's clang: with wasi-libc (WASI commands) and
  # freestanding (the binary ABI, no imports). Sources in examples/guests/c/.
  use ExUnit.Case, async: true

  import Munition.Guests, only: [read!: 1, imports!: 1, wasi: 1]

  @libc_stdio wasi(~w(fd_close fd_fdstat_get fd_read fd_seek fd_write proc_exit))

  describe "rot13 (freestanding, binary ABI)" do
    setup do
      %{wasm: read!("c/rot13")}
    end

    test "imports nothing" do
      assert imports!("c/rot13") == []
    end

    test "rotates ASCII letters and leaves every other byte alone", %{wasm: wasm} do
      assert {:ok, "Uryyb, Jbeyq! 42", _} =
               Munition.fire(wasm, "rot13", ["Hello, World! 42"], result: :binary)

      assert {:ok, <<0, 255, "nOp", 10>>, _} =
               Munition.fire(wasm, "rot13", [<<0, 255, "aBc", 10>>], result: :binary)
    end

    test "of an empty input is empty", %{wasm: wasm} do
      assert {:ok, "", _} = Munition.fire(wasm, "rot13", [""], result: :binary)
    end

    test "twice is the identity, on an input that makes the guest grow its memory", %{wasm: wasm} do
      # 300 KiB in and 300 KiB out: more than the 2 pages the linker gives it.
      input = :binary.copy("The quick brown fox jumps over the lazy dog. ", 7_000)
      {:ok, once, _} = Munition.fire(wasm, "rot13", [input], result: :binary, fuel: :generous)
      assert byte_size(once) == byte_size(input)
      assert binary_part(once, 0, 9) == "Gur dhvpx"
      assert {:ok, ^input, _} = Munition.fire(wasm, "rot13", [once], result: :binary, fuel: :generous)
    end

    test "an input past :max_memory is a memory_limit crash", %{wasm: wasm} do
      input = :binary.copy("a", 200_000)

      assert {:crash, :memory_limit, dump} =
               Munition.fire(wasm, "rot13", [input], result: :binary, max_memory: 256 * 1024)

      assert dump.reason == :memory_limit
    end
  end

  describe "upper (WASI command: stdin upper-cased to stdout)" do
    test "needs WASI's stdio and exit, and is refused without them" do
      assert imports!("c/upper") == @libc_stdio
      assert {:error, {:capability_denied, denied}} = Munition.validate(read!("c/upper"), capabilities: [])
      assert Enum.map(denied, &{&1.module, &1.name}) == @libc_stdio
    end

    test "upper-cases its standard input, ASCII only (the C locale)" do
      assert {:ok, 0, %{stdout: "HELLO, WORLD!\néTé 42\n", stderr: ""}} =
               Munition.run(read!("c/upper"),
                 capabilities: [:wasi],
                 wasi: [stdin: "hello, world!\nété 42\n"]
               )
    end

    test "copies an input larger than its buffer" do
      input = :binary.copy("abcdefgh", 2_000)

      assert {:ok, 0, %{stdout: stdout}} =
               Munition.run(read!("c/upper"), capabilities: [:wasi], wasi: [stdin: input])

      assert stdout == :binary.copy("ABCDEFGH", 2_000)
    end

    test "with no standard input prints nothing" do
      assert {:ok, 0, %{stdout: ""}} =
               Munition.run(read!("c/upper"), capabilities: [:wasi], wasi: [stdin: ""])
    end
  end

  describe "checked_sum (WASI command that aborts on bad input)" do
    test "needs WASI's stdio and exit" do
      assert imports!("c/checked_sum") == @libc_stdio
    end

    test "sums the integers on its standard input" do
      assert {:ok, 0, %{stdout: "42\n", stderr: ""}} =
               Munition.run(read!("c/checked_sum"),
                 capabilities: [:wasi],
                 wasi: [stdin: "40\n\n-8\n10\n"]
               )
    end

    test "prints why on stderr, then abort() traps and the message is in the dump" do
      assert {:crash, :trap, dump} =
               Munition.run(read!("c/checked_sum"),
                 capabilities: [:wasi],
                 wasi: [stdin: "1\n2\nthree\n4\n"]
               )

      # abort() in wasi-libc is the unreachable instruction.
      assert dump.trap == :unreachable
      assert dump.stderr == ~s{bad input on line 3: "three"\n}
      assert dump.stdout == ""
    end
  end
end

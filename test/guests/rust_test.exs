Code.require_file("guests.exs", __DIR__)

defmodule Munition.Guests.RustTest do
  # Guests in Rust built by Debian's rustc 1.63 (no cargo): a library through
  # the binary ABI, for wasm32-unknown-unknown and for wasm32-wasi, and WASI
  # commands. Sources in examples/guests/rust/.
  use ExUnit.Case, async: true

  import Munition.Guests, only: [read!: 1, imports!: 1, wasi: 1]

  describe "reverse_words (wasm32-unknown-unknown, binary ABI)" do
    setup do
      %{wasm: read!("rust/reverse_words")}
    end

    test "imports nothing" do
      assert imports!("rust/reverse_words") == []
    end

    test "reverses the words, joined by single spaces", %{wasm: wasm} do
      assert {:ok, "three two one", _} =
               Munition.fire(wasm, "reverse_words", ["one two three"], result: :binary)

      assert {:ok, "c\xFF b a", _} =
               Munition.fire(wasm, "reverse_words", ["  a\tb\n\nc\xFF  "], result: :binary)
    end

    test "of empty or blank input is empty", %{wasm: wasm} do
      assert {:ok, "", _} = Munition.fire(wasm, "reverse_words", [""], result: :binary)
      assert {:ok, "", _} = Munition.fire(wasm, "reverse_words", [" \n\t "], result: :binary)
    end

    test "of many words", %{wasm: wasm} do
      words = Enum.map(1..5_000, &Integer.to_string/1)

      assert {:ok, reversed, _} =
               Munition.fire(wasm, "reverse_words", [Enum.join(words, " ")], result: :binary)

      assert reversed == words |> Enum.reverse() |> Enum.join(" ")
    end

    test "runs out of fuel on a tight budget, with a dump", %{wasm: wasm} do
      input = :binary.copy("word ", 10_000)

      assert {:crash, :fuel_exhausted, dump} =
               Munition.fire(wasm, "reverse_words", [input], result: :binary, fuel: 10_000)

      assert dump.fuel_remaining == 0
      assert Enum.any?(dump.backtrace, &(&1.func_name == "reverse_words"))
    end
  end

  describe "reverse_words built for wasm32-wasi" do
    # The same source: Rust's std for wasm32-wasi brings WASI in for the
    # environment (wasi-libc's start-up, run around every export) and for
    # printing panic messages, though the library never prints.
    @imports wasi(~w(fd_write environ_get environ_sizes_get proc_exit))

    test "needs WASI, and is refused without it" do
      assert imports!("rust/reverse_words_wasi") == @imports

      assert {:error, {:capability_denied, denied}} =
               Munition.validate(read!("rust/reverse_words_wasi"), capabilities: [])

      assert Enum.map(denied, &{&1.module, &1.name}) == @imports
    end

    test "reverses the words when granted WASI" do
      assert {:ok, "three two one", _} =
               Munition.fire(read!("rust/reverse_words_wasi"), "reverse_words", ["one two three"],
                 result: :binary,
                 capabilities: [:wasi]
               )
    end
  end

  describe "wc (WASI command)" do
    test "needs WASI's args, environment, stdio and exit" do
      assert imports!("rust/wc") ==
               wasi(~w(args_get args_sizes_get fd_read fd_write environ_get environ_sizes_get proc_exit))
    end

    test "counts the lines, words and bytes of its standard input" do
      assert {:ok, 0, %{stdout: "2 5 21\n", stderr: ""}} =
               Munition.run(read!("rust/wc"),
                 capabilities: [:wasi],
                 wasi: [stdin: "one two three\nfour 5\n"]
               )
    end

    test "counts lines only with -l (args include the program's name)" do
      assert {:ok, 0, %{stdout: "3\n"}} =
               Munition.run(read!("rust/wc"),
                 capabilities: [:wasi],
                 wasi: [args: ["wc", "-l"], stdin: "a\nb\nc\n"]
               )
    end

    test "an unknown option is exit code 2 and a message on stderr" do
      assert {:ok, 2, %{stdout: "", stderr: ~s{wc: unknown option "-x"\n}}} =
               Munition.run(read!("rust/wc"), capabilities: [:wasi], wasi: [args: ["wc", "-x"]])
    end
  end

  describe "parse_config (WASI command that panics)" do
    test "needs WASI's stdio, environment and exit" do
      assert imports!("rust/parse_config") ==
               wasi(~w(fd_read fd_write environ_get environ_sizes_get proc_exit))
    end

    test "prints the settings sorted" do
      assert {:ok, 0, %{stdout: "a=1\nb=two words\n", stderr: ""}} =
               Munition.run(read!("rust/parse_config"),
                 capabilities: [:wasi],
                 wasi: [stdin: "# settings\nb = two words\n\na=1\n"]
               )
    end

    test "a panic prints its message on stderr, traps, and the message is in the dump" do
      assert {:crash, :trap, dump} =
               Munition.run(read!("rust/parse_config"),
                 capabilities: [:wasi],
                 wasi: [stdin: "a = 1\noops\n"]
               )

      # panic=abort: Rust's abort is the unreachable instruction.
      assert dump.trap == :unreachable
      assert dump.stderr =~ ~s{thread 'main' panicked at 'line 2 has no '=': "oops"'}
      assert dump.stderr =~ "parse_config.rs:"
      assert dump.stdout == ""
    end
  end
end

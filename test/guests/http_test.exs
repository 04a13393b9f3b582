Code.require_file("guests.exs", __DIR__)

defmodule Munition.Guests.HttpTest do
  # Outgoing HTTP (WASI 0.2's wasi:http) from a component: fetch_c
  # (examples/guests/components/http, C through wit-bindgen and the WASI
  # adapter) GETs the URL it is given. Every request goes to a server this
  # test runs on 127.0.0.1, never further: denied without `:wasi_http`,
  # denied for what `:http_allow` does not list, answered for what it does,
  # bounded by `:http_response_limit` and by the call's deadline.
  use ExUnit.Case, async: false

  import Munition.Guests, only: [read!: 1]

  setup_all do
    {:ok, module} = Munition.compile(read!("components/fetch_c"), compile_timeout: 600_000)
    %{module: module}
  end

  # A server on 127.0.0.1 answering each connection in turn as `reply` says:
  # `{status, body}`, `{:unannounced, status, body}` (no content-length: the
  # body ends when the connection closes), or `:never`: it reads the request
  # and answers nothing until the client goes. It tells the test what it
  # received and when a client it never answered closed the connection.
  defp serve(reply) do
    test = self()
    {:ok, listen} = :gen_tcp.listen(0, [:binary, ip: {127, 0, 0, 1}, active: false, reuseaddr: true])
    {:ok, port} = :inet.port(listen)
    spawn_link(fn -> accept(listen, test, reply) end)
    port
  end

  defp accept(listen, test, reply) do
    with {:ok, socket} <- :gen_tcp.accept(listen) do
      send(test, {:request, read_request(socket, "")})

      case reply do
        {status, body} ->
          :ok =
            :gen_tcp.send(
              socket,
              "HTTP/1.1 #{status} Whatever\r\ncontent-length: #{byte_size(body)}\r\n" <>
                "connection: close\r\n\r\n" <> body
            )

          :gen_tcp.close(socket)

        {:unannounced, status, body} ->
          :ok = :gen_tcp.send(socket, "HTTP/1.1 #{status} Whatever\r\nconnection: close\r\n\r\n" <> body)
          :gen_tcp.close(socket)

        :never ->
          {:error, :closed} = :gen_tcp.recv(socket, 0)
          send(test, :client_closed)
      end

      accept(listen, test, reply)
    end
  end

  defp read_request(socket, acc) do
    if String.contains?(acc, "\r\n\r\n") do
      acc
    else
      {:ok, data} = :gen_tcp.recv(socket, 0)
      read_request(socket, acc <> data)
    end
  end

  defp get(module, url, opts) do
    Munition.fire(module, "get", [url], Keyword.merge([fuel: 1_000_000_000, timeout: 30_000], opts))
  end

  test "a plugin that imports wasi:http and never uses it runs under :wasi; the audit trail says why it reaches nothing",
       %{module: module} do
    assert {:ok, "hello without the network", meta} =
             Munition.fire(module, "hello", [], capabilities: [:wasi])

    assert %{
             module: "wasi:http/outgoing-handler@0.2.12",
             name: "handle",
             needs: :wasi_http,
             reason: :no_http_grant
           } in meta.inert_links

    assert Enum.all?(meta.inert_links, &(&1.reason == :no_http_grant))
    assert Enum.any?(meta.inert_links, &match?(%{module: "wasi:http/types@0.2.12"}, &1))

    assert {:ok, _hello, meta} = Munition.fire(module, "hello", [], capabilities: [:wasi, :wasi_http])
    assert meta.inert_links == []
  end

  test "without :wasi_http a request gets WASI's denial, an error the guest returns", %{module: module} do
    port = serve({200, "hello"})
    allow = [http_allow: ["127.0.0.1:#{port}"]]

    assert {:ok, {:error, "HTTP-request-denied"}, _meta} =
             get(module, "http://127.0.0.1:#{port}/denied", capabilities: [:wasi], wasi: allow)

    # Nothing was sent: the next request the server sees is the allowed one.
    assert {:ok, {:ok, {200, "hello"}}, _meta} =
             get(module, "http://127.0.0.1:#{port}/allowed", capabilities: [:wasi, :wasi_http], wasi: allow)

    assert_receive {:request, "GET /allowed HTTP/1.1\r\n" <> headers}
    assert headers =~ ~r/^host: 127\.0\.0\.1:#{port}\r$/im
    refute_received {:request, _}
  end

  test "with :wasi_http, a request reaches only what :http_allow lists", %{module: module} do
    port = serve({200, "hello"})
    url = "http://127.0.0.1:#{port}/"
    granted = [capabilities: [:wasi, :wasi_http]]

    for allowed <- ["127.0.0.1:#{port}", "http://127.0.0.1:#{port}", "HTTP://127.0.0.1:#{port}"] do
      assert {:ok, {:ok, {200, "hello"}}, _meta} =
               get(module, url, granted ++ [wasi: [http_allow: [allowed]]])

      assert_receive {:request, "GET / HTTP/1.1\r\n" <> _}
    end

    # Another port (a host alone is its scheme's default port, 80), another
    # scheme, another name for the address (names are not resolved to
    # match), no list at all: denied, and nothing sent.
    for allow <- [
          ["127.0.0.1"],
          ["127.0.0.1:#{port + 1}"],
          ["https://127.0.0.1:#{port}"],
          ["localhost:#{port}"],
          []
        ] do
      assert {:ok, {:error, "HTTP-request-denied"}, _meta} =
               get(module, url, granted ++ [wasi: [http_allow: allow]]),
             inspect(allow)
    end

    assert {:ok, {:error, "HTTP-request-denied"}, _meta} = get(module, url, granted)

    # A user in the authority is never let through.
    assert {:ok, {:error, "HTTP-request-denied"}, _meta} =
             get(
               module,
               "http://me@127.0.0.1:#{port}/",
               granted ++ [wasi: [http_allow: ["127.0.0.1:#{port}"]]]
             )

    refute_received {:request, _}
  end

  test "a response body past :http_response_limit fails: announced, with WASI's HTTP-response-body-size",
       %{module: module} do
    port = serve({200, "0123456789"})

    opts = [
      capabilities: [:wasi, :wasi_http],
      wasi: [http_allow: ["127.0.0.1:#{port}"], http_response_limit: 4]
    ]

    assert {:ok, {:error, "HTTP-response-body-size"}, _meta} = get(module, "http://127.0.0.1:#{port}/", opts)

    opts = put_in(opts[:wasi][:http_response_limit], 10)
    assert {:ok, {:ok, {200, "0123456789"}}, _meta} = get(module, "http://127.0.0.1:#{port}/", opts)
  end

  test "a response body that grows past :http_response_limit fails as it is read", %{module: module} do
    port = serve({:unannounced, 200, "0123456789"})

    opts = [
      capabilities: [:wasi, :wasi_http],
      wasi: [http_allow: ["127.0.0.1:#{port}"], http_response_limit: 4]
    ]

    # wasmtime-wasi-http 48 gives a body's error no http-error-code: the
    # guest reads its text.
    assert {:ok, {:error, "stream error: " <> message}, _meta} =
             get(module, "http://127.0.0.1:#{port}/", opts)

    assert message =~ "body size"

    opts = put_in(opts[:wasi][:http_response_limit], 10)
    assert {:ok, {:ok, {200, "0123456789"}}, _meta} = get(module, "http://127.0.0.1:#{port}/", opts)
  end

  test "a request cannot outlive the call: a server that never answers, the call ends at its deadline",
       %{module: module} do
    live = Munition.Runtime.Wasmtime.live_count()
    port = serve(:never)

    assert {:crash, :timeout, dump} =
             get(module, "http://127.0.0.1:#{port}/",
               # Long enough for a loaded machine to send the request first.
               timeout: 2_000,
               capabilities: [:wasi, :wasi_http],
               wasi: [http_allow: ["127.0.0.1:#{port}"]]
             )

    assert_receive {:request, "GET / HTTP/1.1\r\n" <> _}
    # Ended by the engine in the guest (a trap with the store's evidence),
    # not abandoned by its driver.
    assert dump.trap == :interrupt
    assert dump.backtrace != []
    assert dump.memories != []
    # The connection went with the call's store.
    assert_receive :client_closed
    assert Munition.Runtime.Wasmtime.live_count() == live
  end

  describe "the :http_allow option" do
    test "entries are normalised to {scheme, host, port}" do
      assert %{
               http_allow: [
                 {nil, "api.example.com", nil},
                 {"https", "[::1]", 8443},
                 {"http", "127.0.0.1", 4000}
               ]
             } =
               Munition.Host.WASI.check!(
                 http_allow: ["API.example.com", "https://[::1]:8443", "http://127.0.0.1:4000"]
               )
    end

    test "anything but a host, host:port or scheme://host[:port] is an ArgumentError naming it" do
      for bad <- ["ftp://x", "x/path", "me@x", "*.example.com", "x:0", "x:65536", "", "http://", :x] do
        assert_raise ArgumentError, ~r/wasi http_allow must be .*#{Regex.escape(inspect(bad))}/, fn ->
          Munition.Host.WASI.check!(http_allow: [bad])
        end
      end

      assert_raise ArgumentError, ~r/wasi http_allow must be a list/, fn ->
        Munition.Host.WASI.check!(http_allow: "127.0.0.1")
      end
    end

    test "the allowlist reaches the runtime only with :wasi_http granted" do
      wasi = Munition.Host.WASI.check!(http_allow: ["127.0.0.1:4000"])
      assert %{http_allow: []} = Munition.Host.WASI.config(wasi, [:wasi_stdio])
      assert %{http_allow: [{nil, "127.0.0.1", 4000}]} = Munition.Host.WASI.config(wasi, [:wasi_http])
    end

    test ":wasi_http is a capability of its own, in no group" do
      assert :wasi_http not in Munition.Host.Capabilities.expand!([:wasi, :all])
      assert Munition.Host.Capabilities.expand!([:wasi_http]) == [:wasi_http]

      assert_raise ArgumentError, ~r/capability of its own/, fn ->
        Munition.Host.Functions.new!({"my:api/x", "f", :wit, :wasi_http, fn _ctx -> :ok end})
      end
    end
  end
end

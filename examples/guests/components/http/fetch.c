/* The fetch world (fetch.wit) in C: a plugin that GETs a URL through WASI
 * 0.2's `wasi:http/outgoing-handler`, for the tests of Munition's HTTP
 * grant (test/guests/http_test.exs). tools/build_components.sh builds it
 * as it builds c/plugin.c: wit-bindgen c, clang for wasm32-wasi (a
 * reactor), wasm-tools component new with the WASI adapter.
 *
 * Every failure WASI reports is returned as the name of its error code
 * (`HTTP-request-denied`, `connection-refused`, ...): a denial is an answer
 * the plugin can give, not a trap. Ownership as in c/plugin.c: what an
 * export returns is freed by the post-return function with free().
 */
#include <stdlib.h>
#include <string.h>

#include "fetch.h"

/* The cases of wasi:http/types' error-code, in the WIT's order. */
static const char *const ERROR_CODES[] = {
    "DNS-timeout", "DNS-error", "destination-not-found", "destination-unavailable",
    "destination-IP-prohibited", "destination-IP-unroutable", "connection-refused",
    "connection-terminated", "connection-timeout", "connection-read-timeout",
    "connection-write-timeout", "connection-limit-reached", "TLS-protocol-error",
    "TLS-certificate-error", "TLS-alert-received", "HTTP-request-denied",
    "HTTP-request-length-required", "HTTP-request-body-size", "HTTP-request-method-invalid",
    "HTTP-request-URI-invalid", "HTTP-request-URI-too-long", "HTTP-request-header-section-size",
    "HTTP-request-header-size", "HTTP-request-trailer-section-size", "HTTP-request-trailer-size",
    "HTTP-response-incomplete", "HTTP-response-header-section-size", "HTTP-response-header-size",
    "HTTP-response-body-size", "HTTP-response-trailer-section-size", "HTTP-response-trailer-size",
    "HTTP-response-transfer-coding", "HTTP-response-content-coding", "HTTP-response-timeout",
    "HTTP-upgrade-failed", "HTTP-protocol-error", "loop-detected", "configuration-error",
    "internal-error",
};

static bool fail(fetch_string_t *err, const char *message) {
    fetch_string_dup(err, message);
    return false;
}

static bool fail_code(fetch_string_t *err, const wasi_http_types_error_code_t *code) {
    size_t n = sizeof ERROR_CODES / sizeof ERROR_CODES[0];
    return fail(err, code->tag < n ? ERROR_CODES[code->tag] : "unknown-error-code");
}

/* A string of `len` bytes at `ptr`, borrowed (not copied). */
static fetch_string_t part(const uint8_t *ptr, size_t len) {
    fetch_string_t s = {(uint8_t *)ptr, len};
    return s;
}

bool exports_fetch_get(fetch_string_t *url, fetch_tuple2_u16_string_t *ret, fetch_string_t *err) {
    bool ok = false;
    /* scheme://authority/path */
    const uint8_t *u = url->ptr, *end = url->ptr + url->len, *sep = NULL;
    for (const uint8_t *p = u; p + 3 <= end; p++)
        if (memcmp(p, "://", 3) == 0) {
            sep = p;
            break;
        }
    if (sep == NULL) {
        fetch_string_free(url);
        return fail(err, "not a URL");
    }
    const uint8_t *authority = sep + 3, *path = authority;
    while (path < end && *path != '/') path++;

    wasi_http_types_scheme_t scheme;
    if (sep - u == 4 && memcmp(u, "http", 4) == 0) {
        scheme.tag = WASI_HTTP_TYPES_SCHEME_HTTP;
    } else if (sep - u == 5 && memcmp(u, "https", 5) == 0) {
        scheme.tag = WASI_HTTP_TYPES_SCHEME_HTTPS;
    } else {
        scheme.tag = WASI_HTTP_TYPES_SCHEME_OTHER;
        scheme.val.other = part(u, sep - u);
    }
    fetch_string_t authority_s = part(authority, path - authority);
    fetch_string_t path_s = path < end ? part(path, end - path) : part((const uint8_t *)"/", 1);

    wasi_http_types_own_outgoing_request_t request =
        wasi_http_types_constructor_outgoing_request(wasi_http_types_constructor_fields());
    wasi_http_types_borrow_outgoing_request_t borrowed = wasi_http_types_borrow_outgoing_request(request);
    if (!wasi_http_types_method_outgoing_request_set_scheme(borrowed, &scheme) ||
        !wasi_http_types_method_outgoing_request_set_authority(borrowed, &authority_s) ||
        !wasi_http_types_method_outgoing_request_set_path_with_query(borrowed, &path_s)) {
        wasi_http_types_outgoing_request_drop_own(request);
        fetch_string_free(url);
        return fail(err, "invalid URL");
    }
    fetch_string_free(url);

    wasi_http_types_own_future_incoming_response_t future;
    wasi_http_types_error_code_t code;
    if (!wasi_http_outgoing_handler_handle(request, NULL, &future, &code)) return fail_code(err, &code);

    /* Wait for the response: the guest is suspended, its host thread free. */
    wasi_http_types_borrow_future_incoming_response_t borrowed_future =
        wasi_http_types_borrow_future_incoming_response(future);
    wasi_io_poll_own_pollable_t ready = wasi_http_types_method_future_incoming_response_subscribe(borrowed_future);
    wasi_io_poll_method_pollable_block(wasi_io_poll_borrow_pollable(ready));
    wasi_io_poll_pollable_drop_own(ready);

    wasi_http_types_result_result_own_incoming_response_error_code_void_t got;
    if (!wasi_http_types_method_future_incoming_response_get(borrowed_future, &got) || got.is_err) {
        wasi_http_types_future_incoming_response_drop_own(future);
        return fail(err, "no response after the pollable was ready");
    }
    if (got.val.ok.is_err) {
        wasi_http_types_future_incoming_response_drop_own(future);
        return fail_code(err, &got.val.ok.val.err);
    }
    wasi_http_types_own_incoming_response_t response = got.val.ok.val.ok;
    wasi_http_types_borrow_incoming_response_t borrowed_response = wasi_http_types_borrow_incoming_response(response);
    uint16_t status = wasi_http_types_method_incoming_response_status(borrowed_response);

    wasi_http_types_own_incoming_body_t body;
    wasi_io_streams_own_input_stream_t stream;
    if (!wasi_http_types_method_incoming_response_consume(borrowed_response, &body)) {
        fail(err, "response body already consumed");
        goto drop_response;
    }
    if (!wasi_http_types_method_incoming_body_stream(wasi_http_types_borrow_incoming_body(body), &stream)) {
        fail(err, "response body stream already taken");
        goto drop_body;
    }

    uint8_t *bytes = NULL;
    size_t len = 0;
    for (;;) {
        fetch_list_u8_t chunk;
        wasi_io_streams_stream_error_t stream_error;
        if (wasi_io_streams_method_input_stream_blocking_read(wasi_io_streams_borrow_input_stream(stream), 65536,
                                                              &chunk, &stream_error)) {
            if (chunk.len > 0) {
                bytes = realloc(bytes, len + chunk.len);
                if (bytes == NULL) abort();
                memcpy(bytes + len, chunk.ptr, chunk.len);
                len += chunk.len;
            }
            fetch_list_u8_free(&chunk);
            continue;
        }
        if (stream_error.tag == WASI_IO_STREAMS_STREAM_ERROR_CLOSED) {
            ret->f0 = status;
            ret->f1.ptr = bytes;
            ret->f1.len = len;
            ok = true;
        } else {
            /* The body failed: WASI's error code when it is an HTTP one,
             * else the error's text. */
            wasi_io_error_own_error_t error = stream_error.val.last_operation_failed;
            wasi_io_error_borrow_error_t borrowed_error = wasi_io_error_borrow_error(error);
            wasi_http_types_error_code_t body_code;
            if (wasi_http_types_http_error_code(borrowed_error, &body_code)) {
                fail_code(err, &body_code);
            } else {
                static const char prefix[] = "stream error: ";
                fetch_string_t text;
                wasi_io_error_method_error_to_debug_string(borrowed_error, &text);
                err->len = sizeof prefix - 1 + text.len;
                err->ptr = malloc(err->len);
                if (err->ptr == NULL) abort();
                memcpy(err->ptr, prefix, sizeof prefix - 1);
                memcpy(err->ptr + sizeof prefix - 1, text.ptr, text.len);
                fetch_string_free(&text);
            }
            wasi_io_error_error_drop_own(error);
            free(bytes);
        }
        break;
    }
    wasi_io_streams_input_stream_drop_own(stream);
drop_body:
    wasi_http_types_incoming_body_drop_own(body);
drop_response:
    wasi_http_types_incoming_response_drop_own(response);
    wasi_http_types_future_incoming_response_drop_own(future);
    return ok;
}

void exports_fetch_hello(fetch_string_t *ret) {
    fetch_string_dup(ret, "hello without the network");
}

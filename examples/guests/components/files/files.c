/* The files world (files.wit) in C: a plugin that reads and writes files
 * with plain stdio, for the tests of Munition's WASI 0.2 filesystem
 * (test/guests/components_files_test.exs). wasi-libc resolves a path
 * against the preopens it was given and calls preview 1 (path_open,
 * fd_read, fd_write); the WASI adapter turns those into wasi:filesystem
 * 0.2, which Munition links. tools/build_components.sh builds it as it
 * builds c/plugin.c: wit-bindgen c, clang for wasm32-wasi (a reactor),
 * wasm-tools component new with the WASI adapter.
 *
 * Every failure is returned as strerror(errno): a refusal is an answer the
 * plugin gives, not a trap. Ownership as in c/plugin.c: an export frees its
 * arguments; what it returns is freed by the post-return function with
 * free(), so it is allocated with malloc, never a literal.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "files.h"

static bool fail(files_string_t *err, int errnum) {
    files_string_dup(err, strerror(errnum));
    return false;
}

/* `s` as a C string, or NULL (errno set) when it holds a NUL, which would
 * make the path C sees another than the one asked for. Frees `s`. */
static char *c_path(files_string_t *s) {
    char *c = NULL;
    if (memchr(s->ptr, 0, s->len) != NULL) {
        errno = EINVAL;
    } else if ((c = malloc(s->len + 1)) != NULL) {
        memcpy(c, s->ptr, s->len);
        c[s->len] = 0;
    }
    files_string_free(s);
    return c;
}

bool exports_files_read(files_string_t *path, files_string_t *ret, files_string_t *err) {
    char *p = c_path(path);
    if (p == NULL) return fail(err, errno);
    FILE *f = fopen(p, "r");
    int opened = errno;
    free(p);
    if (f == NULL) return fail(err, opened);

    uint8_t *bytes = NULL;
    size_t len = 0, n;
    uint8_t chunk[4096];
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        uint8_t *more = realloc(bytes, len + n);
        if (more == NULL) abort();
        bytes = more;
        memcpy(bytes + len, chunk, n);
        len += n;
    }
    if (ferror(f)) {
        int failed = errno;
        fclose(f);
        free(bytes);
        return fail(err, failed);
    }
    fclose(f);
    ret->ptr = bytes;
    ret->len = len;
    return true;
}

bool exports_files_write(files_string_t *path, files_string_t *contents, files_string_t *err) {
    char *p = c_path(path);
    if (p == NULL) {
        int invalid = errno;
        files_string_free(contents);
        return fail(err, invalid);
    }
    FILE *f = fopen(p, "w");
    int opened = errno;
    free(p);
    if (f == NULL) {
        files_string_free(contents);
        return fail(err, opened);
    }
    size_t written = fwrite(contents->ptr, 1, contents->len, f);
    int failed = written < contents->len ? errno : 0;
    files_string_free(contents);
    /* stdio buffers: what fails to reach the file may fail only here. */
    if (fclose(f) != 0 && failed == 0) failed = errno;
    return failed == 0 ? true : fail(err, failed);
}

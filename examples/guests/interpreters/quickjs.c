/*
 * QuickJS-ng (the sources of the Rust crate rquickjs-sys) as a Munition guest,
 * built with Debian's clang and wasi-libc: no quickjs-libc, only what this
 * file gives the script, `print(...)` (to stdout, arguments joined by spaces).
 *
 * Built twice from this one file (Makefile, "interpreters"):
 *   - quickjs.wasm, a WASI command: `quickjs -e SOURCE` evaluates SOURCE,
 *     `quickjs` alone evaluates stdin; exit code 1 on an uncaught exception
 *     (printed to stderr).
 *   - quickjs_reactor.wasm, a WASI reactor following Munition's binary ABI
 *     (`alloc`, binaries as pointer and length, a binary result as one i64
 *     ptr << 32 | len): `init(src)` creates the runtime and evaluates SOURCE
 *     (a script setting up state), `eval(src)` evaluates SOURCE in that state
 *     (creating it first if `init` was not called) and returns its value as a
 *     string. An uncaught exception is printed to stderr and then traps
 *     (`unreachable`): the host sees a crash with the message in the dump's
 *     stderr, not a string it could mistake for a result.
 *
 * Imports: stdio, clocks, args and exit of WASI preview 1; no files.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quickjs.h"

static JSRuntime *rt;
static JSContext *ctx;

static JSValue js_print(JSContext *c, JSValueConst this_val, int argc, JSValueConst *argv) {
  for (int i = 0; i < argc; i++) {
    size_t len;
    const char *s = JS_ToCStringLen(c, &len, argv[i]);
    if (!s) return JS_EXCEPTION;
    if (i > 0) fputc(' ', stdout);
    fwrite(s, 1, len, stdout);
    JS_FreeCString(c, s);
  }
  fputc('\n', stdout);
  return JS_UNDEFINED;
}

static void start(void) {
  if (ctx) return;
  rt = JS_NewRuntime();
  ctx = JS_NewContext(rt);
  JSValue global = JS_GetGlobalObject(ctx);
  JS_SetPropertyStr(ctx, global, "print", JS_NewCFunction(ctx, js_print, "print", 1));
  JS_FreeValue(ctx, global);
}

/* Prints a pending exception to stderr. */
static void report(void) {
  JSValue exception = JS_GetException(ctx);
  const char *s = JS_ToCString(ctx, exception);
  fprintf(stderr, "%s\n", s ? s : "(an exception that cannot be printed)");
  if (s) JS_FreeCString(ctx, s);
  JS_FreeValue(ctx, exception);
  fflush(stderr);
}

/* Evaluates `len` bytes of source; JS_Eval wants them NUL-terminated. */
static JSValue eval(const char *src, size_t len) {
  char *copy = malloc(len + 1);
  memcpy(copy, src, len);
  copy[len] = 0;
  JSValue value = JS_Eval(ctx, copy, len, "<eval>", JS_EVAL_TYPE_GLOBAL);
  free(copy);
  fflush(stdout);
  return value;
}

#ifdef QUICKJS_REACTOR

__attribute__((export_name("alloc"))) void *guest_alloc(int32_t len) { return malloc(len); }

/* Evaluates in the reactor's state (created on first use); an uncaught
 * exception is reported and traps. */
static JSValue eval_or_trap(const char *src, int32_t len) {
  start();
  JSValue value = eval(src, len);
  if (JS_IsException(value)) {
    report();
    __builtin_trap();
  }
  return value;
}

__attribute__((export_name("init"))) int32_t init(const char *src, int32_t len) {
  JSValue value = eval_or_trap(src, len); /* sets ctx on first use */
  JS_FreeValue(ctx, value);
  return 0;
}

static char *last_result;

__attribute__((export_name("eval"))) int64_t eval_export(const char *src, int32_t len) {
  JSValue value = eval_or_trap(src, len);
  size_t out_len;
  const char *s = JS_ToCStringLen(ctx, &out_len, value);
  JS_FreeValue(ctx, value);
  free(last_result);
  last_result = malloc(out_len ? out_len : 1);
  memcpy(last_result, s, out_len);
  JS_FreeCString(ctx, s);
  return ((int64_t)(uintptr_t)last_result << 32) | (int64_t)out_len;
}

#else

int main(int argc, char **argv) {
  char *src;
  size_t len = 0;
  if (argc == 3 && strcmp(argv[1], "-e") == 0) {
    src = argv[2];
    len = strlen(src);
  } else if (argc == 1) {
    size_t cap = 4096;
    src = malloc(cap);
    size_t n;
    while ((n = fread(src + len, 1, cap - len, stdin)) > 0) {
      len += n;
      if (len == cap) src = realloc(src, cap *= 2);
    }
  } else {
    fprintf(stderr, "usage: quickjs [-e SOURCE]  (no SOURCE: read stdin)\n");
    return 2;
  }
  start();
  JSValue value = eval(src, len);
  if (JS_IsException(value)) {
    report();
    return 1;
  }
  JS_FreeValue(ctx, value);
  return 0;
}

#endif

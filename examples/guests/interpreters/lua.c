/*
 * Lua 5.4 (the sources of the Rust crate lua-src) as a Munition reactor,
 * built with Debian's clang and wasi-libc (tools/build_interpreters.sh),
 * following Munition's binary ABI as quickjs.c does: `alloc`, `init(src)`
 * creates the state and runs SOURCE (a chunk setting up globals), and
 * `eval(src)` runs SOURCE in that state (creating it first if `init` was
 * not called) and returns its first result, made a string by `tostring`,
 * as one i64 ptr << 32 | len.
 *
 * Lua raises its errors with longjmp, which Debian's wasi-libc does not
 * have (wasm has no setjmp without the exception-handling proposal, which
 * clang 14 cannot emit). So every Lua error is a trap: the build defines
 * LUAI_THROW as `lua_trap` below, which writes the error message to stderr
 * and traps, and LUAI_TRY as running its block. The host sees a crash with
 * the message in the dump's stderr. `pcall` and `error` inside a script
 * therefore do not return: an error ends the call. Coroutines are left out
 * (a C function yields by throwing), and so are io, os, package and debug
 * (files, processes, and modules from disk): base, string, table, math and
 * utf8 are opened.
 *
 * Imports: stdio, clocks (Lua's hash seed and math.random's seed read the
 * time as the state starts) and exit of WASI preview 1.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lauxlib.h"
#include "lua.h"
#include "lualib.h"

/* Every Lua error: its message (the error object, when it is a string, is
 * on the top of the stack) to stderr, then a trap. */
__attribute__((noreturn)) void lua_trap(lua_State *L) {
  const char *message = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
  fprintf(stderr, "%s\n", message ? message : "(a Lua error whose object is not a string)");
  fflush(stderr);
  __builtin_trap();
}

/* What lauxlib calls for freopen (the build renames it there): wasi-libc's
 * would import fd_renumber, a file-system function, for what reopening in
 * binary mode means nothing on WASI. */
FILE *lua_freopen(const char *path, const char *mode, FILE *file) {
  fclose(file);
  return fopen(path, mode);
}

static lua_State *L;

static void start(void) {
  if (L) return;
  L = luaL_newstate();
  if (!L) __builtin_trap();
  static const luaL_Reg libs[] = {
      {LUA_GNAME, luaopen_base},       {LUA_TABLIBNAME, luaopen_table},
      {LUA_STRLIBNAME, luaopen_string}, {LUA_MATHLIBNAME, luaopen_math},
      {LUA_UTF8LIBNAME, luaopen_utf8},  {NULL, NULL},
  };
  for (const luaL_Reg *lib = libs; lib->func; lib++) {
    luaL_requiref(L, lib->name, lib->func, 1);
    lua_pop(L, 1);
  }
}

/* Runs `len` bytes of source, leaving its results on the stack: the number
 * of them. An error has trapped before this returns. */
static int run(const char *src, int32_t len) {
  start();
  int base = lua_gettop(L);
  /* Protected, so that an error reaches LUAI_THROW (lua_trap) rather than
   * Lua's panic function; either way it does not come back. */
  if (luaL_loadbuffer(L, src, (size_t)len, "=eval") != LUA_OK ||
      lua_pcall(L, 0, LUA_MULTRET, 0) != LUA_OK)
    lua_trap(L);
  fflush(stdout);
  return lua_gettop(L) - base;
}

__attribute__((export_name("alloc"))) void *guest_alloc(int32_t len) { return malloc(len); }

__attribute__((export_name("init"))) int32_t init(const char *src, int32_t len) {
  start();
  lua_settop(L, 0);
  lua_pop(L, run(src, len));
  return 0;
}

static char *last_result;

__attribute__((export_name("eval"))) int64_t eval_export(const char *src, int32_t len) {
  start();
  lua_settop(L, 0);
  int results = run(src, len);
  size_t out_len = 0;
  const char *s = "";
  if (results > 0) s = luaL_tolstring(L, 1, &out_len);
  free(last_result);
  last_result = malloc(out_len ? out_len : 1);
  memcpy(last_result, s, out_len);
  lua_settop(L, 0);
  return ((int64_t)(uintptr_t)last_result << 32) | (int64_t)out_len;
}

// FNV-1a (64-bit) over a binary, freestanding (no libc, no imports): the C
// guest of bench/compute.exs, compute with nothing else in the way. Binary
// ABI: `alloc(len)` (a bump allocator: one fresh instance per call), then
// `fnv1a(ptr, len)` returns the hash as an i64.
#include <stdint.h>

extern unsigned char __heap_base;
static uintptr_t next = (uintptr_t)&__heap_base;

__attribute__((export_name("alloc"))) void *alloc(int32_t len) {
  uintptr_t at = (next + 15) & ~(uintptr_t)15;
  uintptr_t end = at + (uintptr_t)len;
  uintptr_t have = __builtin_wasm_memory_size(0) * 65536;
  if (end > have && __builtin_wasm_memory_grow(0, (end - have + 65535) / 65536) == (uintptr_t)-1)
    __builtin_trap();
  next = end;
  return (void *)at;
}

__attribute__((export_name("fnv1a"))) int64_t fnv1a(const unsigned char *data, int32_t len) {
  uint64_t hash = 0xcbf29ce484222325ULL;
  for (int32_t i = 0; i < len; i++) {
    hash ^= data[i];
    hash *= 0x100000001b3ULL;
  }
  return (int64_t)hash;
}

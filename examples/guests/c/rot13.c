/* A freestanding guest (no libc, no imports) following Munition's binary ABI:
 * it exports `memory`, `alloc(len) -> ptr` and `rot13(ptr, len) -> i64`, whose
 * result packs the output's pointer (high 32 bits) and length (low 32 bits).
 *
 *   clang --target=wasm32 -O2 -nostdlib -Wl,--no-entry \
 *         -Wl,--export=alloc -Wl,--export=rot13 rot13.c -o rot13.wasm
 *
 *   Munition.fire(wasm, "rot13", ["Hello"], result: :binary)  #=> {:ok, "Uryyb", _}
 */
#include <stddef.h>
#include <stdint.h>

/* The linker places the heap after the data and the stack. */
extern unsigned char __heap_base;

static uintptr_t heap_top = 0;

/* A bump allocator: every call runs in a fresh instance, so nothing is freed. */
void *alloc(uint32_t len) {
    if (heap_top == 0)
        heap_top = (uintptr_t)&__heap_base;

    uintptr_t ptr = (heap_top + 7) & ~(uintptr_t)7;
    uintptr_t end = ptr + len;
    size_t have = __builtin_wasm_memory_size(0) * 65536;

    if (end > have) {
        size_t pages = (end - have + 65535) / 65536;
        if (__builtin_wasm_memory_grow(0, pages) == (size_t)-1)
            return NULL;
    }
    heap_top = end;
    return (void *)ptr;
}

static unsigned char rotate(unsigned char c) {
    if (c >= 'a' && c <= 'z')
        return 'a' + (c - 'a' + 13) % 26;
    if (c >= 'A' && c <= 'Z')
        return 'A' + (c - 'A' + 13) % 26;
    return c;
}

uint64_t rot13(const unsigned char *in, uint32_t len) {
    unsigned char *out = alloc(len);
    if (out == NULL && len > 0)
        __builtin_trap();
    for (uint32_t i = 0; i < len; i++)
        out[i] = rotate(in[i]);
    return ((uint64_t)(uintptr_t)out << 32) | len;
}

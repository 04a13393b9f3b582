/* The plugin world (../plugin.wit) in C: the same rules as js/plugin.js and
 * python/app.py, compiled to a core module and wrapped as a component.
 *
 * `wit-bindgen c` generates plugin.h and plugin.c (the canonical ABI glue:
 * the lifting and lowering, cabi_realloc, the post-return functions that free
 * what an export returned); this file implements the exports_plugin_*
 * functions declared there. tools/build_components.sh builds it:
 *   wit-bindgen c plugin.wit --world plugin --out-dir gen
 *   clang --target=wasm32-wasi -mexec-model=reactor -O2 -Igen plugin.c gen/plugin.c gen/plugin_component_type.o
 *   wasm-tools component new core.wasm --adapt wasi_snapshot_preview1.reactor.wasm
 *
 * Ownership, as wit-bindgen's C bindings define it: an export owns its
 * arguments and frees them; what it returns is freed by the post-return
 * function with free(), so every returned string or list of length > 0 is
 * allocated with cabi_realloc (plugin_string_dup calls it), never a literal.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "plugin.h"

/* wit-bindgen's allocator (gen/plugin.c), the one the post-return functions
 * free after: it traps when memory runs out instead of returning NULL. */
void *cabi_realloc(void *ptr, size_t old_size, size_t align, size_t new_size);

static bool is_string(const plugin_string_t *s, const char *c) {
    size_t n = strlen(c);
    return s->len == n && memcmp(s->ptr, c, n) == 0;
}

/* The number of Unicode characters in UTF-8 text: the bytes that do not
 * continue a sequence (10xxxxxx). */
static size_t characters(const plugin_string_t *s) {
    size_t n = 0;
    for (size_t i = 0; i < s->len; i++)
        n += (s->ptr[i] & 0xC0) != 0x80;
    return n;
}

/* A word character of JavaScript's \w: ASCII letters, digits and '_'. Any
 * other byte, each byte of a non-ASCII character too, separates words. */
static bool is_word(uint8_t c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

bool exports_plugin_check(uint32_t amount, plugin_string_t *country) {
    bool ok = amount <= 1000 || is_string(country, "DE");
    plugin_string_free(country);
    return ok;
}

void exports_plugin_classify(plugin_order_t *o, plugin_decision_t *ret) {
    char message[64];

    if (o->amount <= 1000) {
        ret->tag = PLUGIN_DECISION_ALLOW;
    } else if (is_string(&o->country, "DE")) {
        ret->tag = PLUGIN_DECISION_REVIEW;
        plugin_string_dup(&ret->val.review, "large order from DE");
    } else {
        ret->tag = PLUGIN_DECISION_DENY;
        /* No snprintf: it would link stdio's formatting for one number. */
        char digits[10];
        size_t n = 0;
        for (uint32_t a = o->amount; a > 0; a /= 10)
            digits[n++] = (char)('0' + a % 10);
        size_t len = 0;
        while (n > 0)
            message[len++] = digits[--n];
        static const char over[] = " is over the limit";
        memcpy(message + len, over, sizeof over - 1);
        plugin_string_dup_n(&ret->val.deny, message, len + sizeof over - 1);
    }
    plugin_order_free(o);
}

void exports_plugin_tags(plugin_string_t *text, plugin_list_string_t *ret) {
    /* "tags of N characters", logged once through the host, as the JS does. */
    char message[48];
    static const char head[] = "tags of ", tail[] = " characters";
    char digits[20];
    size_t n = 0, len = sizeof head - 1;
    memcpy(message, head, len);
    size_t count = characters(text);
    do {
        digits[n++] = (char)('0' + count % 10);
        count /= 10;
    } while (count > 0);
    while (n > 0)
        message[len++] = digits[--n];
    memcpy(message + len, tail, sizeof tail - 1);
    plugin_string_t line = {(uint8_t *)message, len + sizeof tail - 1};
    munition_plugin_host_log(&line);

    /* At most one word for every two bytes (a word and its separator). */
    size_t words = 0;
    plugin_string_t *list = cabi_realloc(NULL, 0, _Alignof(plugin_string_t), (text->len + 1) / 2 * sizeof *list);
    for (size_t i = 0; i < text->len;) {
        if (!is_word(text->ptr[i])) {
            i++;
            continue;
        }
        size_t start = i;
        while (i < text->len && is_word(text->ptr[i]))
            i++;
        plugin_string_dup_n(&list[words], (const char *)text->ptr + start, i - start);
        for (size_t j = 0; j < list[words].len; j++)
            if (list[words].ptr[j] >= 'A' && list[words].ptr[j] <= 'Z')
                list[words].ptr[j] += 'a' - 'A';
        words++;
    }
    if (words == 0) {
        if (text->len > 0) /* cabi_realloc allocates nothing for size 0 */
            free(list);
        list = NULL;
    }
    ret->ptr = list;
    ret->len = words;
    plugin_string_free(text);
}

bool exports_plugin_total(plugin_list_u32_t *amounts, uint64_t *ret, plugin_string_t *err) {
    uint64_t sum = 0;
    for (size_t i = 0; i < amounts->len; i++) {
        if (amounts->ptr[i] == 0) {
            plugin_list_u32_free(amounts);
            plugin_string_dup(err, "zero is not an amount");
            return false;
        }
        sum += amounts->ptr[i];
    }
    plugin_list_u32_free(amounts);
    *ret = sum;
    return true;
}

/* An endless loop is undefined behaviour in C that the optimiser may delete;
 * a volatile counter is a side effect it must keep, turn after turn. */
uint32_t exports_plugin_spin(void) {
    volatile uint32_t turns = 0;
    for (;;)
        turns++;
}

/* The message goes to standard error (WASI, through the adapter), as an
 * uncaught JavaScript or Python exception's does, then the guest traps. */
void exports_plugin_fail(plugin_string_t *message) {
    static const char head[] = "Error: ";
    write(STDERR_FILENO, head, sizeof head - 1);
    write(STDERR_FILENO, message->ptr, message->len);
    write(STDERR_FILENO, "\n", 1);
    abort();
}

/* A WASI command that sums the integers on standard input, one per line, and
 * refuses anything else the way C programs often do: a message on standard
 * error, then abort(), which in WebAssembly is the `unreachable` instruction.
 * The message must reach the crash dump's stderr.
 *
 *   clang --target=wasm32-wasi -O2 checked_sum.c -o checked_sum.wasm
 *
 *   printf '1\n2\n' | checked_sum   -> prints "3"
 *   printf '1\nx\n' | checked_sum   -> "bad input on line 2: \"x\"" on stderr, trap
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void) {
    char line[256];
    long long sum = 0;
    int lineno = 0;

    while (fgets(line, sizeof line, stdin)) {
        lineno++;
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] == '\0')
            continue;

        char *end;
        errno = 0;
        long long value = strtoll(line, &end, 10);
        if (errno != 0 || *end != '\0') {
            fprintf(stderr, "bad input on line %d: \"%s\"\n", lineno, line);
            abort();
        }
        sum += value;
    }
    printf("%lld\n", sum);
    return 0;
}

/* The host's memory latency by working-set size: one dependent load after another through a
 * random cyclic permutation of pointers (no prefetcher can guess the next address), so each load
 * costs what a cache miss at that size costs on this machine. BENCHMARKS.md section 1 quotes it to
 * tell a slower engine from a host whose caches are smaller or shared with noisy neighbours:
 *
 *     gcc -O2 -o /tmp/memlatency bench/memlatency.c && /tmp/memlatency
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static uint64_t state = 88172645463325252ULL;

static uint64_t next_random(void) { /* xorshift64: seeded, the same permutation every run */
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
}

int main(void) {
    const size_t kib[] = {32, 256, 1024, 4096, 16384, 65536, 262144};
    const long loads = 20000000;
    for (size_t s = 0; s < sizeof kib / sizeof kib[0]; s++) {
        size_t n = kib[s] * 1024 / sizeof(void *);
        void **slots = malloc(n * sizeof(void *));
        size_t *order = malloc(n * sizeof(size_t));
        if (slots == NULL || order == NULL)
            return 1;
        for (size_t i = 0; i < n; i++)
            order[i] = i;
        for (size_t i = n - 1; i > 0; i--) { /* Fisher-Yates */
            size_t j = next_random() % (i + 1), t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
        for (size_t i = 0; i < n; i++)
            slots[order[i]] = &slots[order[(i + 1) % n]];
        void **p = &slots[order[0]];
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        for (long i = 0; i < loads; i++)
            p = (void **)*p;
        clock_gettime(CLOCK_MONOTONIC, &b);
        double ns = ((double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec)) / (double)loads;
        printf("%8zu KiB working set: %6.1f ns a load%s\n", kib[s], ns, p == NULL ? "!" : "");
        free(slots);
        free(order);
    }
    return 0;
}

/* A harvester's proof-of-work solver: OpenSSL SHA-256 in a tight loop, one core.
 *
 * Solves ScrapeShield's challenge (docs/challenge.md): find a nonce of 12 ASCII digits such that
 * SHA-256(seed || nonce) begins with `bits` zero bits. Compiled at bench time (gcc -O2 -lcrypto)
 * and called through ctypes, so the bench measures what a native farm pays, not Python.
 */
#include <openssl/sha.h>
#include <stdint.h>
#include <string.h>

/* Returns the number of hashes tried (>= 1) with the 12-digit nonce in out_nonce, or -tried. */
long long shield_solve(const unsigned char *seed, int seed_len, int bits, unsigned long long start,
                       unsigned long long max_tries, char *out_nonce) {
    unsigned char msg[64], digest[SHA256_DIGEST_LENGTH];
    if (seed_len < 0 || seed_len > 32) return 0;
    memcpy(msg, seed, (size_t)seed_len);
    char *nonce = (char *)msg + seed_len;
    for (unsigned long long i = 0; i < max_tries; i++) {
        unsigned long long n = start + i;
        for (int d = 11; d >= 0; d--) { nonce[d] = (char)('0' + n % 10); n /= 10; }
        SHA256(msg, (size_t)seed_len + 12, digest);
        uint64_t head = ((uint64_t)digest[0] << 56) | ((uint64_t)digest[1] << 48) | ((uint64_t)digest[2] << 40) |
                        ((uint64_t)digest[3] << 32) | ((uint64_t)digest[4] << 24) | ((uint64_t)digest[5] << 16) |
                        ((uint64_t)digest[6] << 8) | (uint64_t)digest[7];
        if (bits == 0 || (head >> (64 - bits)) == 0) {
            memcpy(out_nonce, nonce, 12);
            out_nonce[12] = 0;
            return (long long)(i + 1);
        }
    }
    return -(long long)max_tries;
}

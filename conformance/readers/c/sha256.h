/* SHA-256 (FIPS 180-4), streaming. Self-contained so the reader needs no crypto library. */
#ifndef MLA_SHA256_H
#define MLA_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t state[8];
    uint64_t total;          /* bytes hashed so far */
    uint8_t buf[64];         /* pending partial block */
    size_t used;             /* bytes in buf */
} sha256_ctx;

void sha256_init(sha256_ctx *ctx);
void sha256_update(sha256_ctx *ctx, const void *data, size_t len);
/* Finish and write 64 lower-case hex digits plus a NUL into hex[65]. */
void sha256_final_hex(sha256_ctx *ctx, char hex[65]);

#endif

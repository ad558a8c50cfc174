/* SHA-256 (FIPS 180-4) and HMAC-SHA256 (RFC 2104), written for an 8-bit
 * microcontroller: no malloc, a 104-byte context, constants in flash on AVR.
 * Portable C99; no Arduino headers. */
#ifndef JB_SHA256_H
#define JB_SHA256_H

#include <stdint.h>
#include <stddef.h>

#define JB_SHA256_BYTES 32
#define JB_SHA256_BLOCK 64

typedef struct {
    uint32_t state[8];
    /* The block being filled; compress() then works its message schedule
     * in place, as words (64 bytes less of stack on a 2 KiB board). */
    union {
        uint8_t block[JB_SHA256_BLOCK];
        uint32_t words[JB_SHA256_BLOCK / 4];
    } u;
    uint32_t bytes; /* message length so far; lines are far below 512 MiB */
} jb_sha256_ctx;


void jb_sha256_init(jb_sha256_ctx *ctx);
void jb_sha256_update(jb_sha256_ctx *ctx, const void *data, size_t len);
void jb_sha256_final(jb_sha256_ctx *ctx, uint8_t out[JB_SHA256_BYTES]);

/* HMAC-SHA256 with a key of at most 64 bytes (the board's keys are 32):
 * init, any number of updates, then final with the same key. */
void jb_hmac_init(jb_sha256_ctx *ctx, const uint8_t *key, uint8_t key_len);
void jb_hmac_final(jb_sha256_ctx *ctx, const uint8_t *key, uint8_t key_len, uint8_t out[JB_SHA256_BYTES]);

/* A key's padded states, the first block of each HMAC pass already
 * hashed: an HMAC of a short line then costs 2 SHA-256 blocks instead of 4.
 * 64 bytes per key. */
typedef struct {
    uint32_t inner[8];
    uint32_t outer[8];
} jb_hmac_key;

/* ``scratch``: a context it may use (its contents are lost). */
void jb_hmac_key_setup(jb_hmac_key *k, const uint8_t *key, uint8_t key_len, jb_sha256_ctx *scratch);
/* As jb_hmac_init and jb_hmac_final, with the padded states; ``out`` may
 * be the context's own ``block``. */
void jb_hmac_start(jb_sha256_ctx *ctx, const jb_hmac_key *k);
void jb_hmac_finish(jb_sha256_ctx *ctx, const jb_hmac_key *k, uint8_t out[JB_SHA256_BYTES]);

/* Constant-time comparison: 0 when equal. */
uint8_t jb_differ(const void *a, const void *b, uint8_t len);

#endif

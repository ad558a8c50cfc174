/* SHA-256 and HMAC-SHA256; see jb_sha256.h. */
#include "jb_sha256.h"

#include <string.h>

#include "jb_rom.h"

static const uint32_t K[64] JB_ROM = {
    0x428a2f98UL, 0x71374491UL, 0xb5c0fbcfUL, 0xe9b5dba5UL, 0x3956c25bUL, 0x59f111f1UL, 0x923f82a4UL, 0xab1c5ed5UL,
    0xd807aa98UL, 0x12835b01UL, 0x243185beUL, 0x550c7dc3UL, 0x72be5d74UL, 0x80deb1feUL, 0x9bdc06a7UL, 0xc19bf174UL,
    0xe49b69c1UL, 0xefbe4786UL, 0x0fc19dc6UL, 0x240ca1ccUL, 0x2de92c6fUL, 0x4a7484aaUL, 0x5cb0a9dcUL, 0x76f988daUL,
    0x983e5152UL, 0xa831c66dUL, 0xb00327c8UL, 0xbf597fc7UL, 0xc6e00bf3UL, 0xd5a79147UL, 0x06ca6351UL, 0x14292967UL,
    0x27b70a85UL, 0x2e1b2138UL, 0x4d2c6dfcUL, 0x53380d13UL, 0x650a7354UL, 0x766a0abbUL, 0x81c2c92eUL, 0x92722c85UL,
    0xa2bfe8a1UL, 0xa81a664bUL, 0xc24b8b70UL, 0xc76c51a3UL, 0xd192e819UL, 0xd6990624UL, 0xf40e3585UL, 0x106aa070UL,
    0x19a4c116UL, 0x1e376c08UL, 0x2748774cUL, 0x34b0bcb5UL, 0x391c0cb3UL, 0x4ed8aa4aUL, 0x5b9cca4fUL, 0x682e6ff3UL,
    0x748f82eeUL, 0x78a5636fUL, 0x84c87814UL, 0x8cc70208UL, 0x90befffaUL, 0xa4506cebUL, 0xbef9a3f7UL, 0xc67178f2UL,
};

static uint32_t ror(uint32_t x, uint8_t n) { return (x >> n) | (x << (32 - n)); }

/* One 64-byte block.  The message schedule is kept as a rolling window of
 * 16 words (64 bytes of stack instead of 256). */
static void compress(jb_sha256_ctx *ctx)
{
    uint32_t w[16];
    uint32_t v[8];
    uint8_t i;
    for (i = 0; i < 16; i++) {
        const uint8_t *p = ctx->block + 4 * i;
        w[i] = ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
    }
    memcpy(v, ctx->state, sizeof v);
    for (i = 0; i < 64; i++) {
        uint32_t t1, t2;
        if (i >= 16) {
            uint32_t w15 = w[(i - 15) & 15], w2 = w[(i - 2) & 15];
            uint32_t s0 = ror(w15, 7) ^ ror(w15, 18) ^ (w15 >> 3);
            uint32_t s1 = ror(w2, 17) ^ ror(w2, 19) ^ (w2 >> 10);
            w[i & 15] += s0 + w[(i - 7) & 15] + s1;
        }
        t1 = v[7] + (ror(v[4], 6) ^ ror(v[4], 11) ^ ror(v[4], 25)) + ((v[4] & v[5]) ^ (~v[4] & v[6]))
             + jb_rom_u32(&K[i]) + w[i & 15];
        t2 = (ror(v[0], 2) ^ ror(v[0], 13) ^ ror(v[0], 22)) + ((v[0] & v[1]) ^ (v[0] & v[2]) ^ (v[1] & v[2]));
        memmove(v + 1, v, 7 * sizeof v[0]);
        v[4] += t1;
        v[0] = t1 + t2;
    }
    for (i = 0; i < 8; i++)
        ctx->state[i] += v[i];
}

void jb_sha256_init(jb_sha256_ctx *ctx)
{
    static const uint32_t H0[8] JB_ROM = {0x6a09e667UL, 0xbb67ae85UL, 0x3c6ef372UL, 0xa54ff53aUL,
                                   0x510e527fUL, 0x9b05688cUL, 0x1f83d9abUL, 0x5be0cd19UL};
    uint8_t i;
    for (i = 0; i < 8; i++)
        ctx->state[i] = jb_rom_u32(&H0[i]);
    ctx->bytes = 0;
}

void jb_sha256_update(jb_sha256_ctx *ctx, const void *data, size_t len)
{
    const uint8_t *p = (const uint8_t *)data;
    while (len--) {
        ctx->block[ctx->bytes++ & 63] = *p++;
        if ((ctx->bytes & 63) == 0)
            compress(ctx);
    }
}

void jb_sha256_final(jb_sha256_ctx *ctx, uint8_t out[JB_SHA256_BYTES])
{
    uint32_t bits = ctx->bytes << 3;
    uint8_t used = ctx->bytes & 63;
    uint8_t i;
    ctx->block[used++] = 0x80;
    if (used > 56) {
        memset(ctx->block + used, 0, 64 - used);
        compress(ctx);
        used = 0;
    }
    memset(ctx->block + used, 0, 60 - used);
    /* The high word of the 64-bit length: lines and keys are short. */
    ctx->block[59] = (uint8_t)(ctx->bytes >> 29);
    for (i = 0; i < 4; i++)
        ctx->block[60 + i] = (uint8_t)(bits >> (24 - 8 * i));
    compress(ctx);
    for (i = 0; i < 32; i++)
        out[i] = (uint8_t)(ctx->state[i >> 2] >> (24 - 8 * (i & 3)));
}

static void pad_key(jb_sha256_ctx *ctx, const uint8_t *key, uint8_t key_len, uint8_t pad)
{
    uint8_t i;
    jb_sha256_init(ctx);
    for (i = 0; i < JB_SHA256_BLOCK; i++) {
        uint8_t b = (uint8_t)((i < key_len ? key[i] : 0) ^ pad);
        jb_sha256_update(ctx, &b, 1);
    }
}

void jb_hmac_init(jb_sha256_ctx *ctx, const uint8_t *key, uint8_t key_len)
{
    pad_key(ctx, key, key_len, 0x36);
}

void jb_hmac_final(jb_sha256_ctx *ctx, const uint8_t *key, uint8_t key_len, uint8_t out[JB_SHA256_BYTES])
{
    uint8_t inner[JB_SHA256_BYTES];
    jb_sha256_final(ctx, inner);
    pad_key(ctx, key, key_len, 0x5c);
    jb_sha256_update(ctx, inner, sizeof inner);
    jb_sha256_final(ctx, out);
}

uint8_t jb_differ(const void *a, const void *b, uint8_t len)
{
    const uint8_t *x = (const uint8_t *)a, *y = (const uint8_t *)b;
    uint8_t d = 0;
    while (len--)
        d |= *x++ ^ *y++;
    return d;
}

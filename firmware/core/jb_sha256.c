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

#ifdef __AVR__
/* The AVR shifts one bit per instruction, and a 32-bit shift by n is a loop
 * of n: a rotation by 25 costs ~230 cycles.  Rotating by whole bytes is a
 * few moves, so each rotation below is a byte rotation and at most three
 * single-bit ones (in assembly: C cannot say "rotate through carry"). */
static inline uint32_t rotr1(uint32_t x)
{
    __asm__("bst %A0, 0\n\tlsr %D0\n\tror %C0\n\tror %B0\n\tror %A0\n\tbld %D0, 7" : "+r"(x));
    return x;
}

static inline uint32_t rotl1(uint32_t x)
{
    __asm__("lsl %A0\n\trol %B0\n\trol %C0\n\trol %D0\n\tadc %A0, __zero_reg__" : "+r"(x));
    return x;
}

#define R8(x) (((x) >> 8) | ((x) << 24))
#define R16(x) (((x) >> 16) | ((x) << 16))
#define R24(x) (((x) >> 24) | ((x) << 8))

static inline uint32_t big_sigma0(uint32_t a)
{
    uint32_t b16 = R16(a), b24 = R24(a);
    return rotr1(rotr1(a)) ^ rotl1(rotl1(rotl1(b16))) ^ rotl1(rotl1(b24)); /* 2, 13, 22 */
}

static inline uint32_t big_sigma1(uint32_t e)
{
    uint32_t b8 = R8(e);
    return rotl1(rotl1(b8)) ^ rotr1(rotr1(rotr1(b8))) ^ rotr1(R24(e)); /* 6, 11, 25 */
}

static inline uint32_t small_sigma0(uint32_t w)
{
    return rotl1(R8(w)) ^ rotr1(rotr1(R16(w))) ^ (w >> 3); /* 7, 18, >> 3 */
}

static inline uint32_t small_sigma1(uint32_t w)
{
    uint32_t r17 = rotr1(R16(w));
    return r17 ^ rotr1(rotr1(r17)) ^ ((w >> 8) >> 2); /* 17, 19, >> 10 */
}
#else
#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))
#define big_sigma0(a) (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22))
#define big_sigma1(e) (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25))
#define small_sigma0(w) (ROR(w, 7) ^ ROR(w, 18) ^ ((w) >> 3))
#define small_sigma1(w) (ROR(w, 17) ^ ROR(w, 19) ^ ((w) >> 10))
#endif

/* Round i: the working variables take turns instead of being shifted
 * along each round (eight rounds a pass), which spares the 8-bit AVR ~60
 * register moves a round. */
#define ROUND(a, b, c, d, e, f, g, h, i)                                                      \
    do {                                                                                      \
        uint32_t t1 = h + big_sigma1(e) + ((e & f) ^ (~e & g)) + jb_rom_u32(&K[i]) + w[(i) & 15]; \
        d += t1;                                                                              \
        h = t1 + big_sigma0(a) + ((a & b) ^ (c & (a ^ b)));                                   \
    } while (0)

/* One 64-byte block, which it consumes: the message schedule is a rolling
 * window of 16 words kept in the block itself. */
static void compress(jb_sha256_ctx *ctx)
{
    uint32_t *w = ctx->u.words;
    uint32_t a, b, c, d, e, f, g, h;
    uint8_t i;
    for (i = 0; i < 16; i++) {
        const uint8_t *p = ctx->u.block + 4 * i;
        w[i] = ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
    }
    a = ctx->state[0];
    b = ctx->state[1];
    c = ctx->state[2];
    d = ctx->state[3];
    e = ctx->state[4];
    f = ctx->state[5];
    g = ctx->state[6];
    h = ctx->state[7];
    for (i = 0; i < 64; i += 8) {
        if (i >= 16) {
            uint8_t j;
            for (j = i; j < i + 8; j++)
                w[j & 15] += small_sigma0(w[(j - 15) & 15]) + w[(j - 7) & 15] + small_sigma1(w[(j - 2) & 15]);
        }
        ROUND(a, b, c, d, e, f, g, h, i);
        ROUND(h, a, b, c, d, e, f, g, i + 1);
        ROUND(g, h, a, b, c, d, e, f, i + 2);
        ROUND(f, g, h, a, b, c, d, e, i + 3);
        ROUND(e, f, g, h, a, b, c, d, i + 4);
        ROUND(d, e, f, g, h, a, b, c, i + 5);
        ROUND(c, d, e, f, g, h, a, b, i + 6);
        ROUND(b, c, d, e, f, g, h, a, i + 7);
    }
    ctx->state[0] += a;
    ctx->state[1] += b;
    ctx->state[2] += c;
    ctx->state[3] += d;
    ctx->state[4] += e;
    ctx->state[5] += f;
    ctx->state[6] += g;
    ctx->state[7] += h;
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
        ctx->u.block[ctx->bytes++ & 63] = *p++;
        if ((ctx->bytes & 63) == 0)
            compress(ctx);
    }
}

void jb_sha256_final(jb_sha256_ctx *ctx, uint8_t out[JB_SHA256_BYTES])
{
    uint32_t bits = ctx->bytes << 3;
    uint8_t used = ctx->bytes & 63;
    uint8_t i;
    ctx->u.block[used++] = 0x80;
    if (used > 56) {
        memset(ctx->u.block + used, 0, 64 - used);
        compress(ctx);
        used = 0;
    }
    memset(ctx->u.block + used, 0, 60 - used);
    /* The high word of the 64-bit length: lines and keys are short. */
    ctx->u.block[59] = (uint8_t)(ctx->bytes >> 29);
    for (i = 0; i < 4; i++)
        ctx->u.block[60 + i] = (uint8_t)(bits >> (24 - 8 * i));
    compress(ctx);
    for (i = 0; i < 32; i++)
        out[i] = (uint8_t)(ctx->state[i >> 2] >> (24 - 8 * (i & 3)));
}

static void pad_key(jb_sha256_ctx *ctx, const uint8_t *key, uint8_t key_len, uint8_t pad)
{
    uint8_t i;
    jb_sha256_init(ctx);
    for (i = 0; i < JB_SHA256_BLOCK; i++)
        ctx->u.block[i] = (uint8_t)((i < key_len ? key[i] : 0) ^ pad);
    ctx->bytes = JB_SHA256_BLOCK;
    compress(ctx);
}

void jb_hmac_init(jb_sha256_ctx *ctx, const uint8_t *key, uint8_t key_len)
{
    pad_key(ctx, key, key_len, 0x36);
}

/* The outer pass of an HMAC, its inner hash kept in the context's own
 * block buffer (no 32 bytes more of stack): jb_sha256_update copies it onto
 * itself, byte i to byte i, before the padding follows it. */
static void outer_pass(jb_sha256_ctx *ctx, uint8_t out[JB_SHA256_BYTES])
{
    jb_sha256_update(ctx, ctx->u.block, JB_SHA256_BYTES);
    jb_sha256_final(ctx, out);
}

void jb_hmac_final(jb_sha256_ctx *ctx, const uint8_t *key, uint8_t key_len, uint8_t out[JB_SHA256_BYTES])
{
    uint8_t inner[JB_SHA256_BYTES];
    jb_sha256_final(ctx, inner);
    pad_key(ctx, key, key_len, 0x5c);
    jb_sha256_update(ctx, inner, sizeof inner);
    jb_sha256_final(ctx, out);
}

void jb_hmac_key_setup(jb_hmac_key *k, const uint8_t *key, uint8_t key_len, jb_sha256_ctx *scratch)
{
    pad_key(scratch, key, key_len, 0x36);
    memcpy(k->inner, scratch->state, sizeof k->inner);
    pad_key(scratch, key, key_len, 0x5c);
    memcpy(k->outer, scratch->state, sizeof k->outer);
}

void jb_hmac_start(jb_sha256_ctx *ctx, const jb_hmac_key *k)
{
    memcpy(ctx->state, k->inner, sizeof ctx->state);
    ctx->bytes = JB_SHA256_BLOCK;
}

void jb_hmac_finish(jb_sha256_ctx *ctx, const jb_hmac_key *k, uint8_t out[JB_SHA256_BYTES])
{
    jb_sha256_final(ctx, ctx->u.block);
    memcpy(ctx->state, k->outer, sizeof ctx->state);
    ctx->bytes = JB_SHA256_BLOCK;
    outer_pass(ctx, out);
}

uint8_t jb_differ(const void *a, const void *b, uint8_t len)
{
    const uint8_t *x = (const uint8_t *)a, *y = (const uint8_t *)b;
    uint8_t d = 0;
    while (len--)
        d |= *x++ ^ *y++;
    return d;
}

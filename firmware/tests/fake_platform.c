/* See fake_platform.h. */
#include "fake_platform.h"

#include <assert.h>
#include <string.h>

#include "jb_platform.h"

uint8_t fp_relay[8];
unsigned fp_relay_writes;
uint8_t fp_store[FP_STORE_BYTES];
uint8_t fp_unlocked;
unsigned fp_closes;
unsigned fp_macs;
int fp_tear_after = -1;
uint8_t fp_write_backwards;

static char out[1 << 16];
static size_t out_len, out_read;
static char line[256];

void fp_reset(void)
{
    memset(fp_relay, 0, sizeof fp_relay);
    memset(fp_store, 0xFF, sizeof fp_store);
    fp_relay_writes = fp_closes = fp_macs = 0;
    fp_unlocked = 0;
    out_len = out_read = 0;
}

const char *fp_line(void)
{
    const char *end = memchr(out + out_read, '\n', out_len - out_read);
    size_t n;
    if (!end)
        return NULL;
    n = (size_t)(end - (out + out_read));
    assert(n < sizeof line);
    memcpy(line, out + out_read, n);
    line[n] = 0;
    out_read += n + 1;
    return line;
}

unsigned fp_pending(void)
{
    unsigned n = 0;
    size_t i;
    for (i = out_read; i < out_len; i++)
        n += out[i] == '\n';
    return n;
}

void fp_drain(void) { out_read = out_len; }

void jb_plat_write(const char *data, uint8_t len)
{
    assert(out_len + len < sizeof out);
    memcpy(out + out_len, data, len);
    out_len += len;
}

void jb_plat_relay(uint8_t index, uint8_t on)
{
    assert(index < 8);
    fp_relay[index] = on;
    fp_relay_writes++;
}

void jb_plat_store_read(uint16_t addr, void *buf, uint16_t len)
{
    assert(addr + len <= FP_STORE_BYTES);
    memcpy(buf, fp_store + addr, len);
}

void jb_plat_store_write(uint16_t addr, const void *buf, uint16_t len)
{
    uint16_t i;
    assert(addr + len <= FP_STORE_BYTES);
    for (i = 0; i < len; i++) {
        uint16_t k = fp_write_backwards ? (uint16_t)(len - 1 - i) : i;
        if (fp_tear_after == 0)
            return; /* the power is gone */
        if (fp_tear_after > 0)
            fp_tear_after--;
        fp_store[addr + k] = ((const uint8_t *)buf)[k];
    }
}

uint8_t jb_plat_unlocked(void) { return fp_unlocked; }
void jb_plat_close(void) { fp_closes++; }
void jb_plat_mac_mark(uint8_t on) { fp_macs += on; }
uint16_t jb_plat_stack_unused(void) { return 1234; }
uint16_t jb_plat_dropped(void) { return 7; }

uint32_t fp_backstop_at;
uint8_t fp_backstop_mask;
static uint8_t backstop_fired;

uint8_t jb_plat_backstop(uint32_t at, uint8_t mask)
{
    uint8_t fired = backstop_fired;
    backstop_fired = 0;
    fp_backstop_at = at;
    fp_backstop_mask = mask;
    return fired;
}

void fp_backstop_interrupt(uint32_t now)
{
    uint8_t i;
    if (!fp_backstop_mask || (int32_t)(now - fp_backstop_at) < 0)
        return;
    for (i = 0; i < 8; i++)
        if ((fp_backstop_mask >> i) & 1)
            fp_relay[i] = 0;
    backstop_fired |= fp_backstop_mask;
    fp_backstop_mask = 0;
}

/* Constant strings and tables kept in flash on AVR, where a plain const
 * would be copied into the 2 KiB of RAM at start-up.  Elsewhere they are
 * ordinary constants.  A "ROM string" below is one made with JB_S() or
 * declared JB_ROM, read only through jb_rom_byte(). */
#ifndef JB_ROM_H
#define JB_ROM_H

#include <stdint.h>

#ifdef __AVR__
#include <avr/pgmspace.h>
#define JB_ROM PROGMEM
#define JB_S(s) PSTR(s)
#define jb_rom_byte(p) ((char)pgm_read_byte(p))
#define jb_rom_u32(p) pgm_read_dword(p)
#else
#define JB_ROM
#define JB_S(s) (s)
#define jb_rom_byte(p) (*(const char *)(p))
#define jb_rom_u32(p) (*(const uint32_t *)(p))
#endif

/* Does the RAM text (len bytes) equal the ROM string? */
static inline uint8_t jb_rom_eq(const char *text, uint8_t len, const char *rom)
{
    uint8_t i;
    for (i = 0; i < len; i++)
        if (text[i] != jb_rom_byte(rom + i))
            return 0;
    return jb_rom_byte(rom + len) == 0;
}

#endif

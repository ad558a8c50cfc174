/* What the core needs from the board it runs on: a handful of functions
 * each platform (the Uno sketch, the Photon wrapper, the host test and TCP
 * board) defines.  Time is not here: every core entry point takes ``now``,
 * the platform's millisecond clock (wrapping at 2^32, as millis() does). */
#ifndef JB_PLATFORM_H
#define JB_PLATFORM_H

#include <stdint.h>

/* Send bytes to the home (a whole line, LF included). */
void jb_plat_write(const char *data, uint8_t len);
/* Drive relay ``index`` (0 = relay 1): 1 closes it (the load draws). */
void jb_plat_relay(uint8_t index, uint8_t on);
/* The settings store (EEPROM on the Uno): at least JB_STORE_BYTES bytes. */
void jb_plat_store_read(uint16_t addr, void *buf, uint16_t len);
void jb_plat_store_write(uint16_t addr, const void *buf, uint16_t len);
/* 1 while provisioning is unlocked on a provisioned board (the Uno's
 * jumper pulling D8 low); a board without a jumper returns 0. */
uint8_t jb_plat_unlocked(void);
/* Connection-oriented platforms (TCP): close the link; the platform calls
 * jb_connected() once a new one is up.  Never called on a serial line. */
void jb_plat_close(void);
/* A marker around each line's MAC (the Uno raises D9), for measuring it. */
void jb_plat_mac_mark(uint8_t on);
/* Bytes of stack never used so far (stack painting), for PROV STACK; a
 * platform without painting returns 0. */
uint16_t jb_plat_stack_unused(void);
/* The failsafe's backstop, for a platform with a timer interrupt: from
 * ``at`` (its millisecond clock), should nobody have called this again
 * first, the interrupt drives the relays in ``mask`` (bit 0: relay 1) open
 * by itself, once.  Returns, and forgets, the relays it so opened since the
 * last call.  Atomic with respect to the interrupt.  mask 0: nothing
 * scheduled.  A platform without it returns 0. */
uint8_t jb_plat_backstop(uint32_t at, uint8_t mask);
/* Bytes from the home the platform dropped so far (its receive buffer was
 * full), for PROV SHOW; 0 where nothing is ever dropped. */
uint16_t jb_plat_dropped(void);

#endif

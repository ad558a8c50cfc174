/* The platform of the core's host tests: everything the board does is
 * recorded for the tests to look at. */
#ifndef FAKE_PLATFORM_H
#define FAKE_PLATFORM_H

#include <stddef.h>
#include <stdint.h>

#define FP_STORE_BYTES 1024

extern uint8_t fp_relay[8];
extern unsigned fp_relay_writes;
extern uint8_t fp_store[FP_STORE_BYTES];
extern uint8_t fp_unlocked;
extern unsigned fp_closes;
extern unsigned fp_macs;
/* A power cut in the middle of store writes: -1 none; n >= 0: the next n
 * bytes are written, then none until it is set back to -1. */
extern int fp_tear_after;
/* Store writes go last byte first (as avr-libc's eeprom_update_block). */
extern uint8_t fp_write_backwards;

/* The backstop the board scheduled (jb_plat_backstop), and its timer
 * interrupt at ``now``: opens the scheduled relays once it is due. */
extern uint32_t fp_backstop_at;
extern uint8_t fp_backstop_mask;
void fp_backstop_interrupt(uint32_t now);
/* A fresh board: store erased (0xFF), nothing written, relays open. */
void fp_reset(void);
/* The oldest line the board wrote that the test has not taken, without
 * its LF; NULL if none. */
const char *fp_line(void);
/* How many lines are waiting. */
unsigned fp_pending(void);
/* Forget what the board wrote. */
void fp_drain(void);

#endif

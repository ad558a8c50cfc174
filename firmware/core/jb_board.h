/* The jeisson relay board: board protocol version 2 (and 1 for a key-less
 * lab board), relays with their minimum switching interval, the dead-man
 * failsafe, the safe power-up with the cold-load pickup delay, metering,
 * and provisioning.  Portable C99, no malloc, one board per program.
 *
 * The reference it follows behaviour for behaviour is the software
 * actuator (jeisson/actuator/board.py, home_link.py) and docs/protocol.rst.
 *
 * The platform feeds it bytes, ADC samples and time, and implements
 * jb_platform.h; everything else is here. */
#ifndef JB_BOARD_H
#define JB_BOARD_H

#include <stdint.h>

#ifndef JB_MAX_RELAYS
#define JB_MAX_RELAYS 8
#endif

/* The session with the home (jb_state()):
 *
 * JB_UNPROVISIONED  no valid settings: relays open, silent; only PROV lines
 *                   are answered.
 * JB_CLOSED         no session: before the link is up (TCP), or between
 *                   sessions (serial: a new HELLO 1 s after a failsafe, an
 *                   over-long line or a wrong version, 10 s after REFUSED).
 *                   Lines are not answered; in version 1 they are signs of
 *                   life.
 * JB_HELLO_SENT     HELLO sent, waiting for a WELCOME that proves the key
 *                   (answered AUTH; -> JB_ACTIVE, or a new HELLO if a relay
 *                   switched on its own since); REFUSED -> JB_CLOSED; no
 *                   WELCOME within failsafe_after_s -> JB_CLOSED.
 * JB_ACTIVE         welcomed: SET answered ACK/NAK, PING/PONG, MEAS and
 *                   PING sent; silent home for failsafe_after_s -> the
 *                   failsafe and JB_CLOSED; ERR hello, or any line after a
 *                   switch of the board's own -> a new HELLO (JB_HELLO_SENT).
 *
 * In every open state a line that proves nothing is answered ERR auth, a
 * malformed one ERR <code>, and ERR hello starts a new HELLO. */
enum { JB_UNPROVISIONED, JB_CLOSED, JB_HELLO_SENT, JB_ACTIVE };

/* Power-up (or a software restart after PROV SAVE): settings read from the
 * store, the boot counter raised, every relay opened, the cold-load pickup
 * drawn, the failsafe started.  ``connectionless``: a serial line or radio
 * (the board says HELLO at once, and starts sessions on its own); 0: a
 * connection-oriented link (TCP), the platform calls jb_connected(). */
void jb_power_up(uint32_t now, uint8_t connectionless);
/* Connection-oriented links only. */
void jb_connected(uint32_t now);
void jb_disconnected(uint32_t now);
/* Every byte from the home, in order; ``at``: when it arrived (for an LF,
 * when the line was heard: the failsafe counts from then).  Before it
 * handles a line the board switches whatever is due (jb_poll). */
void jb_receive(uint8_t byte, uint32_t at);
/* A PROV line from a provisioning port of its own (the host board's
 * stdin, the Photon's USB), without its LF: never mixed with the link's
 * bytes.  The answer goes through jb_plat_write, as for the link. */
void jb_provision(const char *line, uint8_t len, uint32_t now);
/* Optional: the platform's millisecond clock, read when a relay switches
 * (min_interval counts from the switch itself, not from when the SET
 * arrived) and when a byte is handled.  Without it the board's time is the
 * latest ``at`` or ``now`` it was given.  The board's time never goes
 * backwards. */
void jb_set_clock(uint32_t (*now)(void));
/* The failsafe and the switches waiting for their time, and nothing else
 * (it sends nothing): for a platform to call while it waits, e.g. in a
 * write that waits for room in its send buffer. */
void jb_poll(uint32_t now);
/* Call often (every loop pass): timers, failsafe, readings. */
void jb_tick(uint32_t now);

/* Metering: ``raw`` is a 10-bit ADC sample of ``channel`` (0 = relay 1's
 * clamp).  Safe to call from an interrupt handler.  ``rate_hz``: samples per
 * second per channel, set once before sampling starts; RMS is taken over
 * windows of rate_hz / 5 samples (200 ms: 10 mains cycles at 50 Hz, 12 at
 * 60 Hz). */
void jb_meter_rate(uint16_t rate_hz);
void jb_meter_sample(uint8_t channel, uint16_t raw);

/* For tests and the platform. */
uint8_t jb_state(void);
uint8_t jb_relay_count(void);
uint8_t jb_relay_is_on(uint8_t index);
uint32_t jb_boot_count(void);
uint32_t jb_cold_load_delay_ms(void);
uint16_t jb_reading(uint8_t index);

#endif

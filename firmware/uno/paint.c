/* Stack painting: before main (and before .data and .bss are set up),
 * every byte between the end of the static data (__heap_start: nothing is
 * ever allocated) and the stack pointer is set to JB_PAINT.  The stack
 * grows down from RAMEND over them; the painted bytes still intact at the
 * bottom are the margin it never used (jb_plat_stack_unused, PROV STACK,
 * or read from a simulator's data space).
 *
 * The watchdog goes off here (after a watchdog reset it would fire again
 * within 15 ms), and the relays' pins go low: the earliest moment software can make
 * sure that every relay is open after a reset. */
#include <avr/io.h>
#include <avr/wdt.h>
#include <stdint.h>

#include "jb_platform.h"

#define JB_PAINT 0xC5

extern uint8_t __heap_start;

void jb_paint_stack(void) __attribute__((naked, used, section(".init3")));
void jb_paint_stack(void)
{
    uint8_t *p = &__heap_start;
    /* After a watchdog reset the watchdog stays on, at its shortest
     * period: off until setup() turns it on again. */
    MCUSR = 0;
    wdt_disable();
    PORTD &= (uint8_t)~0xF0; /* D4..D7 low, then outputs */
    DDRD |= 0xF0;
    while (p <= (uint8_t *)SP)
        *p++ = JB_PAINT;
}

uint16_t jb_plat_stack_unused(void)
{
    const uint8_t *p = &__heap_start;
    uint16_t n = 0;
    while (p < (const uint8_t *)RAMEND && *p == JB_PAINT) {
        p++;
        n++;
    }
    return n;
}

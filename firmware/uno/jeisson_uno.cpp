/* The jeisson relay board on an Arduino Uno (ATmega328P, 16 MHz).
 *
 * Everything the board decides is in the portable core (firmware/core);
 * this file only wires it to the Uno:
 *   - the hardware serial port at 9600 baud (uart.c): the home, or an XBee
 *     in transparent mode (a serial line: the board says HELLO on its own);
 *   - relays on D4..D7 (relay 1..4), active high;
 *   - current clamps on A0..A3 (relay 1..4), sampled by Timer1 at 4 kHz
 *     round robin: 1000 samples per second per clamp;
 *   - the provisioning jumper: D8 pulled low unlocks PROV commands;
 *   - D9 high while a line's MAC is computed (for measuring its cost);
 *   - settings and the boot counter in the EEPROM;
 *   - the failsafe's backstop in the Timer1 interrupt: relays whose safe
 *     state is off open 5 ms after the failsafe is due even if loop() is
 *     stuck (jb_plat_backstop);
 *   - the watchdog (2 s), fed once per pass of loop() after jb_tick: a hang
 *     resets the board into its safe power-up (every relay open).
 * See docs/firmware.rst. */
#include <Arduino.h>
#include <avr/eeprom.h>
#include <avr/interrupt.h>
#include <avr/wdt.h>

extern "C" {
#include "jb_board.h"
#include "jb_platform.h"
}
#include "uart.h"

static const uint8_t RELAY_PIN = 4;  // relay 1; relay r on D(3 + r)
static const uint8_t JUMPER_PIN = 8;
static const uint8_t MAC_PIN = 9;
static const uint8_t CLAMPS = 4;
static const uint16_t SAMPLE_HZ = 4000;  // all clamps together

extern "C" {

void jb_plat_write(const char *data, uint8_t len) { uart_write(data, len); }

void jb_plat_relay(uint8_t index, uint8_t on)
{
    if (index < 4)
        digitalWrite(RELAY_PIN + index, on ? HIGH : LOW);
}

void jb_plat_store_read(uint16_t addr, void *buf, uint16_t len)
{
    eeprom_read_block(buf, (const void *)addr, len);
}

void jb_plat_store_write(uint16_t addr, const void *buf, uint16_t len)
{
    eeprom_update_block(buf, (void *)addr, len);  // unchanged bytes are not rewritten
}

uint8_t jb_plat_unlocked(void) { return digitalRead(JUMPER_PIN) == LOW; }

void jb_plat_close(void) {}  // a serial line has no connection

void jb_plat_mac_mark(uint8_t on) { digitalWrite(MAC_PIN, on ? HIGH : LOW); }

uint16_t jb_plat_dropped(void)
{
    uint8_t sreg = SREG;
    cli();  // two bytes the receive interrupt writes
    uint16_t n = uart_dropped;
    SREG = sreg;
    return n;
}

// uart.c, while its send buffer is full: the failsafe does not wait for it.
void uart_waiting(void) { jb_poll(millis()); }

static uint32_t clock_now(void) { return millis(); }

}  // extern "C"

static volatile uint8_t clamp;

// The failsafe's backstop (jb_plat_backstop): relays to open at a time,
// should loop() be late for it; those the interrupt opened.
static volatile uint32_t backstop_at;
static volatile uint8_t backstop_mask, backstop_fired;

extern "C" uint8_t jb_plat_backstop(uint32_t at, uint8_t mask)
{
    uint8_t sreg = SREG;
    cli();
    uint8_t fired = backstop_fired;
    backstop_fired = 0;
    backstop_at = at;
    backstop_mask = mask & 0x0F;
    SREG = sreg;
    return fired;
}

// Each tick takes the conversion started at the previous one (13 ADC clocks
// at 125 kHz: 104 us of the 250 us period) and starts the next clamp's.
ISR(TIMER1_COMPA_vect)
{
    uint16_t raw = ADC;
    jb_meter_sample(clamp, raw);
    clamp = (clamp + 1) % CLAMPS;
    ADMUX = _BV(REFS0) | clamp;  // AVcc reference
    ADCSRA |= _BV(ADSC);
    // The backstop: relays 1..4 are D4..D7.  (digitalWrite masks
    // interrupts around its own change of PORTD: no lost update.)
    if (backstop_mask && (int32_t)(millis() - backstop_at) >= 0) {
        PORTD &= (uint8_t)~(backstop_mask << 4);
        backstop_fired |= backstop_mask;
        backstop_mask = 0;
    }
}

static void start_sampling(void)
{
    jb_meter_rate(SAMPLE_HZ / CLAMPS);
    ADMUX = _BV(REFS0);
    ADCSRA = _BV(ADEN) | _BV(ADPS2) | _BV(ADPS1) | _BV(ADPS0);  // 16 MHz / 128
    ADCSRA |= _BV(ADSC);
    TCCR1A = 0;
    TCCR1B = _BV(WGM12) | _BV(CS11);  // CTC, 16 MHz / 8
    OCR1A = F_CPU / 8 / SAMPLE_HZ - 1;
    TIMSK1 = _BV(OCIE1A);
}

void setup()
{
    for (uint8_t i = 0; i < 4; i++) {
        digitalWrite(RELAY_PIN + i, LOW);
        pinMode(RELAY_PIN + i, OUTPUT);
    }
    pinMode(JUMPER_PIN, INPUT_PULLUP);
    pinMode(MAC_PIN, OUTPUT);
    uart_begin();
    start_sampling();
    jb_set_clock(clock_now);
    jb_power_up(millis(), 1);
    wdt_enable(WDTO_2S);
}

void loop()
{
    // One line per pass at most, then the timers: a stream of bytes never
    // keeps jb_tick (or the watchdog's feeding) waiting.
    while (uart_available()) {
        // A line is heard when its LF arrived: the failsafe counts from then.
        uint32_t at = millis();
        uint8_t byte = uart_read(&at);
        jb_receive(byte, at);
        if (byte == '\n')
            break;
    }
    jb_tick(millis());
    wdt_reset();
}

/*
 * The harness's own test program (plain avr-libc, no Arduino core), so that
 * the harness, its serial bridge and its time keeping are proven apart from
 * the real firmware.  Lines at 9600 baud (8N1, U2X, as the Arduino core sets
 * it up):
 *
 *   BOOT <n>          sent at power-up: n counts power-ups, kept in EEPROM
 *   ECHO <text>       answered <text>
 *   PIN <4-7> <0|1>   drives PORTD<n>; answered PIN <n> <v>
 *   MS                answered MS <milliseconds since power-up>
 *   ADC <0-3>         samples the channel for 200 ms (10 cycles of 50 Hz);
 *                     answered ADC <ch> <samples> <mean counts x1000> <rms counts x1000>
 *   MARK              GPIOR0 = 1, 10,000 cycles of work, GPIOR0 = 2, interrupts
 *                     masked; answered MARKED
 *   DEEP <n>          n nested calls with 32-byte frames; answered DEEP <n>
 *   FS <ms>           arms a failsafe: D7 goes high once no line came for ms
 */

#include <avr/eeprom.h>
#include <avr/interrupt.h>
#include <avr/io.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <util/delay_basic.h>

static volatile uint32_t ms;
static volatile uint8_t rx[128];
static volatile uint8_t rx_head, rx_tail;
static uint32_t last_heard, failsafe_ms;

ISR(TIMER1_COMPA_vect) { ms++; }

ISR(USART_RX_vect)
{
    uint8_t byte = UDR0;
    uint8_t next = (uint8_t)((rx_head + 1) & 127);
    if (next != rx_tail) {
        rx[rx_head] = byte;
        rx_head = next;
    }
}

static uint32_t now(void)
{
    uint32_t t;
    cli();
    t = ms;
    sei();
    return t;
}

static void put(const char *s)
{
    while (*s) {
        while (!(UCSR0A & _BV(UDRE0)))
            ;
        UDR0 = (uint8_t)*s++;
    }
}

static void say(const char *s)
{
    put(s);
    put("\n");
}

static uint16_t sample(uint8_t ch)
{
    ADMUX = _BV(REFS0) | ch;
    ADCSRA |= _BV(ADSC);
    while (ADCSRA & _BV(ADSC))
        ;
    return ADC;
}

static uint8_t deep(uint8_t n)
{
    volatile uint8_t frame[32];
    frame[0] = n;
    frame[31] = n;
    return n ? (uint8_t)(deep((uint8_t)(n - 1)) + frame[0] - frame[31] + 1) : 0;
}

static void handle(char *line)
{
    char out[64];
    if (!strncmp(line, "ECHO ", 5)) {
        say(line + 5);
    } else if (!strncmp(line, "PIN ", 4)) {
        uint8_t pin = (uint8_t)atoi(line + 4);
        uint8_t on = line[6] == '1';
        if (pin >= 4 && pin <= 7) {
            if (on)
                PORTD |= _BV(pin);
            else
                PORTD &= (uint8_t)~_BV(pin);
            snprintf(out, sizeof out, "PIN %u %u", pin, on);
            say(out);
        }
    } else if (!strcmp(line, "MS")) {
        snprintf(out, sizeof out, "MS %lu", (unsigned long)now());
        say(out);
    } else if (!strncmp(line, "ADC ", 4)) {
        uint8_t ch = (uint8_t)atoi(line + 4) & 3;
        uint32_t start = now(), n = 0;
        float sum = 0, sum2 = 0;
        while (now() - start < 200) {
            float v = sample(ch);
            sum += v;
            sum2 += v * v;
            n++;
        }
        float mean = sum / n;
        float rms = sqrtf(sum2 / n - mean * mean);
        snprintf(out, sizeof out, "ADC %u %lu %lu %lu", ch, (unsigned long)n, (unsigned long)(mean * 1000),
                 (unsigned long)(rms * 1000));
        say(out);
    } else if (!strcmp(line, "MARK")) {
        cli(); /* no interrupt inside the span: exactly the work's cycles */
        GPIOR0 = 1;
        _delay_loop_2(2499); /* 4 cycles an iteration */
        GPIOR0 = 2;
        sei();
        say("MARKED");
    } else if (!strncmp(line, "DEEP ", 5)) {
        uint8_t n = (uint8_t)atoi(line + 5);
        snprintf(out, sizeof out, "DEEP %u", deep(n));
        say(out);
    } else if (!strncmp(line, "FS ", 3)) {
        failsafe_ms = (uint32_t)atol(line + 3);
        say("FS armed");
    } else {
        say("ERR verb");
    }
}

int main(void)
{
    uint16_t boots = eeprom_read_word((uint16_t *)0);
    boots = boots == 0xFFFF ? 1 : (uint16_t)(boots + 1);
    eeprom_write_word((uint16_t *)0, boots);

    DDRD = 0xF0; /* D4..D7 out, low */
    PORTD = 0;
    TCCR1A = 0;
    TCCR1B = _BV(WGM12) | _BV(CS11) | _BV(CS10); /* CTC, clk/64 */
    OCR1A = 249;                                 /* 1 kHz */
    TIMSK1 = _BV(OCIE1A);
    ADCSRA = _BV(ADEN) | _BV(ADPS2) | _BV(ADPS1) | _BV(ADPS0);
    UCSR0A = _BV(U2X0);
    UBRR0 = 207; /* 9600 baud with U2X at 16 MHz */
    UCSR0C = _BV(UCSZ01) | _BV(UCSZ00);
    UCSR0B = _BV(RXEN0) | _BV(TXEN0) | _BV(RXCIE0);
    sei();

    char line[80];
    uint8_t len = 0;
    snprintf(line, sizeof line, "BOOT %u", boots);
    say(line);
    for (;;) {
        if (failsafe_ms && (PORTD & _BV(7)) == 0 && now() - last_heard >= failsafe_ms)
            PORTD |= _BV(7);
        if (rx_tail == rx_head)
            continue;
        char c = (char)rx[rx_tail];
        rx_tail = (uint8_t)((rx_tail + 1) & 127);
        if (c == '\n') {
            line[len] = 0;
            last_heard = now();
            handle(line);
            len = 0;
        } else if (c != '\r' && len < sizeof line - 1) {
            line[len++] = c;
        }
    }
}

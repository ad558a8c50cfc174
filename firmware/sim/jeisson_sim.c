/*
 * jeisson-sim: an ATmega328P at 16 MHz on libsimavr, wired to the world as
 * an Arduino Uno board of jeisson's would be.
 *
 *   jeisson-sim [--eeprom FILE] [--serial DEVICE | --link PATH] [--jumper] [--fast] FIRMWARE.elf
 *
 * - UART0 is bridged to a pseudo-terminal it creates (or, with --serial, to
 *   an existing serial device such as a simulated radio's link), at the
 *   line's true pace: a byte takes its 10 bit-times at the baud rate the
 *   firmware set, both ways.
 * - Simulated time is kept in step with the wall clock (--realtime, the
 *   default), so that a real home's timers and the firmware's agree.
 * - Relay pins D4..D7 (PORTD4..7) are reported on every change; high pulses
 *   on D8..D13 are timed (D9 marks each line MAC); D8 carries the
 *   provisioning jumper (--jumper, or JUMPER on|off).
 * - Commands on stdin set the analog inputs A0..A3 (a sine per channel),
 *   read the stack margin, save and load the EEPROM, reset the MCU, and
 *   report the cycles between two marker writes to GPIOR0.
 *
 * Everything it says goes to stdout, one event per line; the first line is
 * "PTY <path>".  simavr's own chatter goes to stderr.  See
 * docs/firmware.rst, "How the simulated test works", for the grammar.
 */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <sim_avr.h>
#include <sim_elf.h>
#include <sim_core.h>
#include <sim_irq.h>
#include <sim_io.h>
#include <sim_cycle_timers.h>
#include <avr_uart.h>
#include <avr_adc.h>
#include <avr_ioport.h>
#include <avr_eeprom.h>

#define MCU "atmega328p"
#define FREQUENCY 16000000UL
#define SLICE_CYCLES 4000          /* 250 us of simulated time between looks at the world */
#define GPIOR0_ADDR 0x3E           /* data-space address of GPIOR0: the marker register */
#define UCSR0A_ADDR 0xC0
#define UCSR0C_ADDR 0xC2
#define UBRR0L_ADDR 0xC4
#define UBRR0H_ADDR 0xC5
#define SPL_ADDR 0x5D
#define SPH_ADDR 0x5E
#define RAM_START 0x100
#define PAINT 0xC5                 /* the stack paint, as avr-libc users commonly choose */
#define CHANNELS 4
#define QUEUE 8192
#define LINE_REPORT 200

/* The UART's input FIFO is declared by avr_uart.h; these are its accessors. */
DEFINE_FIFO(uint16_t, uart_fifo);

static avr_t *avr;
static avr_uart_t *uart;
static FILE *out;                  /* the event stream: the process's original stdout */
static volatile sig_atomic_t stop_requested;
static int realtime = 1;

static int serial_fd = -1;         /* the pty master, or the --serial device */
static int slave_fd = -1;          /* kept open so the line never hangs up */
static const char *serial_path;
static char serial_name[256];

static const char *eeprom_path;
static uint16_t heap_start;        /* first byte above .data and .bss */
static uint16_t min_sp = 0xFFFF;

static uint64_t wall_start_ns;
static int64_t max_lag_us;

/* --- time ------------------------------------------------------------ */

static uint64_t monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static uint64_t sim_us(void) { return avr->cycle / (FREQUENCY / 1000000UL); }
static uint64_t wall_us(void) { return (monotonic_ns() - wall_start_ns) / 1000ULL; }

static void say(const char *format, ...)
{
    va_list args;
    va_start(args, format);
    vfprintf(out, format, args);
    va_end(args);
    fputc('\n', out);
    fflush(out);
}

#define STAMP "cycles=%llu t_us=%llu wall_us=%llu"
#define STAMP_ARGS (unsigned long long)avr->cycle, (unsigned long long)sim_us(), (unsigned long long)wall_us()

/* --- the serial line ----------------------------------------------------- */

/* Bytes from the outside world waiting to go down the simulated RX wire. */
static uint8_t rx_queue[QUEUE];
static size_t rx_head, rx_len;
/* Bytes the firmware wrote, each due on the outside once it is fully on the wire. */
static struct { uint8_t byte; avr_cycle_count_t due; } tx_queue[QUEUE];
static size_t tx_head, tx_len;
static avr_cycle_count_t tx_wire_free;   /* when the TX wire has finished the last byte */

static char rx_line[LINE_REPORT + 1], tx_line[LINE_REPORT + 1];
static size_t rx_line_len, tx_line_len;

/* One line as text: printable ASCII kept, anything else as \xNN. */
static void report_line(const char *what, char *line, size_t *len)
{
    char text[LINE_REPORT * 4 + 1];
    size_t n = 0;
    for (size_t i = 0; i < *len; i++) {
        unsigned char c = (unsigned char)line[i];
        if (c >= 0x20 && c < 0x7F && c != '\\')
            text[n++] = (char)c;
        else
            n += (size_t)sprintf(text + n, "\\x%02x", c);
    }
    text[n] = 0;
    say("%s " STAMP " %s", what, STAMP_ARGS, text);
    *len = 0;
}

static void collect(const char *what, char *line, size_t *len, uint8_t byte)
{
    if (byte == '\n') {
        if (*len && line[*len - 1] == '\r')
            (*len)--;
        report_line(what, line, len);
        return;
    }
    line[(*len)++] = (char)byte;
    if (*len == LINE_REPORT)
        report_line(what, line, len);   /* an over-long line, reported in pieces */
}

/* The cycles one character takes at the firmware's settings: start bit, 8
 * data bits, parity if enabled, stop bits.  simavr always counts a parity
 * bit; the harness corrects its figure so that 9600 8N1 is 1.042 ms a byte. */
static avr_cycle_count_t cycles_per_byte(void)
{
    unsigned ubrr = avr->data[UBRR0L_ADDR] | ((avr->data[UBRR0H_ADDR] & 0x0F) << 8);
    unsigned per_bit = (ubrr + 1) * ((avr->data[UCSR0A_ADDR] & 0x02) ? 8 : 16);
    uint8_t ucsr0c = avr->data[UCSR0C_ADDR];
    unsigned bits = 1 + 8 + ((ucsr0c & 0x30) ? 1 : 0) + ((ucsr0c & 0x08) ? 2 : 1);
    return (avr_cycle_count_t)per_bit * bits;
}

static int rx_enabled(void) { return avr_regbit_get(avr, uart->rxen); }

/* The RX wire: one byte per character time into the UART, as long as its
 * buffer has room (a real UART would overrun; a real home paces at the baud
 * rate, which this wire does for it). */
static avr_cycle_count_t rx_wire(avr_t *a, avr_cycle_count_t when, void *param)
{
    (void)a; (void)param;
    avr_cycle_count_t period = cycles_per_byte();
    uart->cycles_per_byte = period;
    if (!rx_len)
        return 0;
    if (!rx_enabled()) {
        /* Nobody listening: the bytes are lost, as on a real line. */
        rx_len = 0;
        return 0;
    }
    if (uart_fifo_isfull(&uart->input))
        return when + period;
    uint8_t byte = rx_queue[rx_head];
    rx_head = (rx_head + 1) % QUEUE;
    rx_len--;
    avr_raise_irq(avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_INPUT), byte);
    collect("RX", rx_line, &rx_line_len, byte);
    return rx_len ? when + period : 0;
}

static void queue_rx(const uint8_t *data, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (rx_len == QUEUE) {
            say("WARN rx queue full: %zu bytes dropped", n - i);
            break;
        }
        rx_queue[(rx_head + rx_len) % QUEUE] = data[i];
        rx_len++;
    }
    if (rx_len && avr_cycle_timer_status(avr, rx_wire, NULL) == 0)
        avr_cycle_timer_register(avr, 1, rx_wire, NULL);
}

/* The firmware wrote UDR0: the byte leaves the wire one character later
 * (after the one still being shifted out, if any). */
static void uart_output(struct avr_irq_t *irq, uint32_t value, void *param)
{
    (void)irq; (void)param;
    avr_cycle_count_t period = cycles_per_byte();
    uart->cycles_per_byte = period;
    avr_cycle_count_t start = tx_wire_free > avr->cycle ? tx_wire_free : avr->cycle;
    tx_wire_free = start + period;
    if (tx_len == QUEUE) {
        say("WARN tx queue full: a byte dropped");
        return;
    }
    size_t at = (tx_head + tx_len) % QUEUE;
    tx_queue[at].byte = (uint8_t)value;
    tx_queue[at].due = tx_wire_free;
    tx_len++;
}

static void open_serial_device(void)
{
    serial_fd = open(serial_path, O_RDWR | O_NOCTTY | O_NONBLOCK);
    if (serial_fd < 0)
        return;
    struct termios t;
    if (tcgetattr(serial_fd, &t) == 0) {
        cfmakeraw(&t);
        tcsetattr(serial_fd, TCSANOW, &t);
    }
}

static void flush_tx(void)
{
    uint8_t chunk[QUEUE];
    size_t n = 0;
    while (tx_len && tx_queue[tx_head].due <= avr->cycle) {
        chunk[n++] = tx_queue[tx_head].byte;
        tx_head = (tx_head + 1) % QUEUE;
        tx_len--;
    }
    if (n && serial_fd >= 0) {
        ssize_t written = write(serial_fd, chunk, n);
        if (written < (ssize_t)n)
            say("WARN serial line full: %zd of %zu bytes written", written, n);
    }
    /* Reported once on the line, so that whoever reads the report can read the bytes. */
    for (size_t i = 0; i < n; i++)
        collect("TX", tx_line, &tx_line_len, chunk[i]);
}

static void read_serial(void)
{
    uint8_t buffer[1024];
    for (;;) {
        ssize_t n = read(serial_fd, buffer, sizeof buffer);
        if (n > 0) {
            queue_rx(buffer, (size_t)n);
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        /* The device went away (a simulated radio stopped): say so and try again later. */
        say("SERIAL lost %s (%s) " STAMP, serial_name, n == 0 ? "end of file" : strerror(errno), STAMP_ARGS);
        close(serial_fd);
        serial_fd = -1;
        return;
    }
}

/* --- relay pins D4..D7 -------------------------------------------------- */

static int pin_state[8];

static void pin_changed(struct avr_irq_t *irq, uint32_t value, void *param)
{
    (void)irq;
    int pin = (int)(intptr_t)param;
    int level = value ? 1 : 0;
    if (pin_state[pin] == level)
        return;
    pin_state[pin] = level;
    say("PIN %d %d " STAMP, pin, level, STAMP_ARGS);
}

/* --- durations: how many, shortest, longest, mean, last ------------------ */

struct tally { unsigned long long count, min, max, total, last; };

static void tally_add(struct tally *t, unsigned long long d)
{
    if (!t->count || d < t->min)
        t->min = d;
    if (d > t->max)
        t->max = d;
    t->total += d;
    t->last = d;
    t->count++;
}

static void say_tally(const char *what, const struct tally *t)
{
    say("%s count=%llu min=%llu max=%llu mean=%llu last=%llu", what, t->count, t->min, t->max,
        t->count ? t->total / t->count : 0ULL, t->last);
}

/* --- D8 (the provisioning jumper) and D9 (the MAC marker) ---------------- */

/* D8..D13 are PB0..PB5.  The firmware raises D9 just before each line MAC
 * and lowers it right after: each high pulse is one MAC's cost in cycles. */
static avr_cycle_count_t pulse_rose[6];
static int pulse_level[6];
static struct tally pulses[6];
static int jumper_on;

static void portb_changed(struct avr_irq_t *irq, uint32_t value, void *param)
{
    (void)irq;
    int bit = (int)(intptr_t)param;
    int level = value ? 1 : 0;
    if (level == pulse_level[bit])
        return;
    pulse_level[bit] = level;
    if (level) {
        pulse_rose[bit] = avr->cycle;
        return;
    }
    tally_add(&pulses[bit], avr->cycle - pulse_rose[bit]);
}

/* The jumper on D8 pulls it to ground; without it the line floats up to
 * the firmware's pull-up, which this sets as an external level too. */
static void set_jumper(int on)
{
    jumper_on = on;
    avr_ioport_external_t e = { .name = 'B', .mask = 1, .value = on ? 0 : 1 };
    avr_ioctl(avr, AVR_IOCTL_IOPORT_SET_EXTERNAL('B'), &e);
    avr_raise_irq(avr_io_getirq(avr, AVR_IOCTL_IOPORT_GETIRQ('B'), 0), on ? 0 : 1);
}

/* --- analog inputs A0..A3 ----------------------------------------------- */

static struct { double rms_mv, offset_mv, hz; } channel[CHANNELS];

static uint32_t channel_mv(int c)
{
    double t = (double)avr->cycle / FREQUENCY;
    double v = channel[c].offset_mv + channel[c].rms_mv * M_SQRT2 * sin(2 * M_PI * channel[c].hz * t);
    if (v < 0)
        v = 0;
    if (v > 5000)
        v = 5000;
    return (uint32_t)lround(v);
}

/* A conversion starts: the sample-and-hold takes every input's value now. */
static void adc_trigger(struct avr_irq_t *irq, uint32_t value, void *param)
{
    (void)irq; (void)value; (void)param;
    for (int c = 0; c < CHANNELS; c++)
        avr_raise_irq(avr_io_getirq(avr, AVR_IOCTL_ADC_GETIRQ, ADC_IRQ_ADC0 + c), channel_mv(c));
}

/* --- markers (GPIOR0) ---------------------------------------------------- */

static avr_cycle_count_t marked_at[256];
static int marked[256];
static struct tally span[256][256];
static int verbose_marks;

static void marker_write(avr_t *a, avr_io_addr_t addr, uint8_t v, void *param)
{
    (void)param;
    a->data[addr] = v;
    for (int from = 0; from < 256; from++) {
        if (!marked[from])
            continue;
        tally_add(&span[from][v], a->cycle - marked_at[from]);
    }
    marked_at[v] = a->cycle;
    marked[v] = 1;
    if (verbose_marks)
        say("MARK %u " STAMP, v, STAMP_ARGS);
}

/* --- memory --------------------------------------------------------------- */

static void paint_stack(void)
{
    uint16_t sp = avr->data[SPL_ADDR] | (avr->data[SPH_ADDR] << 8);
    uint16_t top = sp && sp <= avr->ramend ? sp : avr->ramend;
    for (uint32_t a = heap_start; a <= top; a++)
        avr->data[a] = PAINT;
    min_sp = 0xFFFF;
}

static void report_stack(void)
{
    uint32_t untouched = 0;
    for (uint32_t a = heap_start; a <= avr->ramend && avr->data[a] == PAINT; a++)
        untouched++;
    uint32_t sp_margin = min_sp == 0xFFFF ? (uint32_t)(avr->ramend + 1 - heap_start) : (uint32_t)(min_sp + 1 - heap_start);
    say("STACK margin=%u sp_margin=%u heap_start=0x%04x min_sp=0x%04x ramend=0x%04x ram=%u",
        untouched, sp_margin, heap_start, min_sp, avr->ramend, avr->ramend + 1 - RAM_START);
}

#define EEPROM_SIZE 1024

static int eeprom_save(const char *path)
{
    uint8_t image[EEPROM_SIZE];
    avr_eeprom_desc_t d = { .ee = image, .offset = 0, .size = EEPROM_SIZE };
    avr_ioctl(avr, AVR_IOCTL_EEPROM_GET, &d);
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.new", path);
    FILE *f = fopen(tmp, "wb");
    if (!f || fwrite(d.ee, 1, EEPROM_SIZE, f) != EEPROM_SIZE || fclose(f) != 0 || rename(tmp, path) != 0) {
        say("ERR eeprom: cannot write %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

static int eeprom_load(const char *path)
{
    uint8_t image[EEPROM_SIZE + 1];
    FILE *f = fopen(path, "rb");
    if (!f) {
        say("ERR eeprom: cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    size_t n = fread(image, 1, sizeof image, f);
    fclose(f);
    if (n != EEPROM_SIZE) {
        say("ERR eeprom: %s holds %zu bytes; an ATmega328P image is exactly %d", path, n, EEPROM_SIZE);
        return -1;
    }
    avr_eeprom_desc_t d = { .ee = image, .offset = 0, .size = EEPROM_SIZE };
    avr_ioctl(avr, AVR_IOCTL_EEPROM_SET, &d);
    return 0;
}

/* --- commands on stdin ---------------------------------------------------- */

static void quit(int code)
{
    flush_tx();
    if (eeprom_path)
        eeprom_save(eeprom_path);
    say("BYE " STAMP, STAMP_ARGS);
    exit(code);
}

static void power_up(void);

static void command(char *line)
{
    char verb[32] = "";
    int used = 0;
    if (sscanf(line, "%31s %n", verb, &used) < 1)
        return;
    char *rest = line + used;
    if (!strcmp(verb, "ADC")) {
        int c;
        double rms, offset, hz;
        if (sscanf(rest, "%d %lf %lf %lf", &c, &rms, &offset, &hz) != 4 || c < 0 || c >= CHANNELS
            || rms < 0 || offset < 0 || offset > 5000 || hz < 0) {
            say("ERR ADC wants <channel 0-%d> <rms mV >= 0> <offset mV 0-5000> <Hz >= 0>, got: %s",
                CHANNELS - 1, rest);
            return;
        }
        channel[c].rms_mv = rms;
        channel[c].offset_mv = offset;
        channel[c].hz = hz;
        say("OK ADC %d %.3f %.3f %.3f", c, rms, offset, hz);
    } else if (!strcmp(verb, "STACK")) {
        report_stack();
    } else if (!strcmp(verb, "TIME")) {
        say("TIME " STAMP " max_lag_us=%lld", STAMP_ARGS, (long long)max_lag_us);
    } else if (!strcmp(verb, "PINS")) {
        uint8_t port = avr->data[0x2B], ddr = avr->data[0x2A];
        say("PINS 4=%d 5=%d 6=%d 7=%d portd=0x%02x ddrd=0x%02x " STAMP, pin_state[4], pin_state[5],
            pin_state[6], pin_state[7], port, ddr, STAMP_ARGS);
    } else if (!strcmp(verb, "EESAVE") || !strcmp(verb, "EELOAD")) {
        char path[4096];
        if (sscanf(rest, "%4095s", path) != 1) {
            say("ERR %s wants a file name", verb);
            return;
        }
        if ((verb[2] == 'S' ? eeprom_save(path) : eeprom_load(path)) == 0)
            say("OK %s %s", verb, path);
    } else if (!strcmp(verb, "SPAN")) {
        unsigned a, b;
        if (sscanf(rest, "%u %u", &a, &b) != 2 || a > 255 || b > 255) {
            say("ERR SPAN wants two marker values 0-255, got: %s", rest);
            return;
        }
        char what[32];
        snprintf(what, sizeof what, "SPAN %u %u", a, b);
        say_tally(what, &span[a][b]);
    } else if (!strcmp(verb, "PULSES")) {
        int pin;
        if (sscanf(rest, "%d", &pin) != 1 || pin < 8 || pin > 13) {
            say("ERR PULSES wants a pin 8-13, got: %s", rest);
            return;
        }
        char what[32];
        snprintf(what, sizeof what, "PULSES %d", pin);
        say_tally(what, &pulses[pin - 8]);
    } else if (!strcmp(verb, "JUMPER")) {
        if (strcmp(rest, "on") && strcmp(rest, "off")) {
            say("ERR JUMPER wants on or off, got: %s", rest);
            return;
        }
        set_jumper(!strcmp(rest, "on"));
        say("OK JUMPER %s", jumper_on ? "on" : "off");
    } else if (!strcmp(verb, "MARKS")) {
        verbose_marks = strcmp(rest, "off") != 0;
        say("OK MARKS %s", verbose_marks ? "on" : "off");
    } else if (!strcmp(verb, "HANG")) {
        /* A fault injected: the program stuck in a spin with interrupts
         * on, as a bug or a wait that never ends in the main loop would
         * leave it.  An `rjmp .-2` at flash's last word (the boot loader's,
         * unused here), the program counter sent there, and interrupts
         * enabled (the command may land inside an interrupt handler, where
         * they are off: a hang there is a different fault, which only the
         * watchdog catches). */
        uint32_t at = avr->flashend - 1;
        avr->flash[at] = 0xFF;
        avr->flash[at + 1] = 0xCF;
        avr->pc = at;
        avr_sreg_set(avr, S_I, 1);
        say("OK HANG pc=0x%04x " STAMP, (unsigned)at, STAMP_ARGS);
    } else if (!strcmp(verb, "RESET")) {
        power_up();
        say("OK RESET " STAMP, STAMP_ARGS);
    } else if (!strcmp(verb, "QUIT")) {
        quit(0);
    } else {
        say("ERR unknown command %s (ADC, STACK, TIME, PINS, EESAVE, EELOAD, SPAN, PULSES, JUMPER, MARKS, HANG, RESET, QUIT)", verb);
    }
}

static char command_buffer[4096];
static size_t command_len;

static void read_commands(void)
{
    char chunk[1024];
    ssize_t n = read(STDIN_FILENO, chunk, sizeof chunk);
    if (n == 0)
        quit(0);            /* the driver went away: so do we, saving the EEPROM */
    if (n < 0)
        return;
    for (ssize_t i = 0; i < n; i++) {
        if (chunk[i] == '\n') {
            command_buffer[command_len] = 0;
            command(command_buffer);
            command_len = 0;
        } else if (command_len < sizeof command_buffer - 1) {
            command_buffer[command_len++] = chunk[i];
        }
    }
}

/* --- the main loop -------------------------------------------------------- */

static void no_sleep(avr_t *a, avr_cycle_count_t how_long) { (void)a; (void)how_long; }

/* Reset, as at power-up: the core and RAM cleared, the EEPROM kept, the
 * stack painted again (RAM powers up in no known state; the paint is what
 * lets the margin be measured). */
static void power_up(void)
{
    avr_reset(avr);
    avr->data[GPIOR0_ADDR] = 0;
    /* The pins' IRQs remember their last level: bring them down with the
     * MCU, so that the next rise is seen as one. */
    for (int p = 4; p < 8; p++) {
        pin_state[p] = 0;
        avr_raise_irq(avr_io_getirq(avr, AVR_IOCTL_IOPORT_GETIRQ('D'), p), 0);
    }
    for (int b = 1; b < 6; b++)
        avr_raise_irq(avr_io_getirq(avr, AVR_IOCTL_IOPORT_GETIRQ('B'), b), 0);
    rx_len = 0;
    tx_len = 0;
    tx_wire_free = avr->cycle;
    for (int b = 0; b < 6; b++)
        pulse_level[b] = 0;
    set_jumper(jumper_on);
    paint_stack();
}

/* Wait for the wall clock to catch up with simulated time, reading the
 * serial line and stdin meanwhile (or just look, when behind). */
static void pump(void)
{
    int64_t ahead_us = (int64_t)sim_us() - (int64_t)wall_us();
    if (-ahead_us > max_lag_us)
        max_lag_us = -ahead_us;
    struct pollfd fds[2] = { { .fd = STDIN_FILENO, .events = POLLIN }, { .fd = serial_fd, .events = POLLIN } };
    struct timespec wait = { 0, 0 };
    if (realtime && ahead_us > 0)
        wait.tv_nsec = (long)ahead_us * 1000L;
    int ready = ppoll(fds, serial_fd >= 0 ? 2 : 1, &wait, NULL);
    if (ready > 0) {
        if (fds[0].revents & (POLLIN | POLLHUP))
            read_commands();
        if (serial_fd >= 0 && (fds[1].revents & (POLLIN | POLLHUP | POLLERR)))
            read_serial();
    }
}

static void on_signal(int sig) { (void)sig; stop_requested = 1; }

static void usage(const char *why)
{
    fprintf(stderr, "jeisson-sim: %s\nusage: jeisson-sim [--eeprom FILE] [--serial DEVICE | --link PATH] "
            "[--jumper] [--fast] FIRMWARE.elf\n", why);
    exit(2);
}

int main(int argc, char **argv)
{
    const char *firmware = NULL, *link_path = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--eeprom") && i + 1 < argc)
            eeprom_path = argv[++i];
        else if (!strcmp(argv[i], "--serial") && i + 1 < argc)
            serial_path = argv[++i];
        else if (!strcmp(argv[i], "--link") && i + 1 < argc)
            link_path = argv[++i];
        else if (!strcmp(argv[i], "--jumper"))
            jumper_on = 1;
        else if (!strcmp(argv[i], "--fast"))
            realtime = 0;
        else if (!strcmp(argv[i], "--realtime"))
            realtime = 1;
        else if (argv[i][0] == '-')
            usage("unknown option");
        else if (!firmware)
            firmware = argv[i];
        else
            usage("one firmware only");
    }
    if (!firmware)
        usage("no firmware named");

    /* Our events on the original stdout; anything libsimavr prints goes to stderr. */
    int event_fd = dup(STDOUT_FILENO);
    dup2(STDERR_FILENO, STDOUT_FILENO);
    out = fdopen(event_fd, "w");
    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);

    elf_firmware_t f;
    memset(&f, 0, sizeof f);
    if (access(firmware, R_OK) != 0 || elf_read_firmware(firmware, &f) != 0) {
        say("ERR cannot load firmware %s: %s", firmware, errno ? strerror(errno) : "not an AVR ELF");
        return 2;
    }
    avr = avr_make_mcu_by_name(MCU);
    if (!avr) {
        say("ERR libsimavr has no %s", MCU);
        return 2;
    }
    avr_init(avr);
    avr->frequency = FREQUENCY;
    avr->vcc = avr->avcc = avr->aref = 5000;
    avr->log = LOG_ERROR;
    avr->sleep = no_sleep;
    strcpy(f.mmcu, MCU);
    f.frequency = FREQUENCY;
    /* An erased EEPROM reads 0xFF; the ELF's .eeprom, if any, is written over it. */
    uint8_t erased[EEPROM_SIZE];
    memset(erased, 0xFF, sizeof erased);
    avr_eeprom_desc_t blank = { .ee = erased, .offset = 0, .size = EEPROM_SIZE };
    avr_ioctl(avr, AVR_IOCTL_EEPROM_SET, &blank);
    avr_load_firmware(avr, &f);
    avr->frequency = FREQUENCY;
    heap_start = (uint16_t)(RAM_START + f.datasize + f.bsssize);
    if (eeprom_path && access(eeprom_path, F_OK) == 0 && eeprom_load(eeprom_path) != 0)
        return 2;

    for (avr_io_t *io = avr->io_port; io; io = io->next)
        if (!strcmp(io->kind, "uart") && ((avr_uart_t *)io)->name == '0')
            uart = (avr_uart_t *)io;
    if (!uart) {
        say("ERR libsimavr's %s has no UART0", MCU);
        return 2;
    }
    uint32_t flags = 0;   /* no console printing, no sleeping on polls: this harness keeps time */
    avr_ioctl(avr, AVR_IOCTL_UART_SET_FLAGS('0'), &flags);
    avr_irq_register_notify(avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_OUTPUT), uart_output, NULL);
    for (int p = 4; p < 8; p++)
        avr_irq_register_notify(avr_io_getirq(avr, AVR_IOCTL_IOPORT_GETIRQ('D'), p), pin_changed,
                                (void *)(intptr_t)p);
    for (int b = 0; b < 6; b++)
        avr_irq_register_notify(avr_io_getirq(avr, AVR_IOCTL_IOPORT_GETIRQ('B'), b), portb_changed,
                                (void *)(intptr_t)b);
    avr_irq_register_notify(avr_io_getirq(avr, AVR_IOCTL_ADC_GETIRQ, ADC_IRQ_OUT_TRIGGER), adc_trigger, NULL);
    avr_register_io_write(avr, GPIOR0_ADDR, marker_write, NULL);
    for (int c = 0; c < CHANNELS; c++) {
        channel[c].offset_mv = 2500;   /* a current clamp's input, biased at mid-supply, no current */
        channel[c].hz = 50;
    }

    if (serial_path) {
        open_serial_device();
        if (serial_fd < 0) {
            say("ERR cannot open serial device %s: %s", serial_path, strerror(errno));
            return 2;
        }
        snprintf(serial_name, sizeof serial_name, "%s", serial_path);
    } else {
        if (openpty(&serial_fd, &slave_fd, serial_name, NULL, NULL) != 0) {
            say("ERR cannot create a pseudo-terminal: %s", strerror(errno));
            return 2;
        }
        struct termios t;
        tcgetattr(slave_fd, &t);
        cfmakeraw(&t);
        tcsetattr(slave_fd, TCSANOW, &t);
        fcntl(serial_fd, F_SETFL, fcntl(serial_fd, F_GETFL) | O_NONBLOCK);
        if (link_path) {
            unlink(link_path);
            if (symlink(serial_name, link_path) != 0) {
                say("ERR cannot link %s to %s: %s", link_path, serial_name, strerror(errno));
                return 2;
            }
        }
    }
    fcntl(STDIN_FILENO, F_SETFL, fcntl(STDIN_FILENO, F_GETFL) | O_NONBLOCK);
    say("PTY %s", serial_name);

    power_up();
    struct timespec epoch;
    clock_gettime(CLOCK_REALTIME, &epoch);
    wall_start_ns = monotonic_ns();
    say("START firmware=%s heap_start=0x%04x flash=%u data=%u bss=%u epoch_us=%llu %s", firmware, heap_start,
        f.flashsize, f.datasize, f.bsssize,
        (unsigned long long)epoch.tv_sec * 1000000ULL + (unsigned long long)epoch.tv_nsec / 1000ULL,
        realtime ? "realtime" : "fast");

    uint64_t last_retry_us = 0;
    for (;;) {
        avr_cycle_count_t slice_end = avr->cycle + SLICE_CYCLES;
        while (avr->cycle < slice_end) {
            int state = avr_run(avr);
            uint16_t sp = avr->data[SPL_ADDR] | (avr->data[SPH_ADDR] << 8);
            if (sp && sp < min_sp && sp >= heap_start)
                min_sp = sp;
            else if (sp && sp < heap_start && sp < min_sp) {
                min_sp = sp;
                say("STACK overflow: SP 0x%04x below heap_start 0x%04x " STAMP, sp, heap_start, STAMP_ARGS);
            }
            if (state == cpu_Done || state == cpu_Crashed) {
                say("CRASH state=%d pc=0x%04x " STAMP, state, avr->pc, STAMP_ARGS);
                quit(3);
            }
        }
        flush_tx();
        pump();
        if (serial_fd < 0 && serial_path && wall_us() - last_retry_us > 200000) {
            last_retry_us = wall_us();
            open_serial_device();
            if (serial_fd >= 0)
                say("SERIAL back %s " STAMP, serial_name, STAMP_ARGS);
        }
        if (stop_requested)
            quit(0);
    }
}

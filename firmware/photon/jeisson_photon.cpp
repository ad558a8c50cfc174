/* The jeisson relay board on a Particle Photon (Device OS, WiFi): a thin
 * wrapper around the same portable core as the Uno (firmware/core).
 *
 * It cannot be built in jeisson's CI: Particle's toolchain (the Workbench,
 * or `particle compile photon`) is not packaged for Debian.  See README.rst.
 *
 *   - the home over TCP (TCPClient): the core's connection-oriented mode,
 *     reconnecting with a backoff of 0.5 s x 1.5^n up to 10 s plus a jitter,
 *     as the software actuator does;
 *   - relays on D0..D3 (relay 1..4), active high;
 *   - current clamps on A0..A3, 12-bit ADC at 3.3 V, sampled by a 1 ms
 *     software timer (1000 samples per second per clamp), handed to the
 *     core as 10-bit samples (the core's window mean removes the bias);
 *   - the provisioning jumper: D6 pulled low;
 *   - PROV lines also over USB serial (115200 baud), answered there; and
 *     `PROV HOME <host> <port>`, this wrapper's own, for the home's address;
 *   - settings and the boot counter in the emulated EEPROM (2047 bytes).
 */
#include "Particle.h"

extern "C" {
#include "jb_board.h"
#include "jb_platform.h"
}

SYSTEM_THREAD(ENABLED);

static const int RELAY_PINS[4] = {D0, D1, D2, D3};

// Relays open from the first moment user code runs, before Device OS has
// booted and setup() is called (the pins float until then: pull-down
// resistors on the relay inputs cover the boot itself).
static void relays_open_at_startup()
{
    for (uint8_t i = 0; i < 4; i++) {
        digitalWrite(RELAY_PINS[i], LOW);
        pinMode(RELAY_PINS[i], OUTPUT);
    }
}
STARTUP(relays_open_at_startup());
static const int CLAMP_PINS[4] = {A0, A1, A2, A3};
static const int JUMPER_PIN = D6;
static const int MAC_PIN = D7;  // the blue LED: lit while a MAC is computed
static const int HOME_ADDR = 0x300;  // after the core's store (0x000-0x2ff)

struct HomeAddress {
    char host[64];
    uint16_t port;
    uint16_t check;  // port ^ 0xA55A: set
};

static TCPClient client;
static HomeAddress home;
static bool linked;
static uint32_t next_attempt;
static uint8_t failures;
static bool to_usb;  // answering a PROV line that came over USB
static char usb_line[100];
static uint8_t usb_len;

static void sample_clamps()
{
    for (uint8_t i = 0; i < 4; i++)
        jb_meter_sample(i, (uint16_t)(analogRead(CLAMP_PINS[i]) >> 2));
}

static Timer sampler(1, sample_clamps);

extern "C" {

void jb_plat_write(const char *data, uint8_t len)
{
    if (to_usb)
        Serial.write((const uint8_t *)data, len);
    else if (client.connected())
        client.write((const uint8_t *)data, len);
}

void jb_plat_relay(uint8_t index, uint8_t on)
{
    if (index < 4)
        digitalWrite(RELAY_PINS[index], on ? HIGH : LOW);
}

void jb_plat_store_read(uint16_t addr, void *buf, uint16_t len)
{
    uint8_t *p = (uint8_t *)buf;
    for (uint16_t i = 0; i < len; i++)
        p[i] = EEPROM.read(addr + i);
}

void jb_plat_store_write(uint16_t addr, const void *buf, uint16_t len)
{
    const uint8_t *p = (const uint8_t *)buf;
    for (uint16_t i = 0; i < len; i++)
        if (EEPROM.read(addr + i) != p[i])
            EEPROM.write(addr + i, p[i]);
}

uint8_t jb_plat_unlocked(void) { return digitalRead(JUMPER_PIN) == LOW; }

void jb_plat_close(void)
{
    client.stop();
    linked = false;
    next_attempt = millis() + 500;
}

void jb_plat_mac_mark(uint8_t on) { digitalWrite(MAC_PIN, on ? HIGH : LOW); }

uint16_t jb_plat_stack_unused(void) { return 0; }
uint16_t jb_plat_dropped(void) { return 0; }
uint8_t jb_plat_backstop(uint32_t, uint8_t) { return 0; }  // the loop alone (Device OS runs it)

}  // extern "C"

/* PROV HOME <host> <port>: the wrapper's own setting, under the core's rule
 * (unprovisioned, or the jumper in). */
static bool home_command(const char *line)
{
    char host[64];
    unsigned port;
    if (strncmp(line, "PROV HOME ", 10) != 0)
        return false;
    if (jb_state() != JB_UNPROVISIONED && !jb_plat_unlocked()) {
        Serial.println("PROV ERR locked");
    } else if (sscanf(line + 10, "%63s %u", host, &port) != 2 || port == 0 || port > 65535) {
        Serial.println("PROV ERR home");
    } else {
        memset(&home, 0, sizeof home);
        strcpy(home.host, host);
        home.port = (uint16_t)port;
        home.check = home.port ^ 0xA55A;
        EEPROM.put(HOME_ADDR, home);
        Serial.println("PROV OK");
    }
    return true;
}

static void usb_provisioning()
{
    while (Serial.available() > 0) {
        char c = (char)Serial.read();
        if (c == '\r')
            continue;
        if (c != '\n') {
            if (usb_len < sizeof usb_line - 1)
                usb_line[usb_len++] = c;
            continue;
        }
        usb_line[usb_len] = 0;
        if (!home_command(usb_line) && strncmp(usb_line, "PROV", 4) == 0) {
            // Its own entry (a half-received line from the home is left
            // alone); its answer goes to USB.
            to_usb = true;
            jb_provision(usb_line, (uint8_t)usb_len, millis());
            to_usb = false;
        }
        usb_len = 0;
    }
}

static void keep_linked()
{
    if (linked && !client.connected()) {
        linked = false;
        jb_disconnected(millis());
        next_attempt = millis() + 500;
    }
    if (linked || home.check != (home.port ^ 0xA55A) || !WiFi.ready() || jb_state() == JB_UNPROVISIONED)
        return;
    if ((int32_t)(millis() - next_attempt) < 0)
        return;
    if (client.connect(home.host, home.port)) {
        linked = true;
        failures = 0;
        jb_connected(millis());
        return;
    }
    // 0.5 s x 1.5^n, at most 10 s, plus a jitter in [0, 1) s.
    uint32_t wait = 500;
    for (uint8_t i = 0; i < failures && wait < 10000; i++)
        wait = wait * 3 / 2;
    if (failures < 255)
        failures++;
    next_attempt = millis() + (wait < 10000 ? wait : 10000) + random(1000);
}

static uint32_t clock_now(void) { return millis(); }

void setup()
{
    for (uint8_t i = 0; i < 4; i++) {
        digitalWrite(RELAY_PINS[i], LOW);
        pinMode(RELAY_PINS[i], OUTPUT);
    }
    pinMode(JUMPER_PIN, INPUT_PULLUP);
    pinMode(MAC_PIN, OUTPUT);
    Serial.begin(115200);
    EEPROM.get(HOME_ADDR, home);
    jb_meter_rate(1000);
    jb_set_clock(clock_now);  // min_interval from the switch itself
    jb_power_up(millis(), 0);
    sampler.start();
}

void loop()
{
    usb_provisioning();
    keep_linked();
    while (linked && client.available() > 0)
        jb_receive((uint8_t)client.read(), millis());
    jb_tick(millis());
}

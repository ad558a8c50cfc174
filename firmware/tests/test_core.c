/* Host tests of the portable core: the test vectors of docs/protocol.rst
 * (generated into vectors.h by vectors.py), the handshake and sealed lines,
 * refusals, relays and min_interval, the failsafe, the power-up with the
 * cold-load pickup, metering and provisioning.  Time is whatever each test
 * passes; every check names what it expected.  Exit status: the number of
 * failed checks (0: all passed). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fake_platform.h"
#include "jb_board.h"
#include "jb_sha256.h"
#include "vectors.h"

#define PI 3.14159265358979323846

static int failures, checks;
static const char *current;

#define CHECK(cond, ...) check((cond) != 0, __LINE__, __VA_ARGS__)

static void check(int ok, int line, const char *fmt, ...)
{
    checks++;
    if (!ok) {
        va_list ap;
        failures++;
        fprintf(stderr, "FAIL %s (test_core.c:%d): ", current, line);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
    }
}

/* ------------------------------------------------------------- helpers */

static void hex(const uint8_t *b, int n, char *out)
{
    int i;
    for (i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", b[i]);
}

static void unhex(const char *h, uint8_t *out)
{
    size_t i;
    for (i = 0; i < strlen(h) / 2; i++) {
        unsigned v;
        sscanf(h + 2 * i, "%2x", &v);
        out[i] = (uint8_t)v;
    }
}

static void hmac_of(const uint8_t *key, int key_len, const void *data, size_t len, uint8_t out[32])
{
    jb_sha256_ctx ctx;
    jb_hmac_init(&ctx, key, (uint8_t)key_len);
    jb_sha256_update(&ctx, data, len);
    jb_hmac_final(&ctx, key, (uint8_t)key_len, out);
}

static void feed(const char *line, uint32_t now)
{
    while (*line)
        jb_receive((uint8_t)*line++, now);
    jb_receive('\n', now);
}

static int take(const char *want)
{
    const char *got = fp_line();
    CHECK(got && strcmp(got, want) == 0, "expected the board to send \"%s\", got \"%s\"", want,
          got ? got : "(nothing)");
    return got && strcmp(got, want) == 0;
}

static void silent(void)
{
    const char *got;
    CHECK(fp_pending() == 0, "expected the board to send nothing, it sent \"%s\"",
          (got = fp_line()) ? got : "?");
    fp_drain();
}

/* The home's side of a session: its keys and counters. */
static uint8_t key[32], k_hb[32], k_bh[32];
static uint32_t home_sent, board_counter;
static char hello[128];

static void derive(const char *hello_line, const char *home, const char *nonce)
{
    char buf[256];
    int n = snprintf(buf, sizeof buf, "jeisson-board 2 home to board\n%s\n%s\n%s", hello_line, home, nonce);
    hmac_of(key, 32, buf, (size_t)n, k_hb);
    n = snprintf(buf, sizeof buf, "jeisson-board 2 board to home\n%s\n%s\n%s", hello_line, home, nonce);
    hmac_of(key, 32, buf, (size_t)n, k_bh);
}

/* ``body`` with its counter and MAC under ``k``. */
static const char *seal_with(const uint8_t *k, const char *body, uint32_t counter)
{
    static char line[160];
    uint8_t mac[32];
    int n = snprintf(line, sizeof line, "%s %u", body, counter);
    hmac_of(k, 32, line, (size_t)n, mac);
    line[n++] = ' ';
    hex(mac, 8, line + n);
    return line;
}

static const char *home_says(const char *body) { return seal_with(k_hb, body, ++home_sent); }

/* A line from the board, sealed: its body if its MAC holds and its counter
 * is above the last, else NULL (and a failed check). */
static const char *board_said(void)
{
    static char body[160];
    const char *line = fp_line();
    const char *mac, *counter;
    char expect[160];
    if (!line) {
        CHECK(0, "expected a sealed line from the board, got nothing");
        return NULL;
    }
    mac = strrchr(line, ' ');
    CHECK(mac != NULL, "a sealed line has a MAC: \"%s\"", line);
    if (!mac)
        return NULL;
    memcpy(body, line, (size_t)(mac - line));
    body[mac - line] = 0;
    counter = strrchr(body, ' ');
    if (!counter || strtoul(counter + 1, NULL, 10) <= board_counter) {
        CHECK(0, "a counter above %u expected in \"%s\"", board_counter, line);
        return NULL;
    }
    board_counter = (uint32_t)strtoul(counter + 1, NULL, 10);
    *(char *)counter = 0;
    strcpy(expect, seal_with(k_bh, body, board_counter));
    CHECK(strcmp(expect, line) == 0, "the board's MAC holds: got \"%s\", expected \"%s\"", line, expect);
    return body;
}

static void prov(const char *line, uint32_t now)
{
    char want[8] = "PROV OK";
    feed(line, now);
    {
        const char *got = fp_line();
        CHECK(got && strcmp(got, want) == 0, "\"%s\" answered PROV OK, got \"%s\"", line, got ? got : "(nothing)");
    }
}

/* Provision a 3-relay board: relay 1 safe off, 2 on, 3 hold; then save
 * (which powers it up at ``now``); the HELLO it then sends is in ``hello``. */
static void provision(const char *safe1, const char *safe2, const char *safe3, const char *interval,
                      const char *coldload, uint32_t now)
{
    char line[128];
    unhex(V_KEY, key);
    prov("PROV ID home-1-a", now);
    prov("PROV KEY " V_KEY, now);
    prov("PROV RELAYS 3", now);
    snprintf(line, sizeof line, "PROV RELAY 1 %s %s 6900", safe1, interval);
    prov(line, now);
    snprintf(line, sizeof line, "PROV RELAY 2 %s %s 6900", safe2, interval);
    prov(line, now);
    snprintf(line, sizeof line, "PROV RELAY 3 %s %s 3000", safe3, interval);
    prov(line, now);
    prov("PROV FAILSAFE 6", now);
    snprintf(line, sizeof line, "PROV COLDLOAD %s", coldload);
    prov(line, now);
    feed("PROV SAVE", now);
    take("PROV OK saved");
    {
        const char *got = fp_line();
        CHECK(got && strncmp(got, "HELLO home-1-a 3 2 ", 19) == 0, "HELLO after SAVE, got \"%s\"", got ? got : "-");
        snprintf(hello, sizeof hello, "%s", got ? got : "");
    }
}

/* The home welcomes the board (nonce fixed), which answers AUTH and MEAS. */
static void welcome(uint32_t now)
{
    char body[128];
    derive(hello, "home-1", "8f3a5c7e91b2d4f6");
    home_sent = board_counter = 0;
    snprintf(body, sizeof body, "WELCOME 2 2 home-1 8f3a5c7e91b2d4f6");
    feed(seal_with(k_hb, body, 0), now);
    {
        const char *auth = fp_line();
        CHECK(auth && strcmp(auth, seal_with(k_bh, "AUTH", 0)) == 0, "AUTH proves the key, got \"%s\"",
              auth ? auth : "-");
    }
    CHECK(jb_state() == JB_ACTIVE, "welcomed");
    {
        const char *meas = board_said();
        CHECK(meas && strncmp(meas, "MEAS ", 5) == 0, "MEAS right after WELCOME, got \"%s\"", meas ? meas : "-");
    }
}

static void set(const char *command, const char *answer, uint32_t now)
{
    const char *got;
    feed(home_says(command), now);
    got = board_said();
    CHECK(got && strcmp(got, answer) == 0, "%s answered \"%s\", got \"%s\"", command, answer, got ? got : "-");
}

/* A fresh board, powered up at 0 and provisioned. */
static void fresh(void)
{
    fp_reset();
    memset(fp_store, 0, 4); /* boot counter 0: the first power-up is boot 1 */
    jb_meter_rate(1000);
    jb_power_up(0, 1);
}

/* --------------------------------------------------------------- tests */

static void test_sha256(void)
{
    static const struct { const char *data, *digest; } cases[] = {
        {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
    };
    size_t i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        jb_sha256_ctx ctx;
        uint8_t d[32];
        char h[65];
        jb_sha256_init(&ctx);
        jb_sha256_update(&ctx, cases[i].data, strlen(cases[i].data));
        jb_sha256_final(&ctx, d);
        hex(d, 32, h);
        CHECK(strcmp(h, cases[i].digest) == 0, "SHA-256(\"%s\") = %s, got %s", cases[i].data, cases[i].digest, h);
    }
    { /* a million 'a': many blocks, the length's high bits */
        jb_sha256_ctx ctx;
        uint8_t d[32];
        char h[65], a[1000];
        memset(a, 'a', sizeof a);
        jb_sha256_init(&ctx);
        for (i = 0; i < 1000; i++)
            jb_sha256_update(&ctx, a, sizeof a);
        jb_sha256_final(&ctx, d);
        hex(d, 32, h);
        CHECK(strcmp(h, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0") == 0,
              "SHA-256 of a million 'a', got %s", h);
    }
}

static void test_hmac_rfc4231(void)
{
    uint8_t d[32];
    char h[65];
    hmac_of((const uint8_t *)RFC_KEY, (int)strlen(RFC_KEY), RFC_DATA, strlen(RFC_DATA), d);
    hex(d, 32, h);
    CHECK(strcmp(h, RFC_HMAC) == 0, "HMAC-SHA256 of RFC 4231 case 2: %s, got %s", RFC_HMAC, h);
    CHECK(strncmp(h, RFC_MAC, 16) == 0, "its MAC %s", RFC_MAC);
}

static void test_session_keys(void)
{
    char h[65];
    const char *hello_line = V_LINES[0] + 3;
    unhex(V_KEY, key);
    derive(hello_line, V_HOME, V_HOME_NONCE);
    hex(k_hb, 32, h);
    CHECK(strcmp(h, V_K_HB) == 0, "K_hb %s, got %s", V_K_HB, h);
    hex(k_bh, 32, h);
    CHECK(strcmp(h, V_K_BH) == 0, "K_bh %s, got %s", V_K_BH, h);
}

/* Every line of the vectors' session under the right key, counter and MAC. */
static void test_vector_lines(void)
{
    int i;
    unhex(V_KEY, key);
    derive(V_LINES[0] + 3, V_HOME, V_HOME_NONCE);
    for (i = 1; i < V_LINE_COUNT; i++) {
        const char *line = V_LINES[i] + 3;
        char body[128];
        const char *mac = strrchr(line, ' ');
        const char *counter;
        memcpy(body, line, (size_t)(mac - line));
        body[mac - line] = 0;
        counter = strrchr(body, ' ');
        *(char *)counter = 0;
        CHECK(strcmp(seal_with(V_LINES[i][0] == 'H' ? k_hb : k_bh, body, (uint32_t)atol(counter + 1)), line) == 0,
              "vector line \"%s\"", line);
    }
}

/* The board itself, driven to the vectors' HELLO (boot 1, count 1, relays
 * 2 and 3 closed by a cold-load pickup of 0 before it), answers the
 * vectors' WELCOME with their AUTH, obeys their SET, refuses it replayed. */
static void test_vector_session(void)
{
    const char *got;
    fresh();
    unhex(V_KEY, key);
    /* relays 2 and 3 safe on, no interval, no delay: closed at power-up */
    prov("PROV ID home-1-a", 0);
    prov("PROV KEY " V_KEY, 0);
    prov("PROV RELAYS 3", 0);
    prov("PROV RELAY 1 off 0 6900", 0);
    prov("PROV RELAY 2 on 0 6900", 0);
    prov("PROV RELAY 3 on 0 6900", 0);
    prov("PROV COLDLOAD 0 0", 0);
    feed("PROV SAVE", 0);
    take("PROV OK saved");
    CHECK(jb_boot_count() == V_BOOT, "boot %u after one power-up, got %u", V_BOOT, jb_boot_count());
    take(V_LINES[0] + 3);
    feed(V_LINES[1] + 3, 10);
    take(V_LINES[2] + 3);
    derive(V_LINES[0] + 3, V_HOME, V_HOME_NONCE);
    board_counter = 0;
    got = board_said();
    CHECK(got && strncmp(got, "MEAS ", 5) == 0, "MEAS right after WELCOME");
    feed(V_LINES[3] + 3, 20);
    got = board_said();
    CHECK(got && strcmp(got, "ACK 1 1 1") == 0, "the vectors' SET is obeyed: ACK 1 1 1, got \"%s\"", got ? got : "-");
    CHECK(fp_relay[0] == 1, "relay 1 closed");
    feed(V_LINES[6] + 3, 30);
    got = board_said();
    CHECK(got && strcmp(got, "PONG 1") == 0, "the vectors' PING answered PONG 1");
    /* SET 1 1 1 1 played again: refused, not obeyed (relay 1 opened first
     * by a fresh SET so that obeying would show) */
    feed(seal_with(k_hb, "SET 2 1 0", 3), 40);
    board_said();
    CHECK(fp_relay[0] == 0, "relay 1 opened by SET 2");
    feed(V_LINES[3] + 3, 50000);
    take("ERR auth");
    CHECK(fp_relay[0] == 0, "the replayed SET is not obeyed");
    silent();
}

static void test_unprovisioned_is_silent_and_open(void)
{
    fresh();
    CHECK(jb_state() == JB_UNPROVISIONED, "a fresh board is unprovisioned");
    feed("WELCOME 1 2", 10);
    feed("SET 1 1 1", 20);
    jb_tick(100000);
    silent();
    CHECK(fp_relay[0] == 0 && fp_relay[1] == 0, "relays open");
}

static void test_provisioning_locked(void)
{
    fresh();
    provision("off", "off", "off", "0", "0 0", 0);
    feed("PROV KEY ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff", 10);
    take("PROV ERR locked");
    feed("PROV ERASE", 10);
    take("PROV ERR locked");
    feed("PROV SAVE", 10);
    take("PROV ERR locked");
    feed("PROV STACK", 10);
    take("PROV ERR locked");
    feed("PROV SHOW", 260); /* a stranger on the line learns nothing (an answer back after 250 ms) */
    take("PROV ERR locked");
    silent();
    /* a power cycle: still the same key, still locked */
    jb_power_up(100, 1);
    {
        const char *h = fp_line();
        CHECK(h && strncmp(h, "HELLO home-1-a 3 2 000 ", 23) == 0, "HELLO after a power cycle, got \"%s\"",
              h ? h : "-");
    }
    CHECK(jb_boot_count() == 2, "boot raised at every power-up, not at a SAVE (2), got %u", jb_boot_count());
    /* with the jumper: re-keyed */
    fp_unlocked = 1;
    prov("PROV RELAYS 2", 200);
    feed("PROV SAVE", 200);
    take("PROV OK saved");
    {
        const char *h = fp_line();
        CHECK(h && strncmp(h, "HELLO home-1-a 2 2 00 ", 22) == 0, "HELLO with 2 relays, got \"%s\"", h ? h : "-");
    }
}

static void test_provisioning_errors(void)
{
    static const struct { const char *line, *answer; } cases[] = {
        {"PROV ID _bad", "PROV ERR id"},
        {"PROV ID abcdefghijklmnopq", "PROV ERR id"},
        {"PROV KEY 0011", "PROV ERR key"},
        {"PROV KEY 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1G", "PROV ERR key"},
        {"PROV RELAYS 0", "PROV ERR relays"},
        {"PROV RELAYS 9", "PROV ERR relays"},
        {"PROV RELAY 1 maybe 2 6900", "PROV ERR relay"},
        {"PROV RELAY 1 off 3601 6900", "PROV ERR relay"},
        {"PROV RELAY 1 off 2.5555 6900", "PROV ERR relay"},
        {"PROV RELAY 1 off 2 65536", "PROV ERR relay"},
        {"PROV RELAY 1 off 2", "PROV ERR verb"},
        {"PROV FAILSAFE 0.5", "PROV ERR failsafe"},
        {"PROV MEASURE 0.1", "PROV ERR measure"},
        {"PROV COLDLOAD 30 5", "PROV ERR coldload"},
        {"PROV VREF 900", "PROV ERR vref"},
        {"PROV FROB 1", "PROV ERR verb"},
        {"PROV", "PROV ERR verb"},
        {"PROV SAVE", "PROV ERR nothing"},
    };
    size_t i;
    fresh();
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        feed(cases[i].line, 0);
        take(cases[i].answer);
    }
    prov("PROV RELAYS 2", 0);
    feed("PROV SAVE", 0);
    take("PROV ERR id");
    prov("PROV ID home-1-a", 0);
    feed("PROV SAVE", 0);
    take("PROV ERR key");
    CHECK(jb_state() == JB_UNPROVISIONED, "still unprovisioned after a refused SAVE");
    prov("PROV KEY none", 0);
    prov("PROV RELAY 2 on 0.25 7000", 0);
    feed("PROV SAVE", 0);
    take("PROV OK saved");
    take("HELLO home-1-a 2 1 00"); /* key none: version 1, no nonce */
    feed("PROV SHOW", 0);
    take("PROV ERR locked");
    fp_unlocked = 1;
    feed("PROV STACK", 0);
    take("PROV STACK 1234");
    feed("PROV SHOW", 0);
    take("PROV SHOW id=home-1-a provisioned=1 key=none relays=2 boot=1 dropped=7");
    {
        char want[128];
        snprintf(want, sizeof want, "PROV SHOW failsafe_ms=15000 measure_ms=2000 coldload_ms=5000-30000 drawn_ms=%u "
                 "vref_mv=5000", jb_cold_load_delay_ms());
        take(want);
    }
    take("PROV SHOW relay=1 safe=off min_interval_ms=2000 w_per_v=6900");
    take("PROV SHOW relay=2 safe=on min_interval_ms=250 w_per_v=7000");
    take("PROV OK");
}

static void test_handshake_refusals(void)
{
    char body[128];
    fresh();
    provision("off", "off", "off", "2", "0 0", 0);
    /* a WELCOME that does not prove the key: ERR auth, still waiting */
    feed("WELCOME 2 2 home-1 8f3a5c7e91b2d4f6 0 0000000000000000", 100);
    take("ERR auth");
    feed("WELCOME 2 2", 100); /* version 1 form */
    take("ERR auth");
    CHECK(jb_state() == JB_HELLO_SENT, "still waiting for a WELCOME");
    /* a WELCOME under the wrong key */
    memset(key, 7, sizeof key);
    derive(hello, "home-1", "8f3a5c7e91b2d4f6");
    snprintf(body, sizeof body, "WELCOME 2 2 home-1 8f3a5c7e91b2d4f6");
    feed(seal_with(k_hb, body, 0), 200);
    take("ERR auth");
    /* SET before any session */
    feed("SET 1 1 1", 300);
    take("ERR auth");
    CHECK(fp_relay[0] == 0, "nothing obeyed");
    /* the rogue's lines were no sign of life: the HELLO wait (6 s) ends
     * and a new session starts 1 s later */
    jb_tick(5999);
    silent();
    jb_tick(6000);
    CHECK(jb_state() == JB_CLOSED, "no WELCOME within failsafe_after_s: the session ends");
    jb_tick(7000);
    {
        const char *h = fp_line();
        CHECK(h && strncmp(h, "HELLO home-1-a 3 2 000 ", 23) == 0, "a new HELLO 1 s later, got \"%s\"", h ? h : "-");
        CHECK(h && strcmp(h, hello) != 0, "with a new nonce");
    }
}

static void test_sealed_lines_refused(void)
{
    fresh();
    provision("off", "off", "off", "2", "0 0", 0);
    welcome(100);
    /* a plain SET in a session */
    feed("SET 1 1 1", 3000);
    take("ERR auth");
    /* a wrong MAC */
    feed("SET 1 1 1 1 0123456789abcdef", 3000);
    take("ERR auth");
    /* the right MAC under the other direction's key */
    feed(seal_with(k_bh, "SET 1 1 1", 1), 3000);
    take("ERR auth");
    CHECK(fp_relay[0] == 0, "nothing obeyed");
    /* a good one; then the same counter again; then an older one */
    set("SET 1 1 1", "ACK 1 1 1", 3000);
    CHECK(fp_relay[0] == 1, "relay 1 closed by an authentic SET");
    feed(seal_with(k_hb, "SET 2 1 0", home_sent), 6000);
    take("ERR auth");
    CHECK(fp_relay[0] == 1, "a replayed counter is not obeyed");
    /* lost lines leave gaps: fine */
    home_sent += 5;
    set("SET 3 1 0", "ACK 3 1 0", 6000);
    CHECK(fp_relay[0] == 0, "after a gap in the counters");
    /* a counter with a leading zero or past 2^32-1, even with its MAC */
    feed(seal_with(k_hb, "PING 1", 4294967295u), 6100);
    board_said();
    {
        char line[160];
        snprintf(line, sizeof line, "%s", seal_with(k_hb, "PING 2", 0));
        feed(line, 6200);
        take("ERR auth");
    }
    /* plain ERR is taken, and proves nothing */
    feed("ERR state", 6300);
    silent();
}

static void test_relays_and_intervals(void)
{
    fresh();
    provision("off", "off", "off", "2", "0 0", 0);
    welcome(100);
    set("SET 1 1 1", "NAK 1 busy", 1000); /* within 2 s of power-up */
    CHECK(fp_relay[0] == 0, "not switched within min_interval of power-up");
    set("SET 2 1 1", "ACK 2 1 1", 2000);
    CHECK(fp_relay[0] == 1, "switched at min_interval");
    set("SET 3 1 1", "ACK 3 1 1", 2100); /* already on: ACK, no switch */
    set("SET 4 1 0", "NAK 4 busy", 3999);
    set("SET 5 1 0", "ACK 5 1 0", 4000);
    set("SET 6 4 1", "NAK 6 relay", 4000);
    set("SET 7 9 1", "ERR field", 4000);
    set("SET 65535 2 1", "ACK 65535 2 1", 4000);
    set("SET 0 3 1", "ACK 0 3 1", 4000);
    set("SET 8 3 2", "ERR field", 4000);
    set("SET 9 3", "ERR field", 4000);
    set("SET 65536 3 1", "ERR field", 4000);
    set("FROB 1", "ERR verb", 4000);
    set("WELCOME 2 2", "ERR field", 4000); /* version 2 has 4 fields */
    set("WELCOME 1 2", "ERR state", 4000);
    set("MEAS 1 2 3", "ERR state", 4000);
    set("PING 7", "PONG 7", 4000);
    set("  PING   8  ", "PONG 8", 4000);
    {
        const char *body = "PING\t9";
        feed(home_says(body), 4000);
        body = board_said();
        CHECK(body && strcmp(body, "ERR syntax") == 0, "a tab is a syntax error");
    }
}

static void test_pong_not_answered(void)
{
    fresh();
    provision("off", "off", "off", "2", "0 0", 0);
    welcome(100);
    feed(home_says("PONG 1"), 200);
    silent();
}

static void test_heartbeat_and_meas(void)
{
    const char *got;
    fresh();
    provision("off", "off", "off", "2", "0 0", 0);
    welcome(100);
    jb_tick(2099);
    silent();
    jb_tick(2100);
    got = board_said();
    CHECK(got && strcmp(got, "PING 1") == 0, "PING 1 at the WELCOME's heartbeat (2 s), got %s", got ? got : "-");
    got = board_said();
    CHECK(got && strncmp(got, "MEAS ", 5) == 0, "MEAS every measure period (2 s)");
    feed(home_says("PONG 1"), 2200);
    jb_tick(4100);
    got = board_said();
    CHECK(got && strcmp(got, "PING 2") == 0, "PING 2");
}

static void test_failsafe(void)
{
    const char *got;
    fresh();
    /* relay 1 safe off, 2 on, 3 hold; all closed by the home first */
    provision("off", "on", "hold", "2", "0 0", 0);
    welcome(100);
    set("SET 1 1 1", "ACK 1 1 1", 2000);
    set("SET 2 3 1", "ACK 2 3 1", 2000);
    feed(home_says("PING 5"), 2500); /* the home's last line */
    board_said();
    jb_tick(2600);
    fp_drain();
    board_counter = 2;
    jb_tick(8499);
    CHECK(fp_relay[0] == 1 && fp_relay[1] == 0 && fp_relay[2] == 1, "nothing yet 1 ms before failsafe_after_s");
    fp_drain();
    jb_tick(8500);
    CHECK(fp_relay[0] == 0, "relay 1 to its safe state off at failsafe_after_s");
    CHECK(fp_relay[1] == 1, "relay 2 to its safe state on");
    CHECK(fp_relay[2] == 1, "relay 3 holds");
    CHECK(jb_state() == JB_CLOSED, "the session ends at the same instant");
    jb_tick(9499);
    silent();
    jb_tick(9500);
    got = fp_line();
    CHECK(got && strncmp(got, "HELLO home-1-a 3 2 011 ", 23) == 0, "a new HELLO with the true states 1 s later, got "
          "\"%s\"", got ? got : "-");
}

/* A PING due a few ms before the failsafe waits: on the Uno, sealing it
 * would hold the failsafe back by a MAC's 7 ms. */
static void test_no_ping_just_before_the_failsafe(void)
{
    fresh();
    provision("off", "off", "off", "0", "0 0", 0);
    welcome(100); /* WELCOME heartbeat 2 s: PINGs at 2.1, 4.1, 6.1 s */
    set("SET 1 1 1", "ACK 1 1 1", 110); /* the home's last line: failsafe at 6.110 s */
    jb_tick(2100);
    jb_tick(4100);
    fp_drain();
    jb_tick(6100); /* a PING and a MEAS are due, 10 ms before the failsafe */
    silent();
    CHECK(fp_relay[0] == 1, "not yet");
    jb_tick(6110);
    CHECK(fp_relay[0] == 0, "the failsafe at 6.110 s");
    CHECK(jb_state() == JB_CLOSED, "and the session ended: the PING is never sent");
    silent();
}

static void test_failsafe_waits_for_interval(void)
{
    fresh();
    provision("on", "off", "off", "5", "0 0", 0);
    /* relay 1 (safe on) closes at 5 s, its min_interval after power-up */
    jb_tick(4999);
    CHECK(fp_relay[0] == 0, "not before min_interval after power-up");
    jb_tick(5000);
    CHECK(fp_relay[0] == 1, "safe state on at min_interval after power-up (no cold-load delay)");
    fp_drain();
    snprintf(hello, sizeof hello, "%s", "");
    jb_tick(6000); /* HELLO wait over (6 s): new session 1 s later */
    jb_tick(7000);
    {
        const char *h = fp_line();
        CHECK(h && strncmp(h, "HELLO home-1-a 3 2 100 ", 23) == 0, "HELLO 100, got \"%s\"", h ? h : "-");
        snprintf(hello, sizeof hello, "%s", h ? h : "");
    }
    welcome(7000);
    set("SET 1 1 0", "NAK 1 busy", 8000);
    set("SET 2 1 0", "ACK 2 1 0", 10000);
    set("SET 3 2 1", "ACK 3 2 1", 10000);
    /* silent from 10 s: failsafe at 16 s; relay 1 is safe on but... it
     * switched off at 10 s, min_interval 5: closes at 16 s exactly; relay 2
     * (safe off) switched at 10 s: opens at 16 s */
    jb_tick(16000);
    CHECK(fp_relay[0] == 1 && fp_relay[1] == 0, "both to their safe states at 16 s");
}

static void test_failsafe_pending_until_interval(void)
{
    fresh();
    provision("off", "off", "off", "10", "0 0", 0);
    welcome(100);
    set("SET 1 1 1", "ACK 1 1 1", 10000);
    /* the home falls silent at 10 s: failsafe at 16 s, but relay 1 switched
     * at 10 s with a 10 s interval: it opens at 20 s */
    jb_tick(16000);
    CHECK(fp_relay[0] == 1, "the failsafe waits for min_interval");
    jb_tick(19999);
    CHECK(fp_relay[0] == 1, "still waiting at 19.999 s");
    jb_tick(20000);
    CHECK(fp_relay[0] == 0, "opened at 20 s");
}

static void test_home_back_cancels_pending(void)
{
    fresh();
    provision("off", "off", "off", "10", "0 0", 0);
    welcome(100);
    set("SET 1 1 1", "ACK 1 1 1", 10000);
    feed(home_says("PING 1"), 10000);
    board_said();
    jb_tick(15999);
    fp_drain();
    /* the keep-the-link variant: a line from the home arrives just as the
     * failsafe fires (both at 16 s); the session then ends at once */
    jb_tick(16000);
    CHECK(fp_relay[0] == 1, "relay 1 waits for its interval");
    CHECK(jb_state() == JB_CLOSED, "session ended at the failsafe");
    /* a late line in version 2 proves nothing: the pending switch stays */
    feed(home_says("PING 2"), 17000);
    jb_tick(17000);
    fp_drain();
    jb_tick(20000);
    CHECK(fp_relay[0] == 0, "the pending failsafe switch happens");
}

static void test_unreported_switch_hello_first(void)
{
    const char *got;
    fresh();
    /* relay 1 safe on with a cold-load delay of exactly 3 s */
    provision("on", "off", "off", "0", "3 3", 0);
    CHECK(jb_cold_load_delay_ms() == 3000, "the drawn delay is within [3, 3] s: %u", jb_cold_load_delay_ms());
    /* the cold-load closing happens between HELLO and WELCOME */
    jb_tick(3000);
    CHECK(fp_relay[0] == 1, "cold-load pickup closed relay 1 at 3 s");
    derive(hello, "home-1", "8f3a5c7e91b2d4f6");
    feed(seal_with(k_hb, "WELCOME 2 2 home-1 8f3a5c7e91b2d4f6", 0), 3500);
    got = fp_line();
    CHECK(got && strncmp(got, "HELLO home-1-a 3 2 100 ", 23) == 0,
          "a WELCOME that took stale states is answered with a new HELLO, got \"%s\"", got ? got : "-");
    CHECK(jb_state() == JB_HELLO_SENT, "still waiting");
    silent();
}

static void test_cold_load(void)
{
    uint32_t delays[4];
    int i;
    fresh();
    provision("on", "on", "off", "2", "5 30", 0);
    delays[0] = jb_cold_load_delay_ms();
    CHECK(delays[0] >= 5000 && delays[0] <= 30000, "the delay is within [5, 30] s: %u", delays[0]);
    jb_tick(delays[0] - 1);
    CHECK(fp_relay[0] == 0 && fp_relay[1] == 0, "nothing closes before the cold-load delay");
    jb_tick(delays[0]);
    CHECK(fp_relay[0] == 1 && fp_relay[1] == 1, "the safe-on relays close at the delay");
    CHECK(fp_relay[2] == 0, "the safe-off relay stays open");
    /* a delay per boot: not always the same */
    for (i = 1; i < 4; i++) {
        jb_power_up(0, 1);
        delays[i] = jb_cold_load_delay_ms();
        CHECK(fp_relay[0] == 0 && fp_relay[1] == 0, "power-up opens every relay");
    }
    CHECK(!(delays[0] == delays[1] && delays[1] == delays[2] && delays[2] == delays[3]),
          "delays differ between boots: %u %u %u %u", delays[0], delays[1], delays[2], delays[3]);
}

static void test_welcome_cancels_cold_load(void)
{
    uint32_t delay, t;
    fresh();
    provision("on", "off", "off", "2", "5 30", 0);
    delay = jb_cold_load_delay_ms();
    welcome(100);
    for (t = 1000; t < delay + 10; t += 1000) { /* the home stays alive */
        feed(home_says("PONG 1"), t);
        jb_tick(t);
    }
    fp_drain();
    CHECK(fp_relay[0] == 0, "the home is in charge: no cold-load closing");
    set("SET 1 1 1", "ACK 1 1 1", t); /* the delay does not apply to a SET */
}

static void test_err_hello_and_long(void)
{
    const char *got;
    char line[200];
    fresh();
    provision("off", "off", "off", "2", "0 0", 0);
    welcome(100);
    feed("ERR hello", 200);
    got = fp_line();
    CHECK(got && strncmp(got, "HELLO home-1-a 3 2 000 ", 23) == 0, "ERR hello: HELLO again, got \"%s\"", got ? got : "-");
    snprintf(hello, sizeof hello, "%s", got ? got : "");
    welcome(300);
    memset(line, 'A', 97);
    line[97] = 0;
    feed(line, 400);
    got = board_said();
    CHECK(got && strcmp(got, "ERR long") == 0, "97 bytes: ERR long, got \"%s\"", got ? got : "-");
    CHECK(jb_state() == JB_CLOSED, "and the session ends");
    jb_tick(1400);
    got = fp_line();
    CHECK(got && strncmp(got, "HELLO ", 6) == 0, "a new session 1 s later");
    /* 96 bytes, and 96 with CR LF, are lines */
    memset(line, ' ', 96);
    memcpy(line, "ERR hello", 9);
    line[96] = 0;
    feed(line, 2000);
    got = fp_line();
    CHECK(got && strncmp(got, "HELLO ", 6) == 0, "a 96-byte line is a line");
    line[96] = '\r';
    line[97] = 0;
    feed(line, 2000);
    got = fp_line();
    CHECK(got && strncmp(got, "HELLO ", 6) == 0, "96 bytes then CR LF too");
}

static void test_refused(void)
{
    fresh();
    provision("off", "off", "off", "2", "0 0", 0);
    feed("REFUSED relays", 100);
    CHECK(jb_state() == JB_CLOSED, "REFUSED ends the session");
    jb_tick(10099);
    silent();
    jb_tick(10100);
    CHECK(jb_state() == JB_HELLO_SENT, "a new HELLO 10 s after REFUSED");
}

static void test_version_1_lab_board(void)
{
    fresh();
    prov("PROV ID lab-1", 0);
    prov("PROV KEY none", 0);
    prov("PROV RELAY 1 off 0 6900", 0);
    prov("PROV COLDLOAD 0 0", 0);
    feed("PROV SAVE", 0);
    take("PROV OK saved");
    take("HELLO lab-1 1 1 0");
    feed("WELCOME 2 2 home-1 8f3a5c7e91b2d4f6", 10);
    take("ERR version");
    jb_tick(1010);
    take("HELLO lab-1 1 1 0");
    feed("WELCOME 1 2", 1100);
    take("MEAS 0");
    feed("SET 1 1 1", 1200);
    take("ACK 1 1 1");
    CHECK(fp_relay[0] == 1, "a version 1 board obeys plain lines");
    feed("SET x", 1300);
    take("ERR field");
}

static void test_meter(void)
{
    const char *got;
    int i, s;
    unsigned watts;
    fresh();
    provision("off", "off", "off", "0", "0 0", 0);
    welcome(100);
    set("SET 1 1 1", "ACK 1 1 1", 200);
    set("SET 2 2 1", "ACK 2 2 1", 200);
    /* relay 1: 50 Hz, 500 mV RMS around 2.5 V; relay 2: 60 Hz, 100 mV RMS;
     * relay 3 (open) sees a signal too: reported 0 */
    for (i = 0; i < 2000; i++) {
        double t = i / 1000.0;
        for (s = 0; s < 3; s++) {
            double mv = 2500 + (s == 0 ? 500 : 100) * sqrt(2) * sin(2 * PI * (s == 1 ? 60 : 50) * t + 0.3);
            jb_meter_sample((uint8_t)s, (uint16_t)lround(mv * 1024 / 5000));
        }
        if (i % 50 == 0)
            jb_tick(200 + (uint32_t)i);
    }
    jb_tick(2100);
    fp_drain();
    jb_tick(4100);
    board_said(); /* PING 2 */
    got = board_said();
    CHECK(got && sscanf(got, "MEAS %u", &watts) == 1, "a MEAS, got \"%s\"", got ? got : "-");
    CHECK(fabs(watts - 0.5 * 6900) <= 0.01 * 0.5 * 6900, "relay 1: 0.5 V RMS x 6900 W/V = 3450 W within 1 %%, got %u",
          watts);
    CHECK(got && sscanf(got, "MEAS %*u %u", &watts) == 1 && fabs(watts - 0.1 * 6900) <= 0.02 * 0.1 * 6900,
          "relay 2: 690 W within 2 %%, got %u", watts);
    CHECK(got && sscanf(got, "MEAS %*u %*u %u", &watts) == 1 && watts == 0, "relay 3, open: 0, got %u", watts);
}

static void test_macs_marked(void)
{
    fresh();
    provision("off", "off", "off", "0", "0 0", 0);
    welcome(100);
    fp_macs = 0;
    set("SET 1 1 1", "ACK 1 1 1", 200);
    CHECK(fp_macs == 2, "one marked MAC to check the SET, one to seal the ACK: %u", fp_macs);
}

/* Lines no home would send, thousands of them: random bytes, and valid
 * sealed lines with one byte changed.  Nothing may switch a relay, and the
 * sanitizers watch every access. */
static void test_garbage_switches_nothing(void)
{
    static const char alphabet[] = "SETACKPINGONWLCM0123456789 abcdef\r\t\x01\x7f\xff";
    uint32_t seed = 12345, t = 200;
    int i, j;
    fresh();
    provision("off", "off", "off", "0", "0 0", 0);
    welcome(100);
    for (i = 0; i < 20000; i++) {
        char line[200];
        int len;
        seed = seed * 1103515245u + 12345u;
        if (i % 2) {
            len = (int)((seed >> 16) % 120);
            for (j = 0; j < len; j++) {
                seed = seed * 1103515245u + 12345u;
                line[j] = alphabet[(seed >> 16) % (sizeof alphabet - 1)];
            }
        } else {
            snprintf(line, sizeof line, "%s", seal_with(k_hb, "SET 1 1 1", home_sent + 1));
            len = (int)strlen(line);
            seed = seed * 1103515245u + 12345u;
            line[(seed >> 16) % (uint32_t)len] ^= (char)(1 + (seed >> 8) % 255);
        }
        for (j = 0; j < len; j++)
            jb_receive((uint8_t)line[j], t);
        jb_receive('\n', t);
        if (i % 100 == 0) { /* the home's own lines keep the session */
            feed(home_says("PING 1"), t);
            jb_tick(t);
            t += 50;
        }
        CHECK(fp_relay[0] == 0, "relay 1 stays open after line %d", i);
        if (fp_relay[0])
            break;
        fp_drain();
    }
    CHECK(jb_state() == JB_ACTIVE || jb_state() == JB_CLOSED || jb_state() == JB_HELLO_SENT, "a session state");
}

/* A fresh board with relays safe off and ``interval``, welcomed at 100. */
static void in_session(const char *interval)
{
    fresh();
    provision("off", "off", "off", interval, "0 0", 0);
    welcome(100);
}

/* Lines that prove nothing get at most JB_ANSWERS (4) answers, then one
 * every 250 ms: a stranger cannot keep the board busy talking. */
static void test_answers_to_strangers_are_few(void)
{
    int i;
    unsigned n;
    in_session("2");
    for (i = 0; i < 50; i++) {
        feed("", 1000);
        feed("PROV SHOW", 1000);
        feed("SET 1 1 1 1 0123456789abcdef", 1000);
        feed("FROB", 1000);
    }
    n = fp_pending();
    CHECK(n == 4, "4 answers to 200 bad lines at once, got %u", n);
    fp_drain();
    feed("", 1249);
    silent();
    feed("", 1250);
    take("ERR auth");
    feed("", 1300);
    silent();
    /* the home's own lines are always answered */
    set("PING 3", "PONG 3", 1300);
    /* and after a quiet second the budget is whole again */
    for (i = 0; i < 10; i++)
        feed("", 2500);
    CHECK(fp_pending() == 4, "4 answers again after a quiet second, got %u", fp_pending());
    fp_drain();
}

/* However many lines arrive, and without any jb_tick, the failsafe fires
 * at its instant: the board looks at its deadlines before every line. */
static void test_failsafe_under_a_stream_of_lines(void)
{
    uint32_t t;
    in_session("2");
    set("SET 1 1 1", "ACK 1 1 1", 2000); /* the home's last line: failsafe due at 8000 */
    for (t = 2000; t < 8000; t++)
        jb_receive('\n', t);
    CHECK(fp_relay[0] == 1, "relay 1 still closed before failsafe_after_s");
    jb_receive('\n', 8000);
    CHECK(fp_relay[0] == 0, "the failsafe opened relay 1 at 8000 between two stray bytes, no jb_tick");
    /* the same through jb_poll, as the Uno calls it while its send buffer is full */
    in_session("2");
    set("SET 1 1 1", "ACK 1 1 1", 2000);
    jb_poll(7999);
    CHECK(fp_relay[0] == 1, "not yet");
    jb_poll(8000);
    CHECK(fp_relay[0] == 0, "jb_poll fires the failsafe");
    fp_drain();
}

static uint32_t test_clock;
static uint32_t read_test_clock(void) { return test_clock; }

/* min_interval counts from when the relay really switched, not from when
 * the SET's LF arrived; the failsafe counts from the LF. */
static void test_interval_from_the_switch(void)
{
    in_session("0.5");
    jb_set_clock(read_test_clock);
    test_clock = 1250; /* the SET's LF arrived at 1000, handled at 1250 */
    set("SET 1 1 1", "ACK 1 1 1", 1000);
    CHECK(fp_relay[0] == 1, "relay 1 closed at 1250");
    test_clock = 1700; /* 700 ms after that LF, 450 ms after the switch */
    set("SET 2 1 0", "NAK 2 busy", 1600);
    test_clock = 1750;
    set("SET 3 1 0", "ACK 3 1 0", 1740);
    set("SET 4 2 1", "ACK 4 2 1", 1740); /* the home's last line: LF at 1740 */
    jb_set_clock(0);
    jb_tick(7739);
    CHECK(fp_relay[1] == 1, "relay 2 closed until the failsafe");
    jb_tick(7740);
    CHECK(fp_relay[1] == 0, "failsafe 6 s after the last LF, not after its handling");
    fp_drain();

}

/* A relay left alone for 2^32 ms (49.7 days) and a bit is not busy: the
 * clock's wrap never makes it look freshly switched. */
static void test_interval_across_the_wrap(void)
{
    uint64_t t, end = (1ull << 32) + 3500; /* 2^32 + 500 ms after the switch */
    const char *line;
    fresh();
    provision("off", "off", "hold", "2", "0 0", 0);
    welcome(100);
    set("SET 1 3 1", "ACK 1 3 1", 3000); /* relay 3 (safe: hold) closed at 3000 */
    for (t = 3000; t < end - 20000; t += 100000000u)
        jb_tick((uint32_t)t);
    for (t = end - 20000; t <= end; t += 1000) {
        jb_tick((uint32_t)t);
        while ((line = fp_line()) != NULL)
            if (strncmp(line, "HELLO ", 6) == 0)
                snprintf(hello, sizeof hello, "%s", line);
    }
    CHECK(fp_relay[2] == 1, "relay 3 held closed");
    CHECK(jb_state() == JB_HELLO_SENT, "a session being offered");
    welcome((uint32_t)end);
    set("SET 2 3 0", "ACK 2 3 0", (uint32_t)end);
    CHECK(fp_relay[2] == 0, "relay 3 opened 2^32 + 500 ms after its last switch");
}

/* Store writes torn by a power cut after n bytes, last byte first as
 * avr-libc's eeprom_update_block writes them (or first byte first): the
 * boot counter never goes down, so no nonce is used twice. */
static void test_boot_counter_survives_torn_writes(void)
{
    static const uint32_t starts[] = {0x1FC, 0xFFFC, 0xFFFFFC, 0x7FFFFFFC, 0xFFFFFFF0u, 0}; /* the torn write crosses a byte */
    size_t s;
    int n, backwards, k;
    for (s = 0; s < sizeof starts / sizeof starts[0]; s++)
        for (backwards = 0; backwards < 2; backwards++)
            for (n = 0; n <= 6; n++) {
                uint32_t used;
                fp_reset();
                fp_write_backwards = (uint8_t)backwards;
                fp_store[0] = (uint8_t)(starts[s] >> 24); /* a board from before the slots */
                fp_store[1] = (uint8_t)(starts[s] >> 16);
                fp_store[2] = (uint8_t)(starts[s] >> 8);
                fp_store[3] = (uint8_t)starts[s];
                for (k = 0; k < 3; k++) /* whole power-ups */
                    jb_power_up(0, 1);
                used = jb_boot_count();
                CHECK(used == starts[s] + 3, "3 power-ups raise the counter by 3: %u", used);
                fp_tear_after = n; /* this power-up's write torn after n bytes */
                jb_power_up(0, 1);
                fp_tear_after = -1;
                jb_power_up(0, 1); /* the power back */
                CHECK(jb_boot_count() > used, "start %x, torn after %d bytes (%s): boot %u, was %u", starts[s], n,
                      backwards ? "last byte first" : "first byte first", jb_boot_count(), used);
                jb_power_up(0, 1);
                CHECK(jb_boot_count() > used + 1, "and on from there");
            }
    fp_write_backwards = 0;
}

/* Boards without a key (all share the zero key) draw different cold-load
 * delays: the board id is in the draw. */
static void test_cold_load_of_key_less_boards(void)
{
    static const char *ids[] = {"board-a", "board-b", "board-c"};
    uint32_t delays[3];
    int i;
    char line[64];
    for (i = 0; i < 3; i++) {
        fresh();
        snprintf(line, sizeof line, "PROV ID %s", ids[i]);
        prov(line, 0);
        prov("PROV KEY none", 0);
        prov("PROV COLDLOAD 5 30", 0);
        feed("PROV SAVE", 0);
        delays[i] = jb_cold_load_delay_ms();
        fp_drain();
    }
    CHECK(delays[0] != delays[1] && delays[1] != delays[2] && delays[0] != delays[2],
          "key-less boards with the same boot count draw different delays: %u %u %u", delays[0], delays[1], delays[2]);
}

/* PROV lines from a port of their own (jb_provision) never mix with a
 * half-received line from the home. */
static void test_provisioning_port_is_apart_from_the_link(void)
{
    const char *line, *got;
    size_t i;
    in_session("0");
    line = home_says("PING 4");
    for (i = 0; i < 10; i++)
        jb_receive((uint8_t)line[i], 200);
    fp_unlocked = 1;
    jb_provision("PROV STACK", 10, 200);
    take("PROV STACK 1234");
    feed(line + 10, 200);
    got = board_said();
    CHECK(got && strcmp(got, "PONG 4") == 0, "the home's line arrived whole, got \"%s\"", got ? got : "-");
    {
        char longer[120];
        memset(longer, 'x', sizeof longer);
        memcpy(longer, "PROV ID ", 8);
        jb_provision(longer, sizeof longer, 300);
        take("PROV ERR long");
    }
    fp_unlocked = 0;
}

/* A key-less (version 1) board answers bad lines within the same budget:
 * anyone may have sent them. */
static void test_version_1_answers_are_few(void)
{
    int i;
    fresh();
    prov("PROV ID home-1-a", 0);
    prov("PROV KEY none", 0);
    feed("PROV SAVE", 0);
    take("PROV OK saved");
    take("HELLO home-1-a 1 1 0");
    feed("WELCOME 1 2", 100);
    fp_drain();
    for (i = 0; i < 50; i++)
        feed("", 1000);
    CHECK(fp_pending() == 4, "4 answers to 50 empty lines, got %u", fp_pending());
    fp_drain();
}

/* The backstop: relays whose safe state is off, scheduled to open 5 ms
 * after the failsafe is due, by the platform's interrupt should the
 * program be late; the board then takes them as opened. */
static void test_failsafe_backstop(void)
{
    fresh();
    provision("off", "on", "off", "2", "0 0", 0);
    welcome(100);
    set("SET 1 1 1", "ACK 1 1 1", 2000); /* failsafe due at 8000 */
    CHECK(fp_backstop_mask == 1 && fp_backstop_at == 8005, "relay 1 scheduled to open at 8005: mask %u at %u",
          fp_backstop_mask, fp_backstop_at);
    set("SET 2 3 1", "ACK 2 3 1", 3000); /* failsafe due at 9000 */
    CHECK(fp_backstop_mask == 5 && fp_backstop_at == 9005, "relays 1 and 3 at 9005: mask %u at %u",
          fp_backstop_mask, fp_backstop_at);
    /* the program hangs past the failsafe; the interrupt still runs */
    fp_backstop_interrupt(9004);
    CHECK(fp_relay[0] == 1 && fp_relay[2] == 1, "nothing before 9005");
    fp_backstop_interrupt(9005);
    CHECK(fp_relay[0] == 0 && fp_relay[2] == 0, "the backstop opened relays 1 and 3 at 9005");
    /* the program comes back: it takes them as opened (no switch again), and
     * the home's next line brings a HELLO with the true states first */
    fp_relay_writes = 0;
    jb_tick(9100);
    CHECK(jb_relay_is_on(0) == 0 && jb_relay_is_on(2) == 0, "the board knows they are open");
    CHECK(fp_backstop_mask == 0, "nothing scheduled after the failsafe");
    fp_drain();
    /* a relay within its min_interval at the failsafe is not in the backstop */
    in_session("10");
    set("SET 1 1 1", "ACK 1 1 1", 10000); /* failsafe at 16000, interval until 20000 */
    CHECK(fp_backstop_mask == 0, "relay 1 may not switch at the failsafe: not scheduled (mask %u)", fp_backstop_mask);
    fp_drain();
}

int main(void)
{
    static const struct { const char *name; void (*run)(void); } tests[] = {
#define T(f) {#f, f}
        T(test_sha256), T(test_hmac_rfc4231), T(test_session_keys), T(test_vector_lines), T(test_vector_session),
        T(test_unprovisioned_is_silent_and_open), T(test_provisioning_locked), T(test_provisioning_errors),
        T(test_handshake_refusals), T(test_sealed_lines_refused), T(test_relays_and_intervals),
        T(test_pong_not_answered), T(test_heartbeat_and_meas), T(test_failsafe), T(test_no_ping_just_before_the_failsafe),
        T(test_failsafe_waits_for_interval),
        T(test_failsafe_pending_until_interval), T(test_home_back_cancels_pending),
        T(test_unreported_switch_hello_first), T(test_cold_load), T(test_welcome_cancels_cold_load),
        T(test_err_hello_and_long), T(test_refused), T(test_version_1_lab_board), T(test_meter),
        T(test_macs_marked), T(test_garbage_switches_nothing), T(test_answers_to_strangers_are_few),
        T(test_failsafe_under_a_stream_of_lines), T(test_interval_from_the_switch), T(test_interval_across_the_wrap),
        T(test_boot_counter_survives_torn_writes), T(test_cold_load_of_key_less_boards),
        T(test_provisioning_port_is_apart_from_the_link), T(test_version_1_answers_are_few),
        T(test_failsafe_backstop),
#undef T
    };
    size_t i;
    for (i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        current = tests[i].name;
        tests[i].run();
    }
    printf("%d checks, %d failed, %zu tests\n", checks, failures, sizeof tests / sizeof tests[0]);
    return failures ? 1 : 0;
}

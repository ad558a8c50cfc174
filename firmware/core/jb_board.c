/* The board: relays, failsafe, power-up, and its session with the home.
 *
 * Each part follows its Python reference (docs/protocol.rst, "Writing
 * firmware"):
 *   relays, failsafe, power-up   jeisson/actuator/board.py   (Board)
 *   the session's states         jeisson/actuator/home_link.py (ActuatorSession)
 *   sealed lines, keys, nonces   jeisson/wire/board_auth.py
 *   the line grammar             jeisson/wire/home_actuator.py
 *
 * Times are milliseconds of the platform's clock, compared by unsigned
 * subtraction so that its wrap (49 days) is harmless. */
#include "jb_core.h"

#include <string.h>

#include "jb_platform.h"
#include "jb_rom.h"
#include "jb_sha256.h"

/* ------------------------------------------------------------------ state */

typedef struct {
    uint8_t on;
    uint8_t pending;      /* a switch to the safe state waiting for ``due`` */
    uint8_t settled;      /* min_interval has passed since last_switch */
    uint32_t last_switch; /* power-up counts as a switch */
    uint32_t due;
} jb_relay;

static jb_relay relays[JB_MAX_RELAYS];
/* The board's time: never goes backwards (a late time stamp never pulls it
 * back); ``heard_at``: when the line being handled arrived (its LF). */
static uint32_t now_ms, heard_at;
/* The platform's clock, if it gave one (jb_set_clock): read at the moment
 * a relay switches, and when a line is handled. */
static uint32_t (*clock_fn)(void);
/* Answers to lines that prove nothing: a budget (JB_ANSWERS, one back
 * every JB_ANSWER_MS), so that a stranger cannot keep the board busy
 * talking. */
#ifndef JB_ANSWERS
#define JB_ANSWERS 4
#endif
#ifndef JB_ANSWER_MS
#define JB_ANSWER_MS 250
#endif
static uint8_t answers = JB_ANSWERS;
static uint32_t answer_refill;

/* Board (board.py) */
static uint8_t in_failsafe;
static uint8_t unreported_switch;
static uint8_t failsafe_armed;
static uint32_t failsafe_due;
static uint8_t cold_load_waiting; /* the cold-load pickup delay has not passed yet */
static uint32_t cold_load_at;
static uint32_t cold_load_ms;

/* Session (home_link.py) */
static uint8_t state = JB_UNPROVISIONED;
static uint8_t connectionless;
static uint8_t restart_pending;
static uint32_t restart_at;
static uint32_t hello_deadline;
static uint32_t last_seen; /* the heartbeat's: an authentic line */
static uint32_t heartbeat_ms;
static uint32_t next_ping;
static uint16_t ping_n;
static uint32_t next_meas;
static uint8_t authentic;

/* Authentication (board_auth.py) */
static uint32_t boot;
static uint32_t hello_count;
static char hello_line[53]; /* kept until WELCOME: the session keys bind it */
static uint8_t hello_len;
static uint8_t have_channel;
/* The session's keys, as their padded HMAC states (2 SHA-256 blocks a line
 * instead of 4): home to board for the lines we receive, board to home for
 * those we send. */
static jb_hmac_key key_hb, key_bh;
static uint32_t sent_counter, received_counter;

/* Lines */
static char rx[JB_MAX_LINE + 2]; /* 96, a CR an LF may follow, the NUL */
static uint8_t rx_len;
static uint8_t rx_discard; /* the rest of an over-long line */
static char tx[JB_MAX_LINE + 2];

static const char HEX[] JB_ROM = "0123456789abcdef";

/* Reply codes (home_actuator.py). */
static const char E_SYNTAX[] JB_ROM = "syntax";
static const char E_VERB[] JB_ROM = "verb";
static const char E_FIELD[] JB_ROM = "field";
static const char E_STATE[] JB_ROM = "state";
static const char E_LONG[] JB_ROM = "long";
static const char E_VERSION[] JB_ROM = "version";
static const char E_RELAY[] JB_ROM = "relay";
static const char E_BUSY[] JB_ROM = "busy";

#define SPEAKS (jb_cfg.key_kind == JB_KEY_SET ? 2 : 1)

/* More than a line's MAC takes on the slowest board (7 ms on the Uno). */
#ifndef JB_GUARD_MS
#define JB_GUARD_MS 15
#endif

static int32_t until(uint32_t when) { return (int32_t)(when - now_ms); }

/* Move the board's time on to ``t`` unless it is already later. */
static void advance(uint32_t t)
{
    if ((int32_t)(t - now_ms) > 0)
        now_ms = t;
}

void jb_set_clock(uint32_t (*now)(void)) { clock_fn = now; }

/* The clock now, if the platform gave one. */
static void refresh(void)
{
    if (clock_fn)
        advance(clock_fn());
}

/* May the board answer a line that proves nothing?  Uses up the budget. */
uint8_t jb_may_answer(void)
{
    int32_t gone = until(answer_refill);
    if (gone <= 0) {
        uint32_t back = 1 + (uint32_t)(-gone) / JB_ANSWER_MS;
        answers = back >= (uint32_t)(JB_ANSWERS - answers) ? JB_ANSWERS : (uint8_t)(answers + back);
        answer_refill = now_ms + JB_ANSWER_MS;
    }
    if (!answers)
        return 0;
    answers--;
    return 1;
}

/* ------------------------------------------------------------- formatting */

char *jb_put_u32(char *out, uint32_t value)
{
    char digits[10];
    uint8_t n = 0;
    do {
        digits[n++] = (char)('0' + value % 10);
        value /= 10;
    } while (value);
    while (n)
        *out++ = digits[--n];
    *out = 0;
    return out;
}

/* Append a ROM string. */
static char *put_str(char *out, const char *rom)
{
    while ((*out = jb_rom_byte(rom++)) != 0)
        out++;
    return out;
}

static char *put_ram(char *out, const char *text)
{
    while (*text)
        *out++ = *text++;
    *out = 0;
    return out;
}

static void put_hex(char *out, const uint8_t *bytes, uint8_t n)
{
    while (n--) {
        *out++ = jb_rom_byte(&HEX[*bytes >> 4]);
        *out++ = jb_rom_byte(&HEX[*bytes++ & 15]);
    }
    *out = 0;
}

/* ------------------------------------------------------------------- MACs */

/* HMAC(key, label | data); ``label``: a ROM string, or 0. */
static void hmac(const uint8_t *key, const char *label, const void *data, uint8_t len, uint8_t out[32])
{
    jb_sha256_ctx ctx;
    char c;
    jb_hmac_init(&ctx, key, JB_KEY_BYTES);
    while (label && (c = jb_rom_byte(label++)) != 0)
        jb_sha256_update(&ctx, &c, 1);
    jb_sha256_update(&ctx, data, len);
    jb_hmac_final(&ctx, key, JB_KEY_BYTES, out);
}

/* A line's MAC: HMAC-SHA256 truncated to 8 bytes, as 16 hex digits. */
static void line_mac(const jb_hmac_key *key, const char *data, uint8_t len, char out[17])
{
    jb_sha256_ctx ctx;
    jb_plat_mac_mark(1);
    jb_hmac_start(&ctx, key);
    jb_sha256_update(&ctx, data, len);
    jb_hmac_finish(&ctx, key, ctx.u.block);
    jb_plat_mac_mark(0);
    put_hex(out, ctx.u.block, 8);
}

/* ------------------------------------------------------------------ sends */

static void write_line(char *line, uint8_t len)
{
    line[len] = '\n';
    jb_plat_write(line, (uint8_t)(len + 1));
}

static void close_session(uint32_t retry_ms);

/* ``tx`` holds a message: send it, sealed if a session is in force. */
static void send_tx(void)
{
    uint8_t len = (uint8_t)strlen(tx);
    if (have_channel) {
        char *p;
        if (sent_counter == 0xFFFFFFFFUL) { /* spent: a new session */
            close_session(1000);
            return;
        }
        p = tx + len;
        *p++ = ' ';
        p = jb_put_u32(p, ++sent_counter);
        line_mac(&key_bh, tx, (uint8_t)(p - tx), p + 1);
        *p = ' ';
        len = (uint8_t)(p + 17 - tx);
    }
    write_line(tx, len);
}

/* A plain line, from a ROM string. */
void jb_send_text(const char *rom)
{
    write_line(tx, (uint8_t)(put_str(tx, rom) - tx));
}

static void send_err(const char *code)
{
    put_str(put_str(tx, JB_S("ERR ")), code);
    send_tx();
}

/* A line that proves nothing: always plain, within the answers' budget. */
static void auth_failed(void)
{
    if (jb_may_answer())
        jb_send_text(JB_S("ERR auth"));
}

/* ----------------------------------------------------------------- relays */

static void backstop(void);

static void apply(uint8_t i, uint8_t on, uint8_t own)
{
    refresh(); /* min_interval counts from the switch itself */
    relays[i].on = on;
    relays[i].last_switch = now_ms;
    relays[i].settled = 0;
    jb_plat_relay(i, on);
    if (own)
        unreported_switch = 1;
    backstop();
}

/* Milliseconds until relay ``i`` may switch again (0: now).  Once that
 * is 0 it stays 0 (``settled``, noted at every tick) until the next
 * switch: the clock's wrap after 49.7 days never makes a relay left alone
 * look freshly switched. */
static uint32_t interval_left(uint8_t i)
{
    uint32_t elapsed = now_ms - relays[i].last_switch;
    uint32_t min = jb_cfg.relay[i].min_interval_ms;
    if (relays[i].settled || elapsed >= min) {
        relays[i].settled = 1;
        return 0;
    }
    return min - elapsed;
}

static void cancel_pending(void)
{
    uint8_t i;
    for (i = 0; i < JB_MAX_RELAYS; i++)
        relays[i].pending = 0;
}

/* Switch relay ``i`` to its safe state now, or when its min_interval and,
 * to close, the cold-load delay allow. */
static void to_safe_state(uint8_t i)
{
    uint8_t on = jb_cfg.relay[i].safe == JB_SAFE_ON;
    uint32_t wait = interval_left(i);
    if (on && cold_load_waiting && until(cold_load_at) > 0 && (uint32_t)until(cold_load_at) > wait)
        wait = (uint32_t)until(cold_load_at);
    relays[i].pending = 0;
    if (wait == 0) {
        apply(i, on, 1);
        return;
    }
    relays[i].pending = 1;
    relays[i].due = now_ms + wait;
}

/* A SET: "ok" (0), E_RELAY or E_BUSY. */
static const char *switch_by_home(uint8_t number, uint8_t on)
{
    uint8_t i = (uint8_t)(number - 1);
    if (number < 1 || number > jb_cfg.relays)
        return E_RELAY;
    backstop(); /* the relay's true state */
    /* The home is in charge again: its command replaces any switch to the
     * safe state still waiting for this relay. */
    in_failsafe = 0;
    relays[i].pending = 0;
    if (relays[i].on == on)
        return 0;
    if (interval_left(i))
        return E_BUSY;
    apply(i, on, 0);
    return 0;
}

/* The backstop: the platform's timer interrupt opens the relays whose safe
 * state is off JB_BACKSTOP_MS after the failsafe is due, should the
 * program be late for it (jb_plat_backstop).  Kept in step here: the
 * relays it opened are taken as opened (an own switch, reported by the
 * next HELLO), then the schedule is set anew from the board's state. */
#ifndef JB_BACKSTOP_MS
#define JB_BACKSTOP_MS 5
#endif

static void backstop(void)
{
    uint8_t i, mask = 0, fired;
    uint32_t at = failsafe_due + JB_BACKSTOP_MS;
    if (failsafe_armed && jb_is_provisioned)
        for (i = 0; i < jb_cfg.relays && i < 8; i++)
            if (relays[i].on && jb_cfg.relay[i].safe == JB_SAFE_OFF
                && (relays[i].settled || at - relays[i].last_switch >= jb_cfg.relay[i].min_interval_ms))
                mask |= (uint8_t)(1u << i);
    /* Swapped in one step: the schedule is never off while the program
     * runs (a relay the interrupt just opened may be in the new mask: it
     * is opened again, which changes nothing). */
    fired = jb_plat_backstop(at, mask);
    for (i = 0; i < JB_MAX_RELAYS && i < 8; i++) {
        if ((fired >> i) & 1 && relays[i].on) {
            relays[i].on = 0;
            relays[i].last_switch = now_ms;
            relays[i].settled = 0;
            relays[i].pending = 0;
            unreported_switch = 1;
        }
    }
}

static void heard_from_home(void)
{
    if (in_failsafe) {
        /* The home is back: no safe switch still waiting may fire behind its back. */
        in_failsafe = 0;
        cancel_pending();
    }
    failsafe_armed = 1;
    failsafe_due = heard_at + jb_cfg.failsafe_ms;
    backstop();
}

static void go_safe(void)
{
    uint8_t i;
    failsafe_armed = 0;
    in_failsafe = 1;
    for (i = 0; i < jb_cfg.relays; i++) {
        uint8_t safe = jb_cfg.relay[i].safe;
        if (safe == JB_SAFE_HOLD || relays[i].on == (safe == JB_SAFE_ON))
            relays[i].pending = 0;
        else
            to_safe_state(i);
    }
}

static void relay_timers(void)
{
    uint8_t i;
    if (cold_load_waiting && until(cold_load_at) <= 0)
        cold_load_waiting = 0;
    for (i = 0; i < jb_cfg.relays; i++) {
        interval_left(i); /* notes ``settled`` */
        if (relays[i].pending && until(relays[i].due) <= 0) {
            relays[i].pending = 0;
            apply(i, jb_cfg.relay[i].safe == JB_SAFE_ON, 1);
        }
    }
    if (failsafe_armed && until(failsafe_due) <= 0)
        go_safe();
    backstop();
}

void jb_power_down(void)
{
    uint8_t i;
    for (i = 0; i < JB_MAX_RELAYS; i++) {
        relays[i].pending = 0;
        relays[i].on = 0;
        jb_plat_relay(i, 0);
    }
    jb_plat_backstop(0, 0);
    failsafe_armed = 0;
    in_failsafe = 0;
    cold_load_waiting = 0;
    have_channel = 0;
    state = JB_UNPROVISIONED;
}

/* Is the failsafe due within ``guard_ms``?  Then a line the board would
 * send of its own accord waits: sealing it takes milliseconds on an AVR
 * (a HELLO's nonce four times as long), and the failsafe must not wait for
 * it.  A PING or MEAS held back this way is never late for anything: if the
 * home stays silent the session ends at that same instant. */
static uint8_t failsafe_near(uint16_t guard_ms)
{
    return failsafe_armed && until(failsafe_due) < (int32_t)guard_ms;
}

/* Is the failsafe, or a switch waiting for its time, due within
 * ``guard_ms``?  Then work that proves nothing yet (a stranger's WELCOME,
 * ERR hello) waits too. */
static uint8_t deadline_near(uint16_t guard_ms)
{
    uint8_t i;
    for (i = 0; i < jb_cfg.relays && i < JB_MAX_RELAYS; i++)
        if (relays[i].pending && until(relays[i].due) < (int32_t)guard_ms)
            return 1;
    return failsafe_near(guard_ms);
}

/* ---------------------------------------------------------------- session */

static void start_session(void);

static void close_session(uint32_t retry_ms)
{
    have_channel = 0;
    state = JB_CLOSED;
    if (connectionless) {
        restart_pending = 1;
        restart_at = now_ms + retry_ms;
    } else {
        jb_plat_close();
    }
}

/* HELLO <id> <count> <version> <states> [<nonce>] */
static void start_session(void)
{
    char *p = put_str(hello_line, JB_S("HELLO "));
    uint8_t i;
    p = put_ram(p, jb_cfg.id);
    *p++ = ' ';
    *p++ = (char)('0' + jb_cfg.relays);
    *p++ = ' ';
    *p++ = (char)('0' + SPEAKS);
    *p++ = ' ';
    for (i = 0; i < jb_cfg.relays; i++)
        *p++ = relays[i].on ? '1' : '0';
    if (SPEAKS == 2) {
        /* A nonce that never repeats (boot, count) and that nobody without
         * the key can foresee. */
        uint8_t data[8], digest[32];
        if (++hello_count == 0) {
            jb_boot_store(++boot);
            hello_count = 1;
        }
        for (i = 0; i < 4; i++) {
            data[i] = (uint8_t)(boot >> (24 - 8 * i));
            data[4 + i] = (uint8_t)(hello_count >> (24 - 8 * i));
        }
        hmac(jb_cfg.key, JB_S("jeisson-board 2 nonce\n"), data, 8, digest);
        *p++ = ' ';
        put_hex(p, digest, 8);
        p += 16;
    }
    hello_len = (uint8_t)(p - hello_line);
    /* This HELLO carries every relay's true state. */
    unreported_switch = 0;
    have_channel = 0;
    restart_pending = 0;
    state = JB_HELLO_SENT;
    hello_deadline = now_ms + jb_cfg.failsafe_ms;
    memcpy(tx, hello_line, hello_len);
    write_line(tx, hello_len);
}

static void send_meas(void)
{
    char *p = put_str(tx, JB_S("MEAS"));
    uint8_t i;
    for (i = 0; i < jb_cfg.relays; i++) {
        uint16_t w = jb_meter_take(i);
        *p++ = ' ';
        p = jb_put_u32(p, relays[i].on ? w : 0);
    }
    send_tx();
}

/* ----------------------------------------------------------------- parser */

enum { V_HELLO, V_WELCOME, V_AUTH, V_REFUSED, V_SET, V_ACK, V_NAK, V_MEAS, V_PING, V_PONG, V_ERR };
/* The verbs in that order, each ended by a NUL. */
static const char VERBS[] JB_ROM = "HELLO\0WELCOME\0AUTH\0REFUSED\0SET\0ACK\0NAK\0MEAS\0PING\0PONG\0ERR";
/* Fields per verb (HELLO and WELCOME: version 1's; version 2 has one or two more). */
static const uint8_t ARITY[] JB_ROM = {4, 2, 0, 1, 3, 3, 2, 0, 1, 1, 1};

#define MAX_TOKENS 10
typedef struct {
    uint8_t n;
    uint8_t off[MAX_TOKENS];
    uint8_t len[MAX_TOKENS];
} tokens;

typedef struct {
    uint8_t verb;
    uint16_t a; /* seq, n, version */
    uint16_t b; /* relay, heartbeat */
    uint8_t c;  /* state */
    const char *text; /* code; WELCOME: the home id */
    uint8_t text_len;
    const char *nonce; /* WELCOME: the home's nonce; NULL in version 1 */
} message;

static void split(const char *line, uint8_t len, tokens *t)
{
    uint8_t i = 0;
    t->n = 0;
    while (i < len) {
        while (i < len && line[i] == ' ')
            i++;
        if (i == len)
            break;
        if (t->n < MAX_TOKENS) {
            t->off[t->n] = i;
            t->len[t->n] = 0;
        }
        while (i < len && line[i] != ' ') {
            if (t->n < MAX_TOKENS)
                t->len[t->n]++;
            i++;
        }
        if (t->n < 255)
            t->n++;
    }
}

/* 1-5 digits within [low, high]: what atol() on a board would accept. */
static uint8_t number(const char *s, uint8_t len, uint16_t low, uint16_t high, uint16_t *out)
{
    uint32_t v = 0;
    uint8_t i;
    if (len < 1 || len > 5)
        return 0;
    for (i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        v = v * 10 + (uint8_t)(s[i] - '0');
    }
    if (v < low || v > high)
        return 0;
    *out = (uint16_t)v;
    return 1;
}

static uint8_t code_valid(const char *s, uint8_t len)
{
    uint8_t i;
    if (len < 1 || len > 16 || s[0] < 'a' || s[0] > 'z')
        return 0;
    for (i = 1; i < len; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || s[i] == '-'))
            return 0;
    return 1;
}

static uint8_t nonce_valid(const char *s, uint8_t len)
{
    uint8_t i;
    if (len != 16)
        return 0;
    for (i = 0; i < 16; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

uint8_t jb_id_valid(const char *id, uint8_t len, uint8_t max)
{
    uint8_t i;
    if (len < 1 || len > max)
        return 0;
    for (i = 0; i < len; i++) {
        char c = id[i];
        uint8_t alnum = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!alnum && (i == 0 || (c != '_' && c != '.' && c != '-')))
            return 0;
    }
    return 1;
}

/* A HELLO's or WELCOME's version, which must agree with its number of
 * fields: version 1 without the nonce, 2 and above with it. */
static uint8_t version(const char *s, uint8_t len, uint8_t fields, uint8_t short_form, uint16_t *out)
{
    return number(s, len, 1, 255, out) && ((*out == 1) == (fields == short_form));
}

/* Parse a message (a line without counter and MAC): 0, or the ERR code. */
static const char *parse(const char *line, uint8_t len, message *m)
{
    tokens t;
    uint8_t i, fields;
    uint16_t dummy;
#define TOK(k) (line + t.off[k]), t.len[k]
    for (i = 0; i < len; i++)
        if ((uint8_t)line[i] < 0x20 || (uint8_t)line[i] > 0x7e)
            return E_SYNTAX;
    split(line, len, &t);
    if (t.n == 0)
        return E_SYNTAX;
    {
        const char *verb = VERBS;
        for (m->verb = 0; m->verb <= V_ERR; m->verb++) {
            if (jb_rom_eq(line + t.off[0], t.len[0], verb))
                break;
            while (jb_rom_byte(verb++) != 0)
                ;
        }
    }
    if (m->verb > V_ERR)
        return E_VERB;
    fields = (uint8_t)(t.n - 1);
    if (m->verb == V_MEAS) {
        if (fields < 1 || fields > 8)
            return E_FIELD;
        for (i = 1; i <= fields; i++)
            if (!number(TOK(i), 0, 65535, &dummy))
                return E_FIELD;
        return 0;
    }
    if (fields != (uint8_t)jb_rom_byte(&ARITY[m->verb]) && !(m->verb == V_HELLO && fields == 5) && !(m->verb == V_WELCOME && fields == 4))
        return E_FIELD;
    m->nonce = 0;
    switch (m->verb) {
    case V_HELLO: {
        uint16_t count;
        if (!jb_id_valid(TOK(1), JB_ID_MAX) || !number(TOK(2), 1, 8, &count) || t.len[4] != count)
            return E_FIELD;
        for (i = 0; i < count; i++)
            if (line[t.off[4] + i] != '0' && line[t.off[4] + i] != '1')
                return E_FIELD;
        if (!version(TOK(3), fields, 4, &m->a) || (fields == 5 && !nonce_valid(TOK(5))))
            return E_FIELD;
        return 0;
    }
    case V_WELCOME:
        if (!version(TOK(1), fields, 2, &m->a) || !number(TOK(2), 1, 3600, &m->b))
            return E_FIELD;
        if (fields == 4) {
            if (!jb_id_valid(TOK(3), 32) || !nonce_valid(TOK(4)))
                return E_FIELD;
            m->text = line + t.off[3];
            m->text_len = t.len[3];
            m->nonce = line + t.off[4];
        }
        return 0;
    case V_REFUSED:
    case V_ERR:
        if (!code_valid(TOK(1)))
            return E_FIELD;
        m->text = line + t.off[1];
        m->text_len = t.len[1];
        return 0;
    case V_SET:
    case V_ACK:
        if (!number(TOK(1), 0, 65535, &m->a) || !number(TOK(2), 1, 8, &m->b) || t.len[3] != 1
            || (line[t.off[3]] != '0' && line[t.off[3]] != '1'))
            return E_FIELD;
        m->c = (uint8_t)(line[t.off[3]] - '0');
        return 0;
    case V_NAK:
        if (!number(TOK(1), 0, 65535, &m->a) || !code_valid(TOK(2)))
            return E_FIELD;
        return 0;
    case V_PING:
    case V_PONG:
        return number(TOK(1), 0, 65535, &m->a) ? 0 : E_FIELD;
    default: /* AUTH */
        return 0;
    }
#undef TOK
}

/* ------------------------------------------------------- sealed lines */

static uint8_t is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

/* The first word of a line, and how many words it has (up to 3). */
static uint8_t words(const char *line, uint8_t len, const char **first, uint8_t *first_len)
{
    uint8_t i = 0, n = 0;
    *first = line;
    *first_len = 0;
    while (i < len && n < 3) {
        while (i < len && is_space(line[i]))
            i++;
        if (i == len)
            break;
        if (n == 0)
            *first = line + i;
        while (i < len && !is_space(line[i])) {
            if (n == 0)
                (*first_len)++;
            i++;
        }
        n++;
    }
    return n;
}

static uint8_t verb_is(const char *line, uint8_t len, const char *verb, uint8_t *nwords)
{
    const char *first;
    uint8_t first_len;
    *nwords = words(line, len, &first, &first_len);
    return jb_rom_eq(first, first_len, verb);
}

/* HELLO, REFUSED and ERR <code> carry no MAC (board_auth.is_plain). */
static uint8_t is_plain(const char *line, uint8_t len)
{
    uint8_t n;
    if (verb_is(line, len, JB_S("ERR"), &n))
        return n == 2;
    return verb_is(line, len, JB_S("HELLO"), &n) || verb_is(line, len, JB_S("REFUSED"), &n);
}

static int16_t last_space(const char *line, uint8_t len)
{
    while (len--)
        if (line[len] == ' ')
            return len;
    return -1;
}

/* A sealed line's message length, its counter in *counter; -1 if it does
 * not prove ``key`` (board_auth.unseal). */
static int16_t unseal(const jb_hmac_key *key, const char *line, uint8_t len, uint32_t *counter)
{
    char mac[17];
    int16_t tag = last_space(line, len), head;
    uint8_t i, digits;
    uint32_t value = 0;
    if (tag < 0 || len - tag - 1 != 16)
        return -1;
    head = last_space(line, (uint8_t)tag);
    if (head < 0)
        return -1;
    line_mac(key, line, (uint8_t)tag, mac);
    if (jb_differ(mac, line + tag + 1, 16))
        return -1;
    /* Checked once the MAC holds: only the sender's own digits get here. */
    digits = (uint8_t)(tag - head - 1);
    if (digits < 1 || digits > 10 || (line[head + 1] == '0' && digits > 1))
        return -1;
    for (i = 0; i < digits; i++) {
        char c = line[head + 1 + i];
        if (c < '0' || c > '9' || value > 429496729UL || (value == 429496729UL && c > '5'))
            return -1;
        value = value * 10 + (uint8_t)(c - '0');
    }
    *counter = value;
    return head;
}

/* --------------------------------------------------------------- handlers */

static void hello_again(void)
{
    start_session();
}

static void on_welcome(const message *m)
{
    if (m->a != SPEAKS) {
        have_channel = 0;
        send_err(E_VERSION);
        close_session(1000);
        return;
    }
    if (unreported_switch) {
        /* A relay switched since our HELLO: this WELCOME took states that
         * are no longer true. */
        hello_again();
        return;
    }
    /* The home is in charge: no cold-load closing behind its back. */
    cancel_pending();
    state = JB_ACTIVE;
    if (have_channel) {
        /* Our proof, before any other line of ours. */
        char *p = put_str(tx, JB_S("AUTH 0 "));
        line_mac(&key_bh, tx, 6, p);
        write_line(tx, (uint8_t)(p + 16 - tx));
    }
    heartbeat_ms = (uint32_t)m->b * 1000UL;
    last_seen = heard_at;
    next_ping = now_ms + heartbeat_ms;
    ping_n = 0;
    /* The first reading goes out at once: the home learns the load now. */
    next_meas = now_ms + jb_cfg.measure_ms;
    send_meas();
}

static void on_set(const message *m)
{
    const char *refusal = switch_by_home((uint8_t)m->b, m->c);
    char *p;
    if (refusal) {
        p = put_str(tx, JB_S("NAK "));
        p = jb_put_u32(p, m->a);
        *p++ = ' ';
        put_str(p, refusal);
    } else {
        p = put_str(tx, JB_S("ACK "));
        p = jb_put_u32(p, m->a);
        *p++ = ' ';
        *p++ = (char)('0' + m->b);
        *p++ = ' ';
        *p++ = (char)('0' + m->c);
        *p = 0;
    }
    send_tx();
}

static void send_pong(uint16_t n)
{
    jb_put_u32(put_str(tx, JB_S("PONG ")), n);
    send_tx();
}

/* A line the key proved (version 2): its errors are always answered.  In
 * version 1 every line counts as the home's, but anyone may have sent it:
 * its errors, like a stranger's, are answered within the budget. */
#define PROVEN (authentic && SPEAKS == 2)

/* LinkSession.line_received: a sign of life if authentic, then parsed and
 * handled by state. */
static void dispatch(const char *line, uint8_t len)
{
    message m;
    const char *error;
    if (authentic) {
        heard_from_home();
        last_seen = heard_at;
        if (state == JB_ACTIVE && unreported_switch)
            /* The board switched relays on its own (its failsafe) while
             * this session stayed up: the home learns the true states first. */
            hello_again();
    }
    error = parse(line, len, &m);
    if (error) {
        if (PROVEN || jb_may_answer())
            send_err(error);
        return;
    }
    if (m.verb == V_PING) {
        send_pong(m.a);
    } else if (m.verb == V_ERR) {
        /* Never answered; "ERR hello": the home holds no session for us.
         * From anyone (it proves nothing): within the answers' budget, and
         * not when the nonce's work would hold back a switch that is due. */
        if (jb_rom_eq(m.text, m.text_len, JB_S("hello"))
            && (authentic || (!deadline_near(JB_GUARD_MS * 4) && jb_may_answer())))
            hello_again();
    } else if (state == JB_HELLO_SENT && m.verb == V_WELCOME) {
        on_welcome(&m);
    } else if (state == JB_HELLO_SENT && m.verb == V_REFUSED) {
        close_session(10000);
    } else if (state == JB_ACTIVE && m.verb == V_SET) {
        on_set(&m);
    } else if (!(state == JB_ACTIVE && m.verb == V_PONG) && (PROVEN || jb_may_answer())) {
        send_err(E_STATE);
    }
}

/* A session key: HMAC(K, label | context), context = \n | hello | \n |
 * home id | \n | home nonce, hashed piece by piece (no buffer for it). */
static void session_key(const char *label, const message *m, jb_hmac_key *out)
{
    jb_sha256_ctx ctx;
    uint8_t derived[JB_KEY_BYTES];
    char c;
    jb_hmac_init(&ctx, jb_cfg.key, JB_KEY_BYTES);
    while ((c = jb_rom_byte(label++)) != 0)
        jb_sha256_update(&ctx, &c, 1);
    jb_sha256_update(&ctx, "\n", 1);
    jb_sha256_update(&ctx, hello_line, hello_len);
    jb_sha256_update(&ctx, "\n", 1);
    jb_sha256_update(&ctx, m->text, m->text_len);
    jb_sha256_update(&ctx, "\n", 1);
    jb_sha256_update(&ctx, m->nonce, 16);
    jb_hmac_final(&ctx, jb_cfg.key, JB_KEY_BYTES, derived);
    jb_hmac_key_setup(out, derived, sizeof derived, &ctx);
}

/* A WELCOME before a session: it must prove the key itself. */
static void check_welcome(const char *line, uint8_t len)
{
    message m;
    uint8_t body = len;
    int16_t tag = last_space(line, len);
    uint32_t counter;
    /* Deriving the session keys takes about 50 ms on the Uno: never while
     * the failsafe or a switch is that close (the home sends it again). */
    if (deadline_near(JB_GUARD_MS * 4))
        return;
    if (tag > 0) {
        int16_t head = last_space(line, (uint8_t)tag);
        if (head > 0)
            body = (uint8_t)head;
    }
    if (parse(line, body, &m) || m.verb != V_WELCOME || !m.nonce) {
        auth_failed();
        return;
    }
    session_key(JB_S("jeisson-board 2 home to board"), &m, &key_hb);
    session_key(JB_S("jeisson-board 2 board to home"), &m, &key_bh);
    if (unseal(&key_hb, line, len, &counter) < 0 || counter != 0) {
        auth_failed();
        return;
    }
    have_channel = 1;
    sent_counter = received_counter = 0;
    authentic = 1;
    dispatch(line, body);
}

static void line_received(char *line, uint8_t len)
{
    if (len >= 4 && line[0] == 'P' && line[1] == 'R' && line[2] == 'O' && line[3] == 'V' && (len == 4 || line[4] == ' ')) {
        jb_prov_line(line, len, now_ms); /* takes the line apart in place */
        return;
    }
    if (state == JB_UNPROVISIONED)
        return;
    if (state == JB_CLOSED) {
        /* A late line: in version 2 an ended session's lines prove nothing. */
        if (SPEAKS == 1)
            heard_from_home();
        return;
    }
    authentic = 1;
    if (SPEAKS == 1) {
        dispatch(line, len);
        return;
    }
    if (have_channel && !is_plain(line, len)) {
        uint32_t counter;
        int16_t body = unseal(&key_hb, line, len, &counter);
        if (body < 0 || counter <= received_counter) {
            auth_failed();
            return;
        }
        received_counter = counter;
        dispatch(line, (uint8_t)body);
        return;
    }
    authentic = 0;
    if (is_plain(line, len)) {
        dispatch(line, len);
    } else {
        uint8_t n;
        if (state == JB_HELLO_SENT && verb_is(line, len, JB_S("WELCOME"), &n))
            check_welcome(line, len);
        else
            auth_failed();
    }
}

/* -------------------------------------------------------------- entry points */

/* The failsafe and the switches waiting for their time, now: called
 * before each line is handled, and by a platform whose writes can wait
 * (jb_poll, from its send loop).  It sends nothing. */
static void deadlines(void)
{
    if (state != JB_UNPROVISIONED)
        relay_timers();
}

void jb_poll(uint32_t now)
{
    advance(now);
    deadlines();
}

void jb_provision(const char *line, uint8_t len, uint32_t now)
{
    char copy[JB_MAX_LINE + 1]; /* jb_prov_line takes it apart in place */
    advance(now);
    heard_at = now_ms;
    deadlines();
    if (len > JB_MAX_LINE) {
        jb_send_text(JB_S("PROV ERR long"));
        return;
    }
    memcpy(copy, line, len);
    jb_prov_line(copy, len, now_ms);
}

void jb_receive(uint8_t byte, uint32_t at)
{
    advance(clock_fn ? clock_fn() : at);
    heard_at = (int32_t)(at - now_ms) > 0 ? now_ms : at;
    if (byte == '\n') {
        if (rx_discard) {
            rx_discard = 0;
            return;
        }
        if (rx_len && rx[rx_len - 1] == '\r')
            rx_len--;
        rx[rx_len] = 0;
        /* However many lines arrive, none holds the failsafe back. */
        deadlines();
        {
            uint8_t len = rx_len;
            rx_len = 0;
            line_received(rx, len);
        }
        return;
    }
    if (rx_discard)
        return;
    if (rx_len < JB_MAX_LINE || (rx_len == JB_MAX_LINE && byte == '\r')) {
        rx[rx_len++] = (char)byte;
        return;
    }
    /* Over-long: said at once, the rest of the line dropped, the link ended. */
    rx_len = 0;
    rx_discard = 1;
    if (state == JB_HELLO_SENT || state == JB_ACTIVE) {
        send_err(E_LONG);
        close_session(1000);
    }
}


void jb_tick(uint32_t now)
{
    advance(now);
    if (state == JB_UNPROVISIONED)
        return;
    jb_meter_collect();
    relay_timers();
    switch (state) {
    case JB_CLOSED:
        if (connectionless && restart_pending && until(restart_at) <= 0 && !failsafe_near(JB_GUARD_MS * 4))
            start_session();
        break;
    case JB_HELLO_SENT:
        /* No WELCOME within failsafe_after_s: a new session. */
        if (until(hello_deadline) <= 0)
            close_session(1000);
        break;
    case JB_ACTIVE:
        /* The heartbeat: silent for failsafe_after_s (the failsafe's own
         * instant), the session ends; a new HELLO follows. */
        if (now_ms - last_seen >= jb_cfg.failsafe_ms) {
            close_session(1000);
            break;
        }
        if (failsafe_near(JB_GUARD_MS))
            break;
        if (until(next_ping) <= 0) {
            next_ping += heartbeat_ms;
            ping_n++;
            jb_put_u32(put_str(tx, JB_S("PING ")), ping_n);
            send_tx();
        }
        if (state == JB_ACTIVE && until(next_meas) <= 0) {
            next_meas += jb_cfg.measure_ms;
            send_meas();
        }
        break;
    }
}

static void power_up(uint32_t now, uint8_t without_connection, uint8_t cold);

#ifdef __GNUC__
#define NOINLINE __attribute__((noinline))
#else
#define NOINLINE
#endif

/* The cold-load pickup delay: uniform in [min, max], from a draw that
 * differs between boards (their keys, and their ids: boards without a key
 * share the all-zero one) and between power-ups (boot, and the HELLO count
 * for a restart).  Not inlined: its buffers are off the stack before the
 * HELLO's are on it. */
static NOINLINE uint32_t draw_cold_load(void)
{
    uint8_t data[8 + JB_ID_MAX], digest[32], i, n = 8;
    uint32_t draw, span = jb_cfg.cold_max_ms - jb_cfg.cold_min_ms;
    for (i = 0; i < 4; i++) {
        data[i] = (uint8_t)(boot >> (24 - 8 * i));
        data[4 + i] = (uint8_t)(hello_count >> (24 - 8 * i));
    }
    for (i = 0; i < JB_ID_MAX && jb_cfg.id[i]; i++)
        data[n++] = (uint8_t)jb_cfg.id[i];
    hmac(jb_cfg.key, JB_S("jeisson-board cold-load\n"), data, n, digest);
    draw = ((uint32_t)digest[0] << 24) | ((uint32_t)digest[1] << 16) | ((uint32_t)digest[2] << 8) | digest[3];
    return jb_cfg.cold_min_ms + (uint32_t)(((uint64_t)draw * (span + 1)) >> 32);
}

void jb_power_up(uint32_t now, uint8_t without_connection) { power_up(now, without_connection, 1); }

/* ``cold``: a real power-up, which raises the boot counter; a software
 * restart (PROV SAVE) keeps it, and the HELLO count goes on, so that no
 * (boot, count) pair, hence no nonce, is ever used twice. */
static void power_up(uint32_t now, uint8_t without_connection, uint8_t cold)
{
    uint8_t i;
    now_ms = heard_at = now;
    answers = JB_ANSWERS;
    answer_refill = now;
    connectionless = without_connection;
    jb_power_down();
    rx_len = 0;
    rx_discard = 0;
    restart_pending = 0;
    unreported_switch = 0;
    jb_settings_load();
    if (cold) {
        boot = jb_boot_raise();
        hello_count = 0;
    }
    jb_meter_reset();
    if (!jb_is_provisioned)
        return;
    for (i = 0; i < JB_MAX_RELAYS; i++) {
        relays[i].last_switch = now; /* power-up counts as a switch */
        relays[i].settled = 0;
    }
    cold_load_ms = draw_cold_load();
    cold_load_at = now + cold_load_ms;
    cold_load_waiting = cold_load_ms > 0;
    heard_from_home();
    for (i = 0; i < jb_cfg.relays; i++)
        if (jb_cfg.relay[i].safe == JB_SAFE_ON)
            to_safe_state(i);
    state = JB_CLOSED;
    if (connectionless)
        start_session();
}

void jb_restart(uint32_t now) { power_up(now, connectionless, 0); }

void jb_connected(uint32_t now)
{
    advance(now);
    if (state == JB_CLOSED && !connectionless) {
        rx_len = 0;
        rx_discard = 0;
        start_session();
    }
}

void jb_disconnected(uint32_t now)
{
    advance(now);
    if (state == JB_HELLO_SENT || state == JB_ACTIVE) {
        have_channel = 0;
        state = JB_CLOSED;
    }
}

uint8_t jb_state(void) { return state; }
uint8_t jb_relay_count(void) { return jb_is_provisioned ? jb_cfg.relays : 0; }
uint8_t jb_relay_is_on(uint8_t index) { return relays[index].on; }
uint32_t jb_boot_count(void) { return boot; }
uint32_t jb_cold_load_delay_ms(void) { return cold_load_ms; }

/* Settings in the store, the boot counter, and provisioning over the line.
 *
 * Store layout (JB_STORE_BYTES; the Uno's 1 KiB EEPROM):
 *   0x000  boot counter, two slots (0x000, 0x008) of 4 bytes big-endian
 *          and their CRC-16, written in turn: at power-up the highest
 *          valid one is raised and written to the other slot, so a write
 *          torn by a power cut leaves the last value whole and the
 *          counter never goes down (a board from before the slots: its
 *          4 bytes at 0x000 are the start)
 *   0x010  the settings in force (jb_settings, CRC-16 at its end)
 *   0x200  the staging copy that PROV commands edit and PROV SAVE checks
 *
 * A provisioned board takes PROV commands only while jb_plat_unlocked()
 * (the Uno's jumper on D8): the line it shares with the home may be a
 * radio, and a stranger on it must not re-key or reconfigure the board.
 * An unprovisioned board has nothing to protect yet and takes them as is.
 * The grammar is in docs/firmware.rst. */
#include "jb_core.h"

#include <stddef.h>
#include <string.h>

#include "jb_platform.h"
#include "jb_rom.h"

#define ADDR_BOOT 0x000
#define ADDR_LIVE 0x010
#define ADDR_STAGE 0x200
#define LAYOUT 1

jb_settings jb_cfg;
uint8_t jb_is_provisioned;
static uint8_t stage_ready;

static uint16_t crc_of(const void *data, uint16_t n)
{
    const uint8_t *p = (const uint8_t *)data;
    uint16_t crc = 0xFFFF;
    uint8_t bit;
    while (n--) {
        crc ^= (uint16_t)(*p++ << 8);
        for (bit = 0; bit < 8; bit++)
            crc = (uint16_t)(crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1);
    }
    return crc;
}

static uint16_t crc16(const jb_settings *s) { return crc_of(s, offsetof(jb_settings, crc)); }

static void defaults(void)
{
    uint8_t i;
    memset(&jb_cfg, 0, sizeof jb_cfg);
    jb_cfg.layout = LAYOUT;
    jb_cfg.relays = 1;
    jb_cfg.vref_mv = 5000;
    jb_cfg.failsafe_ms = 15000;
    jb_cfg.measure_ms = 2000;
    jb_cfg.cold_min_ms = 5000;
    jb_cfg.cold_max_ms = 30000;
    for (i = 0; i < JB_MAX_RELAYS; i++) {
        jb_cfg.relay[i].safe = JB_SAFE_OFF;
        jb_cfg.relay[i].min_interval_ms = 2000;
        jb_cfg.relay[i].w_per_v = 6900; /* a 30 A / 1 V clamp on 230 V */
    }
}

/* What is wrong with jb_cfg, or 0. */
static const char *invalid(void)
{
    uint8_t i;
    if (jb_cfg.layout != LAYOUT)
        return JB_S("layout");
    if (jb_cfg.id[JB_ID_MAX] != 0 || !jb_id_valid(jb_cfg.id, (uint8_t)strlen(jb_cfg.id), JB_ID_MAX))
        return JB_S("id");
    if (jb_cfg.key_kind != JB_KEY_SET && jb_cfg.key_kind != JB_KEY_NONE)
        return JB_S("key");
    if (jb_cfg.relays < 1 || jb_cfg.relays > JB_MAX_RELAYS)
        return JB_S("relays");
    for (i = 0; i < jb_cfg.relays; i++)
        if (jb_cfg.relay[i].safe > JB_SAFE_HOLD || jb_cfg.relay[i].min_interval_ms > 3600000UL)
            return JB_S("relay");
    if (jb_cfg.failsafe_ms < 1000 || jb_cfg.failsafe_ms > 3600000UL)
        return JB_S("failsafe");
    if (jb_cfg.measure_ms < 500 || jb_cfg.measure_ms > 3600000UL)
        return JB_S("measure");
    if (jb_cfg.cold_min_ms > jb_cfg.cold_max_ms || jb_cfg.cold_max_ms > 3600000UL)
        return JB_S("coldload");
    if (jb_cfg.vref_mv < 1000 || jb_cfg.vref_mv > 5500)
        return JB_S("vref");
    return 0;
}

void jb_settings_load(void)
{
    jb_plat_store_read(ADDR_LIVE, &jb_cfg, sizeof jb_cfg);
    jb_is_provisioned = jb_cfg.crc == crc16(&jb_cfg) && !invalid();
    if (!jb_is_provisioned)
        defaults();
}

#define BOOT_SLOT 8 /* bytes between the slots */
static uint8_t boot_slot; /* the slot holding the counter in force */

/* Slot ``k``'s counter in *boot; 1 if its CRC holds. */
static uint8_t boot_read(uint8_t k, uint32_t *boot)
{
    uint8_t b[6];
    jb_plat_store_read((uint16_t)(ADDR_BOOT + k * BOOT_SLOT), b, 6);
    *boot = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
    return crc_of(b, 4) == ((uint16_t)b[4] << 8 | b[5]);
}

uint32_t jb_boot_raise(void)
{
    uint32_t a, b;
    uint8_t a_ok = boot_read(0, &a), b_ok = boot_read(1, &b);
    if (b_ok && (!a_ok || b > a)) {
        a = b;
        boot_slot = 1;
    } else {
        boot_slot = 0; /* A valid, or neither: A's 4 bytes as before the slots */
    }
    jb_boot_store(++a);
    return a;
}

void jb_boot_store(uint32_t boot)
{
    uint8_t b[6];
    uint16_t crc;
    b[0] = (uint8_t)(boot >> 24);
    b[1] = (uint8_t)(boot >> 16);
    b[2] = (uint8_t)(boot >> 8);
    b[3] = (uint8_t)boot;
    crc = crc_of(b, 4);
    b[4] = (uint8_t)(crc >> 8);
    b[5] = (uint8_t)crc;
    /* Never over the slot in force: a torn write spoils only the new one. */
    boot_slot ^= 1;
    jb_plat_store_write((uint16_t)(ADDR_BOOT + boot_slot * BOOT_SLOT), b, 6);
}

/* ------------------------------------------------------------ the grammar */

/* Seconds, whole or with up to 3 decimals, at most 3600: milliseconds, or
 * 0xFFFFFFFF. */
static uint32_t seconds(const char *s)
{
    uint32_t ms = 0;
    uint8_t whole = 0, decimals = 0, point = 0;
    for (; *s; s++) {
        if (*s == '.' && !point && whole) {
            point = 1;
        } else if (*s >= '0' && *s <= '9' && (point ? decimals < 3 : whole < 4)) {
            ms = ms * 10 + (uint8_t)(*s - '0');
            if (point)
                decimals++;
            else
                whole++;
        } else {
            return 0xFFFFFFFFUL;
        }
    }
    if (!whole || (point && !decimals))
        return 0xFFFFFFFFUL;
    while (decimals++ < 3)
        ms *= 10;
    return ms > 3600000UL ? 0xFFFFFFFFUL : ms;
}

static uint32_t whole(const char *s, uint32_t high)
{
    uint32_t v = 0;
    uint8_t n = 0;
    for (; *s; s++, n++) {
        if (*s < '0' || *s > '9' || n >= 6)
            return 0xFFFFFFFFUL;
        v = v * 10 + (uint8_t)(*s - '0');
    }
    return n && v <= high ? v : 0xFFFFFFFFUL;
}

static uint8_t hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return (uint8_t)(c - '0');
    if (c >= 'a' && c <= 'f')
        return (uint8_t)(c - 'a' + 10);
    return 0xFF;
}

static void stage(uint16_t offset, const void *value, uint16_t len)
{
    if (!stage_ready) {
        /* The first edit since the last save: start from what is in force. */
        jb_plat_store_write(ADDR_STAGE, &jb_cfg, sizeof jb_cfg);
        stage_ready = 1;
    }
    jb_plat_store_write((uint16_t)(ADDR_STAGE + offset), value, len);
}

#define STAGE(field, value) stage(offsetof(jb_settings, field), &(value), sizeof(value))

/* Write a ROM string. */
static void say(const char *rom)
{
    char c;
    while ((c = jb_rom_byte(rom++)) != 0)
        jb_plat_write(&c, 1);
}

static void say_ram(const char *text) { jb_plat_write(text, (uint8_t)strlen(text)); }

/* Is the word this ROM string? */
static uint8_t is(const char *word, const char *rom) { return jb_rom_eq(word, (uint8_t)strlen(word), rom); }

static void say_u32(uint32_t value)
{
    char digits[11];
    jb_put_u32(digits, value);
    say_ram(digits);
}

/* " name=" and a number. */
static void say_field(const char *rom, uint32_t value)
{
    say(rom);
    say_u32(value);
}

static const char *safe_name(uint8_t safe)
{
    return safe == JB_SAFE_ON ? JB_S("on") : safe == JB_SAFE_HOLD ? JB_S("hold") : JB_S("off");
}

static void show(void)
{
    uint8_t i;
    say(JB_S("PROV SHOW id="));
    say_ram(jb_cfg.id);
    say_field(JB_S(" provisioned="), jb_is_provisioned);
    say(JB_S(" key="));
    say(jb_cfg.key_kind == JB_KEY_SET ? JB_S("set") : jb_cfg.key_kind == JB_KEY_NONE ? JB_S("none") : JB_S("unset"));
    say_field(JB_S(" relays="), jb_cfg.relays);
    say_field(JB_S(" boot="), jb_boot_count());
    say_field(JB_S(" dropped="), jb_plat_dropped());
    say_field(JB_S("\nPROV SHOW failsafe_ms="), jb_cfg.failsafe_ms);
    say_field(JB_S(" measure_ms="), jb_cfg.measure_ms);
    say_field(JB_S(" coldload_ms="), jb_cfg.cold_min_ms);
    say_field(JB_S("-"), jb_cfg.cold_max_ms);
    say_field(JB_S(" drawn_ms="), jb_cold_load_delay_ms());
    say_field(JB_S(" vref_mv="), jb_cfg.vref_mv);
    say(JB_S("\n"));
    for (i = 0; i < jb_cfg.relays && i < JB_MAX_RELAYS; i++) {
        say_field(JB_S("PROV SHOW relay="), i + 1u);
        say(JB_S(" safe="));
        say(safe_name(jb_cfg.relay[i].safe));
        say_field(JB_S(" min_interval_ms="), jb_cfg.relay[i].min_interval_ms);
        say_field(JB_S(" w_per_v="), jb_cfg.relay[i].w_per_v);
        say(JB_S("\n"));
    }
}

static const char *save(uint32_t now)
{
    const char *error;
    if (!stage_ready)
        return JB_S("nothing");
    jb_plat_store_read(ADDR_STAGE, &jb_cfg, sizeof jb_cfg);
    error = invalid();
    if (error) {
        jb_settings_load(); /* what is in force stays */
        return error;
    }
    jb_cfg.crc = crc16(&jb_cfg);
    jb_plat_store_write(ADDR_LIVE, &jb_cfg, sizeof jb_cfg);
    stage_ready = 0;
    say(JB_S("PROV OK saved\n"));
    /* A power-up in software: relays open, the cold-load pickup drawn anew. */
    jb_restart(now);
    return 0;
}

/* One edit, or what is wrong with it. */
static const char *edit(char **w, uint8_t n)
{
    const char *verb = w[1];
    uint32_t a, b;
    uint8_t i;
    if (is(verb, JB_S("ID")) && n == 3) {
        char id[JB_ID_MAX + 1];
        uint8_t len = (uint8_t)strlen(w[2]);
        if (!jb_id_valid(w[2], len, JB_ID_MAX))
            return JB_S("id");
        memset(id, 0, sizeof id);
        memcpy(id, w[2], len);
        STAGE(id, id);
    } else if (is(verb, JB_S("KEY")) && n == 3) {
        uint8_t kind = JB_KEY_NONE, key[JB_KEY_BYTES];
        memset(key, 0, sizeof key);
        if (!is(w[2], JB_S("none"))) {
            if (strlen(w[2]) != 2 * JB_KEY_BYTES)
                return JB_S("key");
            for (i = 0; i < JB_KEY_BYTES; i++) {
                uint8_t hi = hex_digit(w[2][2 * i]), lo = hex_digit(w[2][2 * i + 1]);
                if (hi > 15 || lo > 15)
                    return JB_S("key");
                key[i] = (uint8_t)(hi << 4 | lo);
            }
            kind = JB_KEY_SET;
        }
        STAGE(key, key);
        STAGE(key_kind, kind);
    } else if (is(verb, JB_S("RELAYS")) && n == 3) {
        uint8_t count;
        a = whole(w[2], JB_MAX_RELAYS);
        if (a < 1 || a > JB_MAX_RELAYS)
            return JB_S("relays");
        count = (uint8_t)a;
        STAGE(relays, count);
    } else if (is(verb, JB_S("RELAY")) && n == 6) {
        jb_relay_settings r;
        a = whole(w[2], JB_MAX_RELAYS);
        if (a < 1 || a > JB_MAX_RELAYS)
            return JB_S("relay");
        for (r.safe = 0; r.safe <= JB_SAFE_HOLD; r.safe++)
            if (is(w[3], safe_name(r.safe)))
                break;
        r.min_interval_ms = seconds(w[4]);
        b = whole(w[5], 65535);
        if (r.safe > JB_SAFE_HOLD || r.min_interval_ms == 0xFFFFFFFFUL || b > 65535)
            return JB_S("relay");
        r.w_per_v = (uint16_t)b;
        stage((uint16_t)(offsetof(jb_settings, relay) + (a - 1) * sizeof r), &r, sizeof r);
    } else if (is(verb, JB_S("FAILSAFE")) && n == 3) {
        a = seconds(w[2]);
        if (a < 1000 || a > 3600000UL)
            return JB_S("failsafe");
        STAGE(failsafe_ms, a);
    } else if (is(verb, JB_S("MEASURE")) && n == 3) {
        a = seconds(w[2]);
        if (a < 500 || a > 3600000UL)
            return JB_S("measure");
        STAGE(measure_ms, a);
    } else if (is(verb, JB_S("COLDLOAD")) && n == 4) {
        a = seconds(w[2]);
        b = seconds(w[3]);
        if (a > 3600000UL || b > 3600000UL || a > b)
            return JB_S("coldload");
        STAGE(cold_min_ms, a);
        STAGE(cold_max_ms, b);
    } else if (is(verb, JB_S("VREF")) && n == 3) {
        uint16_t mv;
        a = whole(w[2], 5500);
        if (a < 1000 || a > 5500)
            return JB_S("vref");
        mv = (uint16_t)a;
        STAGE(vref_mv, mv);
    } else {
        return JB_S("verb");
    }
    return 0;
}

void jb_prov_line(char *copy, uint8_t len, uint32_t now)
{
    char *w[7];
    uint8_t n = 0, i;
    const char *error = 0;
    copy[len] = 0;
    for (i = 0; i < len; i++) {
        if (copy[i] == ' ') {
            copy[i] = 0;
        } else if (i == 0 || copy[i - 1] == 0) {
            if (n < 7)
                w[n] = copy + i;
            if (n < 8) /* 8: more words than any command has */
                n++;
        }
    }
    if (n > 7)
        n = 0;
    if (jb_is_provisioned && !jb_plat_unlocked()) {
        /* A stranger on the line learns nothing, and gets few answers. */
        if (jb_may_answer())
            say(JB_S("PROV ERR locked\n"));
        return;
    }
    if (n == 2 && is(w[1], JB_S("STACK"))) {
        say_field(JB_S("PROV STACK "), jb_plat_stack_unused());
        say(JB_S("\n"));
        return;
    }
    if (n == 2 && is(w[1], JB_S("SHOW"))) {
        show();
    } else if (n == 2 && is(w[1], JB_S("SAVE"))) {
        error = save(now);
        if (!error)
            return;
    } else if (n == 2 && is(w[1], JB_S("ERASE"))) {
        uint8_t gone = 0xFF;
        jb_plat_store_write(ADDR_LIVE, &gone, 1);
        stage_ready = 0;
        say(JB_S("PROV OK erased\n"));
        jb_restart(now);
        return;
    } else if (n < 2) {
        error = JB_S("verb");
    } else {
        error = edit(w, n);
    }
    if (error) {
        say(JB_S("PROV ERR "));
        say(error);
        say(JB_S("\n"));
    } else {
        say(JB_S("PROV OK\n"));
    }
}

/* Shared by the core's files; not for platforms (they use jb_board.h). */
#ifndef JB_CORE_H
#define JB_CORE_H

#include <stdint.h>

#include "jb_board.h"

#define JB_KEY_BYTES 32
#define JB_ID_MAX 16
#define JB_MAX_LINE 96

enum { JB_SAFE_OFF, JB_SAFE_ON, JB_SAFE_HOLD };
enum { JB_KEY_UNSET, JB_KEY_SET, JB_KEY_NONE };

typedef struct {
    uint8_t safe;             /* JB_SAFE_* */
    uint32_t min_interval_ms; /* min_interval_s */
    uint16_t w_per_v;         /* calibration: watts per volt RMS at the pin */
} jb_relay_settings;

/* What provisioning stores (the store's layout: jb_prov.c). */
typedef struct {
    uint8_t layout;
    char id[JB_ID_MAX + 1];
    uint8_t key_kind;
    uint8_t key[JB_KEY_BYTES];
    uint8_t relays;
    uint16_t vref_mv;
    uint32_t failsafe_ms;
    uint32_t measure_ms;
    uint32_t cold_min_ms;
    uint32_t cold_max_ms;
    jb_relay_settings relay[JB_MAX_RELAYS];
    uint16_t crc;
} jb_settings;

extern jb_settings jb_cfg;
extern uint8_t jb_is_provisioned;

/* jb_prov.c */
void jb_settings_load(void);
uint32_t jb_boot_raise(void);
void jb_boot_store(uint32_t boot);
void jb_prov_line(char *line, uint8_t len, uint32_t now);
uint8_t jb_id_valid(const char *id, uint8_t len, uint8_t max);

/* jb_board.c */
/* May the board answer a line that proves nothing (a budget)? */
uint8_t jb_may_answer(void);
void jb_send_text(const char *text);
void jb_power_down(void);
void jb_restart(uint32_t now);
char *jb_put_u32(char *out, uint32_t value);

/* jb_meter.c */
void jb_meter_reset(void);
void jb_meter_collect(void);
uint16_t jb_meter_take(uint8_t index);

#endif

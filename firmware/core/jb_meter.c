/* Metering: RMS current over whole mains cycles from raw ADC samples.
 *
 * A current clamp's burden resistor is biased at half the ADC's reference,
 * so each window's mean is the bias and the RMS is taken about it (AC RMS).
 * A window is 200 ms of samples: 10 whole cycles at 50 Hz, 12 at 60 Hz.
 * The interrupt side (jb_meter_sample) only adds integers; the main loop
 * (jb_meter_collect) turns finished windows into watts:
 *
 *     rms_mV = rms_counts * vref_mV / 1024
 *     watts  = rms_mV * w_per_v / 1000     (w_per_v: the clamp's amps per
 *                                           volt times the mains voltage)
 *
 * MEAS reports the mean of the windows finished since the last MEAS. */
#include "jb_core.h"

#include <math.h>
#include <string.h>

typedef struct {
    int32_t sum;
    uint32_t squares;
    uint16_t n;
} window;

static volatile window acc[JB_MAX_RELAYS];
static volatile window done[JB_MAX_RELAYS]; /* volatile: never read after ``ready`` is cleared */
/* One byte per channel, so that the interrupt and the loop each write it
 * atomically: set by the interrupt when ``done`` holds a window, cleared by
 * the loop once it has read it. */
static volatile uint8_t ready[JB_MAX_RELAYS];
static uint16_t window_samples = 200;
static float watt_sum[JB_MAX_RELAYS];
static uint16_t windows[JB_MAX_RELAYS];
static uint16_t last_reading[JB_MAX_RELAYS];

void jb_meter_rate(uint16_t rate_hz)
{
    window_samples = rate_hz / 5 ? rate_hz / 5 : 1;
}

void jb_meter_sample(uint8_t channel, uint16_t raw)
{
    volatile window *w;
    int16_t x;
    if (channel >= JB_MAX_RELAYS)
        return;
    w = &acc[channel];
    x = (int16_t)raw - 512;
    w->sum += x;
    w->squares += (uint32_t)((int32_t)x * x);
    if (++w->n >= window_samples) {
        if (!ready[channel]) {
            done[channel].sum = w->sum;
            done[channel].squares = w->squares;
            done[channel].n = w->n;
            ready[channel] = 1;
        }
        w->sum = 0;
        w->squares = 0;
        w->n = 0;
    }
}

void jb_meter_reset(void)
{
    memset(watt_sum, 0, sizeof watt_sum);
    memset(windows, 0, sizeof windows);
    memset(last_reading, 0, sizeof last_reading);
}

void jb_meter_collect(void)
{
    uint8_t i;
    for (i = 0; i < jb_cfg.relays; i++) {
        float mean, square;
        if (!ready[i])
            continue;
        mean = (float)done[i].sum / done[i].n;
        square = (float)done[i].squares / done[i].n - mean * mean;
        ready[i] = 0;
        if (square < 0)
            square = 0;
        watt_sum[i] += sqrtf(square) * (float)jb_cfg.vref_mv / 1024.0f * (float)jb_cfg.relay[i].w_per_v / 1000.0f;
        windows[i]++;
    }
}

uint16_t jb_meter_take(uint8_t index)
{
    if (windows[index]) {
        float w = watt_sum[index] / windows[index] + 0.5f;
        last_reading[index] = w >= 65535.0f ? 65535 : (uint16_t)w;
        watt_sum[index] = 0;
        windows[index] = 0;
    }
    return last_reading[index];
}

uint16_t jb_reading(uint8_t index) { return last_reading[index]; }

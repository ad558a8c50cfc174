/* USART0 at 9600 baud with interrupt-driven buffers, and the arrival time
 * of every LF: a line is heard when its last byte arrived, not when a busy
 * loop got round to reading it (a MAC takes milliseconds). */
#ifndef JB_UNO_UART_H
#define JB_UNO_UART_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

void uart_begin(void);
uint8_t uart_available(void);
/* The next byte; ``*at``: when it arrived if it is an LF, else unchanged. */
uint8_t uart_read(uint32_t *at);
/* Waits while the send buffer is full, calling uart_waiting() (which the
 * sketch defines: the failsafe's deadlines) meanwhile. */
void uart_write(const char *data, uint8_t len);
void uart_waiting(void);
/* Bytes dropped because the receive buffer was full. */
extern volatile uint16_t uart_dropped;

#ifdef __cplusplus
}
#endif

#endif

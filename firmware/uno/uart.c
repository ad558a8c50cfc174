/* See uart.h.  Replaces the Arduino core's HardwareSerial, which cannot
 * tell when a byte arrived. */
#include "uart.h"

#include <avr/interrupt.h>
#include <avr/io.h>

unsigned long millis(void);

#define RX_SIZE 64 /* powers of two */
#define TX_SIZE 128 /* a whole sealed line (97 bytes) without waiting */
#define LF_SIZE 8

static volatile uint8_t rx[RX_SIZE], rx_head, rx_tail;
static volatile uint8_t tx[TX_SIZE], tx_head, tx_tail;
static volatile uint32_t lf_at[LF_SIZE];
static volatile uint8_t lf_head, lf_tail;
volatile uint16_t uart_dropped;

void uart_begin(void)
{
    UCSR0A = _BV(U2X0);
    UBRR0 = F_CPU / 8 / 9600 - 1; /* 207: 9615 baud, 0.2 % fast */
    UCSR0C = _BV(UCSZ01) | _BV(UCSZ00); /* 8N1 */
    UCSR0B = _BV(RXEN0) | _BV(TXEN0) | _BV(RXCIE0);
}

ISR(USART_RX_vect)
{
    uint8_t byte = UDR0;
    uint8_t next = (rx_head + 1) & (RX_SIZE - 1);
    if (next == rx_tail || (byte == '\n' && ((lf_head + 1) & (LF_SIZE - 1)) == lf_tail)) {
        uart_dropped++;
        return;
    }
    if (byte == '\n') {
        lf_at[lf_head] = millis();
        lf_head = (lf_head + 1) & (LF_SIZE - 1);
    }
    rx[rx_head] = byte;
    rx_head = next;
}

uint8_t uart_available(void) { return rx_head != rx_tail; }

uint8_t uart_read(uint32_t *at)
{
    uint8_t byte = rx[rx_tail];
    rx_tail = (rx_tail + 1) & (RX_SIZE - 1);
    if (byte == '\n' && lf_tail != lf_head) {
        *at = lf_at[lf_tail];
        lf_tail = (lf_tail + 1) & (LF_SIZE - 1);
    }
    return byte;
}

ISR(USART_UDRE_vect)
{
    if (tx_head == tx_tail) {
        UCSR0B &= (uint8_t)~_BV(UDRIE0);
        return;
    }
    UDR0 = tx[tx_tail];
    tx_tail = (tx_tail + 1) & (TX_SIZE - 1);
}

void uart_write(const char *data, uint8_t len)
{
    while (len--) {
        uint8_t next = (tx_head + 1) & (TX_SIZE - 1);
        while (next == tx_tail)
            uart_waiting(); /* full: the interrupt drains it */
        tx[tx_head] = (uint8_t)*data++;
        tx_head = next;
        UCSR0B |= _BV(UDRIE0);
    }
}

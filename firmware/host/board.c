/* The board core as a TCP board on a POSIX host: the very C that runs on
 * the Uno, switched by a real home over TCP, for tests and for trying the
 * core without hardware.
 *
 *   jeisson-board --store FILE --home HOST:PORT [--unlocked]
 *
 * --store: the board's "EEPROM", a file of 1024 bytes (created erased);
 * --unlocked: as if the provisioning jumper were in.
 * stdin: PROV lines (docs/firmware.rst), answered on stdout.
 * stdout, one event a line: RELAY <n> <0|1> t_ms=<ms>, LINK up|down t_ms=<ms>,
 * HEARD t_ms=<ms> (each line end from the home, as it is handed to the core),
 * and the PROV answers.  Time is CLOCK_MONOTONIC in milliseconds. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "jb_board.h"
#include "jb_platform.h"

#define STORE_BYTES 1024

static uint8_t store[STORE_BYTES];
static const char *store_path;
static int sock = -1;
static int to_stdout; /* answering a PROV line from stdin */
static int unlocked;
static uint32_t next_attempt;
static unsigned failures;
static const char *home_host, *home_port;

static uint32_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint32_t)((uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u);
}

static void event(const char *text)
{
    printf("%s t_ms=%u\n", text, now_ms());
    fflush(stdout);
}

void jb_plat_write(const char *data, uint8_t len)
{
    if (to_stdout) {
        fwrite(data, 1, len, stdout);
        fflush(stdout);
        return;
    }
    while (sock >= 0 && len) {
        ssize_t n = send(sock, data, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return; /* the next read finds the link gone */
        }
        data += n;
        len = (uint8_t)(len - n);
    }
}

void jb_plat_relay(uint8_t index, uint8_t on)
{
    char text[32];
    snprintf(text, sizeof text, "RELAY %u %u", index + 1u, on);
    event(text);
}

void jb_plat_store_read(uint16_t addr, void *buf, uint16_t len)
{
    if (addr + len <= STORE_BYTES)
        memcpy(buf, store + addr, len);
}

void jb_plat_store_write(uint16_t addr, const void *buf, uint16_t len)
{
    int fd;
    if (addr + len > STORE_BYTES)
        return;
    memcpy(store + addr, buf, len);
    fd = open(store_path, O_WRONLY | O_CREAT, 0600);
    if (fd < 0 || pwrite(fd, store + addr, len, addr) != len)
        fprintf(stderr, "jeisson-board: cannot write %s: %s\n", store_path, strerror(errno));
    if (fd >= 0)
        close(fd);
}

uint8_t jb_plat_unlocked(void) { return (uint8_t)unlocked; }

static void drop(void)
{
    if (sock >= 0) {
        close(sock);
        sock = -1;
        event("LINK down");
    }
    next_attempt = now_ms() + 500;
}

void jb_plat_close(void) { drop(); }
void jb_plat_mac_mark(uint8_t on) { (void)on; }
uint16_t jb_plat_stack_unused(void) { return 0; }
uint16_t jb_plat_dropped(void) { return 0; }
uint8_t jb_plat_backstop(uint32_t at, uint8_t mask)
{
    (void)at;
    (void)mask;
    return 0; /* no interrupt: the loop alone */
}

static void connect_home(void)
{
    struct addrinfo hints, *found = NULL;
    unsigned wait = 500, i;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(home_host, home_port, &hints, &found) == 0) {
        sock = socket(found->ai_family, found->ai_socktype, found->ai_protocol);
        if (sock >= 0 && connect(sock, found->ai_addr, found->ai_addrlen) != 0) {
            close(sock);
            sock = -1;
        }
        freeaddrinfo(found);
    }
    if (sock >= 0) {
        failures = 0;
        event("LINK up");
        jb_connected(now_ms());
        return;
    }
    /* As the software actuator: 0.5 s x 1.5^n, at most 10 s, plus [0, 1) s. */
    for (i = 0; i < failures && wait < 10000; i++)
        wait = wait * 3 / 2;
    failures++;
    next_attempt = now_ms() + (wait < 10000 ? wait : 10000) + (unsigned)(rand() % 1000);
}

static void provisioning_line(char *line, size_t len)
{
    /* Its own entry: a half-received line from the home is left alone. */
    to_stdout = 1;
    jb_provision(line, (uint8_t)(len > 255 ? 255 : len), now_ms());
    to_stdout = 0;
}

static int usage(const char *why)
{
    fprintf(stderr, "jeisson-board: %s\nusage: jeisson-board --store FILE --home HOST:PORT [--unlocked]\n", why);
    return 2;
}

int main(int argc, char **argv)
{
    static char home[256], input[256];
    size_t input_len = 0;
    int i, fd;
    char *colon;
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--store") == 0 && i + 1 < argc)
            store_path = argv[++i];
        else if (strcmp(argv[i], "--home") == 0 && i + 1 < argc)
            snprintf(home, sizeof home, "%s", argv[++i]);
        else if (strcmp(argv[i], "--unlocked") == 0)
            unlocked = 1;
        else
            return usage("unknown argument");
    }
    colon = strrchr(home, ':');
    if (!store_path || !colon)
        return usage("--store and --home HOST:PORT are required");
    *colon = 0;
    home_host = home;
    home_port = colon + 1;
    memset(store, 0xFF, sizeof store);
    fd = open(store_path, O_RDONLY);
    if (fd >= 0) {
        ssize_t n = read(fd, store, sizeof store);
        close(fd);
        if (n != STORE_BYTES) {
            fprintf(stderr, "jeisson-board: %s is not a %d-byte store\n", store_path, STORE_BYTES);
            return 1;
        }
    }
    srand((unsigned)now_ms());
    jb_meter_rate(1000);
    jb_set_clock(now_ms); /* min_interval from the switch itself */
    jb_power_up(now_ms(), 0);
    event("POWER up");
    for (;;) {
        struct pollfd fds[2];
        int n = 1;
        fds[0].fd = 0;
        fds[0].events = POLLIN;
        if (sock >= 0) {
            fds[1].fd = sock;
            fds[1].events = POLLIN;
            n = 2;
        }
        if (poll(fds, (nfds_t)n, 2) < 0 && errno != EINTR)
            return 1;
        if (fds[0].revents & (POLLIN | POLLHUP)) {
            char c;
            ssize_t got = read(0, &c, 1);
            if (got <= 0)
                return 0; /* stdin closed: power off */
            if (c == '\n') {
                provisioning_line(input, input_len);
                input_len = 0;
            } else if (input_len < sizeof input) {
                input[input_len++] = c;
            }
        }
        if (n == 2 && (fds[1].revents & (POLLIN | POLLHUP | POLLERR))) {
            char buf[256];
            ssize_t got = recv(sock, buf, sizeof buf, 0);
            if (got <= 0) {
                drop();
                jb_disconnected(now_ms());
            } else {
                ssize_t k;
                for (k = 0; k < got && sock >= 0; k++) {
                    if (buf[k] == '\n')
                        event("HEARD");
                    jb_receive((uint8_t)buf[k], now_ms());
                }
            }
        }
        if (sock < 0 && jb_state() == JB_CLOSED && (int32_t)(now_ms() - next_attempt) >= 0)
            connect_home();
        jb_tick(now_ms());
    }
}

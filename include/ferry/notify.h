/*
 * The systemd notify protocol (sd_notify(3)), spoken directly: one datagram of "KEY=VALUE"
 * lines to the AF_UNIX socket named by $NOTIFY_SOCKET (a path, or "@name" for the abstract
 * namespace). No libsystemd: the protocol is a sendto(2). Without $NOTIFY_SOCKET every call is
 * a no-op, so ferryd behaves the same outside systemd.
 */
#ifndef FERRY_NOTIFY_H
#define FERRY_NOTIFY_H

#include <stdbool.h>
#include <sys/socket.h>
#include <sys/un.h>

struct notifier {
    int fd; /* -1: not under a service manager that asked */
    struct sockaddr_un addr;
    socklen_t addr_len;
};

/*
 * Read $NOTIFY_SOCKET and open a socket for it. Returns 0 (n->fd -1 when the variable is not
 * set), or -1 with errno for a variable that names no usable socket.
 */
int notify_open(struct notifier *n);

/* Send one message (lines joined with '\n'); 0, or -1 with errno (EAGAIN: try later). */
int notify_send(const struct notifier *n, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* RELOADING=1 with MONOTONIC_USEC, as Type=notify-reload expects (systemd 253). */
int notify_reloading(const struct notifier *n);

/*
 * Seconds between WATCHDOG=1 pings: half of $WATCHDOG_USEC when it is set for this process
 * ($WATCHDOG_PID unset or ours), else 0.
 */
double notify_watchdog_interval(void);

void notify_close(struct notifier *n);

#endif

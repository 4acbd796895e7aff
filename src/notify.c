/* The systemd notify protocol (notify.h): datagrams to $NOTIFY_SOCKET, no libsystemd. */
#include "config.h"

#include "ferry/notify.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int notify_open(struct notifier *n)
{
    const char *path = getenv("NOTIFY_SOCKET");
    size_t len;

    n->fd = -1;
    if (path == NULL || path[0] == '\0')
        return 0;
    len = strlen(path);
    /* A path, or '@' for the abstract namespace (sd_notify(3)); sun_path holds 108 bytes. */
    if ((path[0] != '/' && path[0] != '@') || len >= sizeof(n->addr.sun_path)) {
        errno = EINVAL;
        return -1;
    }
    memset(&n->addr, 0, sizeof(n->addr));
    n->addr.sun_family = AF_UNIX;
    memcpy(n->addr.sun_path, path, len);
    if (path[0] == '@')
        n->addr.sun_path[0] = '\0';
    n->addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + (path[0] == '/'));
    n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    return n->fd < 0 ? -1 : 0;
}

int notify_send(const struct notifier *n, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    int len;

    if (n->fd < 0)
        return 0;
    va_start(ap, fmt);
    len = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (len < 0 || (size_t)len >= sizeof(msg)) {
        errno = EMSGSIZE;
        return -1;
    }
    if (sendto(n->fd, msg, (size_t)len, MSG_NOSIGNAL, (const struct sockaddr *)&n->addr,
               n->addr_len) < 0)
        return -1;
    return 0;
}

int notify_reloading(const struct notifier *n)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return notify_send(n, "RELOADING=1\nMONOTONIC_USEC=%" PRIu64 "\nSTATUS=reloading",
                       (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u);
}

double notify_watchdog_interval(void)
{
    const char *usec = getenv("WATCHDOG_USEC"), *pid = getenv("WATCHDOG_PID");
    char *end;
    unsigned long long us;

    if (usec == NULL)
        return 0;
    if (pid != NULL && strtol(pid, NULL, 10) != (long)getpid())
        return 0;
    errno = 0;
    us = strtoull(usec, &end, 10);
    if (errno != 0 || *end != '\0' || us == 0)
        return 0;
    return (double)us / 1e6 / 2;
}

void notify_close(struct notifier *n)
{
    if (n->fd >= 0)
        close(n->fd);
    n->fd = -1;
}

/* Listening sockets for every worker (see listener.h). */
#include "config.h"

#include "ferry/listener.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ferry/log.h"

#define LISTEN_BACKLOG 1024

/*
 * Bind and listen on a (its port may be 0: the kernel picks). Returns the fd or -1.
 * TCP_NODELAY is set here because accepted sockets inherit it on Linux: the relay must not
 * add Nagle delays the endpoints did not ask for, and this saves a call per session.
 */
static int listen_on(const struct addr *a, bool reuseport)
{
    int one = 1;
    int fd = socket(addr_family(a), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0 ||
        (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) ||
        (addr_family(a) == AF_INET6 &&
         setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0) ||
        bind(fd, &a->u.sa, a->len) < 0 || listen(fd, LISTEN_BACKLOG) < 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

/* Open address a for every worker into column `col`; the first socket fixes the port. */
static int open_address(struct listener_set *ls, size_t col, const struct addr *a, size_t stride)
{
    struct addr bound = *a;
    bool reuseport = ls->nworkers > 1;

    for (unsigned w = 0; w < ls->nworkers; w++) {
        int fd = listen_on(&bound, reuseport);

        if (fd < 0)
            return -1;
        ls->fds[w * stride + col] = fd;
        if (w == 0) {
            bound.len = sizeof(bound.u);
            if (getsockname(fd, &bound.u.sa, &bound.len) < 0)
                return -1;
        }
    }
    ls->addrs[col] = bound;
    return 0;
}

/* Close column col of every worker. */
static void close_column(struct listener_set *ls, size_t col, size_t stride)
{
    for (unsigned w = 0; w < ls->nworkers; w++) {
        int *fd = &ls->fds[w * stride + col];
        if (*fd >= 0)
            close(*fd);
        *fd = -1;
    }
}

int listener_set_open(struct listener_set *ls, const struct config *cfg, unsigned nworkers,
                      char *err, size_t errlen)
{
    size_t stride = cfg->nlisten;

    memset(ls, 0, sizeof(*ls));
    ls->nworkers = nworkers;
    ls->fds = malloc(sizeof(int) * nworkers * (stride > 0 ? stride : 1));
    if (ls->fds == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < (size_t)nworkers * stride; i++)
        ls->fds[i] = -1;
    for (size_t i = 0; i < cfg->nlisten; i++) {
        char name[ADDR_STRLEN];

        ls->advertise[ls->naddrs] = cfg->listen_advertise[i];
        if (open_address(ls, ls->naddrs, &cfg->listen[i], stride) == 0) {
            ls->naddrs++;
            continue;
        }
        snprintf(err, errlen, "listen %s: %s", addr_format(&cfg->listen[i], name, sizeof(name)),
                 strerror(errno));
        close_column(ls, ls->naddrs, stride);
        /* The built-in pair may meet a host without IPv6: one is enough then. */
        if (!cfg->listen_is_default)
            goto fail;
        log_warn("%s", err);
    }
    if (ls->naddrs == 0) {
        if (cfg->nlisten == 0)
            snprintf(err, errlen, "no listen address");
        else
            snprintf(err + strlen(err), errlen - strlen(err), " (no listener could be opened)");
        goto fail;
    }
    /* Columns were filled left to right; repack rows to naddrs entries each. */
    for (unsigned w = 0; w < nworkers; w++) {
        for (size_t i = 0; i < ls->naddrs; i++)
            ls->fds[w * ls->naddrs + i] = ls->fds[w * stride + i];
    }
    return 0;

fail:
    for (size_t i = 0; i < stride; i++)
        close_column(ls, i, stride);
    free(ls->fds);
    ls->fds = NULL;
    return -1;
}

int listener_set_take(struct listener_set *ls, unsigned w, size_t i)
{
    int fd = ls->fds[w * ls->naddrs + i];

    ls->fds[w * ls->naddrs + i] = -1;
    return fd;
}

void listener_set_close(struct listener_set *ls)
{
    if (ls->fds == NULL)
        return;
    for (size_t i = 0; i < (size_t)ls->nworkers * ls->naddrs; i++) {
        if (ls->fds[i] >= 0)
            close(ls->fds[i]);
    }
    free(ls->fds);
    ls->fds = NULL;
}

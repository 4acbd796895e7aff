/* Listening sockets for every worker (see listener.h). */
#include "config.h"

#include "ferry/listener.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
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

/* A decimal number in [1, max] filling all of s, or -1. */
static long parse_positive(const char *s, long max)
{
    long v = 0;

    if (s == NULL || *s == '\0')
        return -1;
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9' || v > max / 10)
            return -1;
        v = v * 10 + (*s - '0');
    }
    return v >= 1 && v <= max ? v : -1;
}

int listener_activation_count(const char *listen_pid, const char *listen_fds, long pid, int max)
{
    long n;

    if (listen_pid == NULL || listen_fds == NULL)
        return 0;
    if (parse_positive(listen_pid, 1L << 30) != pid)
        return 0;
    if (strcmp(listen_fds, "0") == 0)
        return 0;
    n = parse_positive(listen_fds, max);
    return n < 0 ? -1 : (int)n;
}

/* The socket at fd is a listening TCP socket: set it up as listen_on does. Returns 0 or -1. */
static int adopt(int fd, const char *name, struct addr *a, char *err, size_t errlen)
{
    struct stat st;
    int type = 0, listening = 0, one = 1, flags;
    socklen_t len = sizeof(type);
    char label[LISTENER_NAME_MAX + 16];

    snprintf(label, sizeof(label), name[0] != '\0' ? "fd %d (%s)" : "fd %d", fd, name);
    if (fstat(fd, &st) < 0 || !S_ISSOCK(st.st_mode)) {
        snprintf(err, errlen, "socket activation: %s is not a socket", label);
        return -1;
    }
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 || type != SOCK_STREAM) {
        snprintf(err, errlen,
                 "socket activation: %s is not a stream socket (ferryd needs ListenStream=)",
                 label);
        return -1;
    }
    len = sizeof(listening);
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) < 0 || !listening) {
        snprintf(err, errlen, "socket activation: %s is not listening (Accept=no is needed)",
                 label);
        return -1;
    }
    a->len = sizeof(a->u);
    if (getsockname(fd, &a->u.sa, &a->len) < 0 ||
        (a->u.sa.sa_family != AF_INET && a->u.sa.sa_family != AF_INET6)) {
        snprintf(err, errlen, "socket activation: %s is not an IPv4 or IPv6 socket", label);
        return -1;
    }
    flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0 ||
        fcntl(fd, F_SETFD, FD_CLOEXEC) < 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0) {
        snprintf(err, errlen, "socket activation: %s: %s", label, strerror(errno));
        return -1;
    }
    return 0;
}

int listener_set_inherit(struct listener_set *ls, unsigned nworkers,
                         char names[][LISTENER_NAME_MAX], char *err, size_t errlen)
{
    const char *fdnames = getenv("LISTEN_FDNAMES");
    int n = listener_activation_count(getenv("LISTEN_PID"), getenv("LISTEN_FDS"), (long)getpid(),
                                      CONF_MAX_LISTEN);

    memset(ls, 0, sizeof(*ls));
    if (n < 0)
        snprintf(err, errlen,
                 "socket activation: LISTEN_FDS='%.20s' is not a count of 1 to %d sockets",
                 getenv("LISTEN_FDS"), CONF_MAX_LISTEN);
    for (int i = 0; i < n; i++) {
        const char *colon = fdnames != NULL ? strchr(fdnames, ':') : NULL;
        size_t len = fdnames == NULL ? 0
                     : colon != NULL ? (size_t)(colon - fdnames)
                                     : strlen(fdnames);

        if (len >= LISTENER_NAME_MAX)
            len = LISTENER_NAME_MAX - 1;
        memcpy(names[i], fdnames != NULL ? fdnames : "", len);
        names[i][len] = '\0';
        fdnames = colon != NULL ? colon + 1 : NULL;
    }
    /* Not for the children: a program they start must not take these for its own. */
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    if (n <= 0)
        return n;
    ls->nworkers = nworkers;
    ls->fds = malloc(sizeof(int) * nworkers * (size_t)n);
    if (ls->fds == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < (size_t)nworkers * (size_t)n; i++)
        ls->fds[i] = -1;
    ls->naddrs = (size_t)n;
    for (int i = 0; i < n; i++) {
        int fd = 3 + i;

        if (adopt(fd, names[i], &ls->addrs[i], err, errlen) < 0)
            goto fail;
        ls->fds[i] = fd;
        for (unsigned w = 1; w < nworkers; w++) {
            ls->fds[w * (size_t)n + (size_t)i] = fcntl(fd, F_DUPFD_CLOEXEC, 3 + n);
            if (ls->fds[w * (size_t)n + (size_t)i] < 0) {
                snprintf(err, errlen, "socket activation: fd %d: %s", fd, strerror(errno));
                goto fail;
            }
        }
    }
    return n;

fail:
    /* The passed sockets are ours whatever happens: close them all. */
    for (int i = 0; i < n; i++)
        close(3 + i);
    if (ls->fds != NULL) {
        for (size_t i = 0; i < (size_t)nworkers * (size_t)n; i++) {
            if (ls->fds[i] > 3 + n - 1)
                close(ls->fds[i]);
        }
    }
    free(ls->fds);
    ls->fds = NULL;
    ls->naddrs = 0;
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

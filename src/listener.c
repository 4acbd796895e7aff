/* Listening sockets for every worker (see listener.h). */
#include "config.h"

#include "ferry/listener.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
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
        ls->tunnel[ls->naddrs] = cfg->listen_tunnel[i];
        ls->protocols[ls->naddrs] = cfg->listen_protocols[i];
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
                                      LISTENER_INHERIT_MAX);
    unsigned count[CONF_MAX_LISTEN] = {0}, seen[CONF_MAX_LISTEN] = {0};
    size_t *col = NULL; /* col[i]: the address of passed socket i */
    bool failed = n < 0;

    memset(ls, 0, sizeof(*ls));
    if (n < 0) {
        snprintf(err, errlen,
                 "socket activation: LISTEN_FDS='%.20s' is not a count of 1 to %d sockets",
                 getenv("LISTEN_FDS"), LISTENER_INHERIT_MAX);
        n = 0; /* none known to be ours */
    }
    if (n > 0) {
        col = calloc((size_t)n, sizeof(*col));
        ls->fds = malloc(sizeof(int) * nworkers * CONF_MAX_LISTEN);
        if (col == NULL || ls->fds == NULL) {
            snprintf(err, errlen, "out of memory");
            failed = true;
        }
    }
    /* Group the sockets by address: several per address (one per worker of the process that
     * passed them, bound with SO_REUSEPORT) or one that every worker shares. */
    for (int i = 0; i < n && !failed; i++) {
        const char *colon = fdnames != NULL ? strchr(fdnames, ':') : NULL;
        size_t len = fdnames == NULL ? 0
                     : colon != NULL ? (size_t)(colon - fdnames)
                                     : strlen(fdnames);
        char name[LISTENER_NAME_MAX];
        struct addr a;
        size_t j;

        if (len >= LISTENER_NAME_MAX)
            len = LISTENER_NAME_MAX - 1;
        memcpy(name, fdnames != NULL ? fdnames : "", len);
        name[len] = '\0';
        fdnames = colon != NULL ? colon + 1 : NULL;
        if (adopt(3 + i, name, &a, err, errlen) < 0) {
            failed = true;
            break;
        }
        for (j = 0; j < ls->naddrs && !addr_equal(&ls->addrs[j], &a); j++)
            ;
        if (j == ls->naddrs) {
            if (ls->naddrs == CONF_MAX_LISTEN) {
                snprintf(err, errlen, "socket activation: more than %d addresses", CONF_MAX_LISTEN);
                failed = true;
                break;
            }
            ls->addrs[ls->naddrs++] = a;
            memcpy(names[j], name, len + 1);
        }
        col[i] = j;
        count[j]++;
    }
    /* Not for the children: a program they start must not take these for its own. */
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    if (failed)
        goto fail;
    if (n == 0)
        return 0;
    ls->nworkers = nworkers;
    for (size_t k = 0; k < (size_t)nworkers * ls->naddrs; k++)
        ls->fds[k] = -1;
    /* One socket per worker as far as they go; sockets beyond the workers are closed (their
     * queued connections, if any, are reset), workers beyond the sockets share them. */
    for (int i = 0; i < n; i++) {
        size_t j = col[i];
        unsigned w = seen[j]++;

        if (w < nworkers) {
            ls->fds[w * ls->naddrs + j] = 3 + i;
        } else {
            close(3 + i);
            col[i] = SIZE_MAX;
        }
    }
    for (unsigned w = 0; w < nworkers; w++) {
        for (size_t j = 0; j < ls->naddrs; j++) {
            int *fd = &ls->fds[w * ls->naddrs + j];

            if (*fd >= 0)
                continue;
            *fd = fcntl(ls->fds[(w % count[j]) * ls->naddrs + j], F_DUPFD_CLOEXEC, 3 + n);
            if (*fd < 0) {
                snprintf(err, errlen, "socket activation: %s", strerror(errno));
                goto fail;
            }
        }
    }
    for (size_t j = 0; j < ls->naddrs; j++) {
        char text[ADDR_STRLEN];

        log_info("socket activation: %s%s%s%s: %u socket%s for %u worker%s",
                 addr_format(&ls->addrs[j], text, sizeof(text)), names[j][0] != '\0' ? " (" : "",
                 names[j], names[j][0] != '\0' ? ")" : "", count[j], count[j] == 1 ? "" : "s",
                 nworkers, nworkers == 1 ? "" : "s");
    }
    free(col);
    return n;

fail:
    /* The passed sockets are ours whatever happens: close them all. */
    for (int i = 0; i < n; i++) {
        if (col == NULL || col[i] != SIZE_MAX)
            close(3 + i);
    }
    if (ls->fds != NULL && ls->nworkers > 0) {
        for (size_t k = 0; k < (size_t)nworkers * ls->naddrs; k++) {
            if (ls->fds[k] >= 3 + n)
                close(ls->fds[k]);
        }
    }
    free(col);
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

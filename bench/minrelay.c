/*
 * minrelay: the simplest SOCKS5 relay there is, as a yardstick for bench/run. CONNECT to an
 * IPv4 address without authentication, then one blocking thread per direction moving bytes
 * with recv/send through a 128 KiB buffer, or with splice(2) through a pipe (-s). No event
 * loop, no limits, no logging, no checks beyond what keeps it from misbehaving: what it
 * reaches on a machine bounds what relaying through any user-space proxy costs there.
 * Not part of ferry; a benchmark tool only.
 *
 * usage: minrelay [-s] PORT     (listens on 127.0.0.1:PORT)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CHUNK (128 * 1024)

static int use_splice;

struct direction {
    int from;
    int to;
};

struct session {
    int client;
    int target;
    struct direction up;
    struct direction down;
};

static int recv_all(int fd, unsigned char *buf, size_t len)
{
    size_t got = 0;

    while (got < len) {
        ssize_t n = recv(fd, buf + got, len - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        got += (size_t)n;
    }
    return 0;
}

static int send_all(int fd, const unsigned char *buf, size_t len)
{
    size_t sent = 0;

    while (sent < len) {
        ssize_t n = send(fd, buf + sent, len - sent, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        sent += (size_t)n;
    }
    return 0;
}

static void copy_loop(const struct direction *d)
{
    unsigned char *buf = malloc(CHUNK);

    while (buf != NULL) {
        ssize_t n = recv(d->from, buf, CHUNK, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0 || send_all(d->to, buf, (size_t)n) < 0)
            break;
    }
    free(buf);
}

static void splice_loop(const struct direction *d)
{
    int pipefd[2];

    if (pipe2(pipefd, O_CLOEXEC) < 0)
        return;
    (void)fcntl(pipefd[1], F_SETPIPE_SZ, CHUNK);
    for (;;) {
        ssize_t n = splice(d->from, NULL, pipefd[1], NULL, CHUNK, SPLICE_F_MOVE);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        while (n > 0) {
            ssize_t w = splice(pipefd[0], NULL, d->to, NULL, (size_t)n, SPLICE_F_MOVE);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                goto out;
            n -= w;
        }
    }
out:
    close(pipefd[0]);
    close(pipefd[1]);
}

/* One direction until EOF or an error, then the EOF goes on to the other side. */
static void *pump(void *arg)
{
    const struct direction *d = arg;

    if (use_splice)
        splice_loop(d);
    else
        copy_loop(d);
    shutdown(d->to, SHUT_WR);
    return NULL;
}

/* RFC 1928 without authentication, CONNECT to IPv4 only: enough for bench/loadgen. */
static int negotiate(struct session *s)
{
    static const unsigned char method_none[2] = {5, 0};
    static const unsigned char succeeded[10] = {5, 0, 0, 1, 0, 0, 0, 0, 0, 0};
    unsigned char buf[256];
    struct sockaddr_in to;
    int one = 1;

    if (recv_all(s->client, buf, 2) < 0 || buf[0] != 5 || recv_all(s->client, buf, buf[1]) < 0)
        return -1;
    if (send_all(s->client, method_none, sizeof(method_none)) < 0)
        return -1;
    if (recv_all(s->client, buf, 10) < 0 || buf[0] != 5 || buf[1] != 1 || buf[3] != 1)
        return -1;
    memset(&to, 0, sizeof(to));
    to.sin_family = AF_INET;
    memcpy(&to.sin_addr, buf + 4, 4);
    memcpy(&to.sin_port, buf + 8, 2);
    s->target = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s->target < 0)
        return -1;
    setsockopt(s->target, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(s->target, (struct sockaddr *)&to, sizeof(to)) < 0)
        return -1;
    return send_all(s->client, succeeded, sizeof(succeeded));
}

static void *session_main(void *arg)
{
    struct session *s = arg;
    pthread_t up;

    if (negotiate(s) == 0) {
        s->up = (struct direction){s->client, s->target};
        s->down = (struct direction){s->target, s->client};
        if (pthread_create(&up, NULL, pump, &s->up) == 0) {
            pump(&s->down);
            pthread_join(up, NULL);
        }
    }
    if (s->target >= 0)
        close(s->target);
    close(s->client);
    free(s);
    return NULL;
}

int main(int argc, char **argv)
{
    struct sockaddr_in addr;
    int listener, one = 1, argi = 1;
    pthread_attr_t attr;

    if (argc > argi && strcmp(argv[argi], "-s") == 0) {
        use_splice = 1;
        argi++;
    }
    if (argc != argi + 1) {
        fprintf(stderr, "usage: minrelay [-s] PORT\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)atoi(argv[argi]));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listener < 0 || setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        setsockopt(listener, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0 ||
        bind(listener, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(listener, 1024) < 0) {
        perror("minrelay: listen");
        return 1;
    }
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    for (;;) {
        struct session *s;
        pthread_t t;
        int fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC);

        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE)
                usleep(10000);
            continue;
        }
        s = calloc(1, sizeof(*s));
        if (s == NULL) {
            close(fd);
            continue;
        }
        s->client = fd;
        s->target = -1;
        if (pthread_create(&t, &attr, session_main, s) != 0) {
            close(fd);
            free(s);
        }
    }
}

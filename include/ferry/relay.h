/* TCP relay between client and target: splice(2) or buffered, back-pressure, half-close. */
#ifndef FERRY_RELAY_H
#define FERRY_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct ev_io;
struct ev_loop;
struct relay;
struct relay_pool;

enum relay_mode {
    RELAY_AUTO,     /* recv/send for small messages, the measured faster path for bulk */
    RELAY_SPLICE,   /* splice(2) wherever the kernel supports it */
    RELAY_BUFFERED, /* recv/send only */
};

/* err is 0 when both directions ended with EOF, else the errno that stopped the relay. */
typedef void (*relay_done_cb)(int err, void *arg);

enum relay_dir_index {
    RELAY_UP,   /* client -> target */
    RELAY_DOWN, /* target -> client */
};

/*
 * A bandwidth limit or quota on a relay. Before each read in a direction, allow() says how many
 * bytes it may read, at most want: 0 with *wait set pauses that direction's reads for *wait
 * seconds (no watcher runs meanwhile); -1 with errno set ends the relay with that error. After
 * a read, used() counts what was read.
 */
struct relay_throttle {
    ssize_t (*allow)(void *arg, enum relay_dir_index dir, size_t want, double *wait);
    void (*used)(void *arg, enum relay_dir_index dir, size_t n);
    void *arg;
};

/*
 * The spare pipes and buffers of one worker, and its scratch buffer: relays take them only
 * while data is in flight, and each second the spares that second did not need are given
 * back (all of them once traffic stops). One per loop; it
 * must outlive the loop's relays.
 */
struct relay_pool *relay_pool_new(struct ev_loop *loop);
void relay_pool_free(struct relay_pool *p);

/* What relay_start needs. */
struct tunnel_stream;

struct relay_params {
    struct relay_pool *pool;
    struct ev_loop *loop;
    /*
     * The caller's watcher on the client socket (the one that read the request): the relay
     * stops it and takes it over (callback, data, events) until relay_free; reusing it tells
     * libev the fd is the one it already knows, which saves an epoll_ctl.
     */
    struct ev_io *client_io;
    int target_fd;
    enum relay_mode mode;
    const uint8_t *early; /* client bytes read before the relay started, sent to the target */
    size_t early_len;     /* first (at most one relay chunk, 128 KiB) */
    bool client_eof;      /* the client already half-closed */
    bool tunnel_end;      /* the client (a tunnel session's) or the target (a ferry parent's
                           * stream) is a tunnel stream's socketpair: tunnel_relay_start */
    struct tunnel_stream *target_stream; /* the target is a ferry parent's stream with no
                                          * socketpair (target_fd -1): tunnel_relay_start */
    const struct relay_throttle *throttle; /* copied; NULL for none */
    relay_done_cb cb;                      /* runs once, from the loop */
    void *arg;
};

/*
 * Relay between two connected non-blocking sockets, which stay owned by the caller.
 * Returns NULL when out of memory.
 */
struct relay *relay_start(const struct relay_params *p);

/* Stop every watcher and free buffers and pipes; the callback will not run. */
void relay_free(struct relay *r);

/* Bytes client -> target (up) and target -> client (down). */
void relay_bytes(const struct relay *r, uint64_t *up, uint64_t *down);

/* ev_now of the last byte moved in either direction. */
double relay_last_activity(const struct relay *r);

/* Whether a direction of the relay goes through splice(2) now (metrics: the mode used). */
bool relay_splicing(const struct relay *r);

/* Whether one direction has ended (its source's EOF was read) while the other goes on. */
bool relay_half_closed(const struct relay *r);

#endif

/* TCP relay between client and target: splice(2) or buffered, back-pressure, half-close. */
#ifndef FERRY_RELAY_H
#define FERRY_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ev_loop;
struct relay;

enum relay_mode {
    RELAY_AUTO, /* splice where the kernel supports it, buffered otherwise */
    RELAY_SPLICE,
    RELAY_BUFFERED,
};

/* err is 0 when both directions ended with EOF, else the errno that stopped the relay. */
typedef void (*relay_done_cb)(int err, void *arg);

/*
 * Relay between two connected non-blocking sockets, which stay owned by the caller. `early`
 * holds client bytes read before the relay started (sent to the target first); client_eof says
 * the client already half-closed. The callback runs once, from the loop.
 */
struct relay *relay_start(struct ev_loop *loop, int client_fd, int target_fd, enum relay_mode mode,
                          const uint8_t *early, size_t early_len, bool client_eof, relay_done_cb cb,
                          void *arg);

/* Stop every watcher and free buffers and pipes; the callback will not run. */
void relay_free(struct relay *r);

/* Bytes client -> target (up) and target -> client (down). */
void relay_bytes(const struct relay *r, uint64_t *up, uint64_t *down);

/* ev_now of the last byte moved in either direction. */
double relay_last_activity(const struct relay *r);

#endif

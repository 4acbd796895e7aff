/*
 * What ferryd runs with: a parsed configuration and its users file, immutable once loaded and
 * shared by reference. Every session holds the snapshot it started under, so a reload (SIGHUP)
 * swaps in a new one for new sessions while old sessions finish under their own.
 */
#ifndef FERRY_SNAPSHOT_H
#define FERRY_SNAPSHOT_H

#include <stdatomic.h>
#include <stddef.h>

#include "ferry/conf.h"

struct auth_users;
struct tunnel_authkeys;

struct snapshot {
    atomic_uint refs;
    struct config config;
    struct auth_users *users; /* NULL when no password method is configured */
    unsigned generation;      /* 1 for the first load, +1 per successful reload */
    /* With tunnel key and authorized-keys: the server's static key pair and the client keys
     * (tunnel_keys.h), read at each load; NULL and zeros otherwise. */
    struct tunnel_authkeys *authkeys;
    uint8_t tunnel_priv[32], tunnel_pub[32];
};

/*
 * Load path (NULL: the built-in defaults) with the command line's settings ov on top (NULL:
 * none) and, when password auth is configured, its users file. Returns a snapshot holding one
 * reference, or NULL with the problem in err (config errors name file and line). warn receives a
 * warning such as an empty users file, or "".
 */
struct snapshot *snapshot_load(const char *path, const struct conf_overrides *ov, char *err,
                               size_t errlen, char *warn, size_t warnlen);

/* Take one more reference; returns s. Safe from any thread. */
struct snapshot *snapshot_ref(struct snapshot *s);

/* Drop a reference; the last one frees the snapshot. NULL is ignored. Safe from any thread. */
void snapshot_unref(struct snapshot *s);

/* True when the configuration names password authentication as a method. */
bool snapshot_uses_passwords(const struct config *cfg);

#endif

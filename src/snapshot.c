/* Reference-counted configuration snapshots (see snapshot.h). */
#include "config.h"

#include "ferry/snapshot.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/socks5.h"
#include "ferry/auth_users.h"
#include "ferry/policy.h"
#include "ferry/tunnel_keys.h"
#include "ferry/tunnel_noise.h"

#include <sodium.h>

/* The tunnel listener's keys: the private key file (refused when others may read it) and the
 * authorized-keys file. */
static int snapshot_load_tunnel(struct snapshot *s, char *err, size_t errlen)
{
    const struct config *c = &s->config;

    if (c->tunnel_key_file != NULL) {
        if (tunnel_key_load_private(c->tunnel_key_file, s->tunnel_priv, err, errlen) < 0)
            return -1;
        if (tunnel_public_key(s->tunnel_priv, s->tunnel_pub) < 0) {
            snprintf(err, errlen, "%s: not a usable key", c->tunnel_key_file);
            return -1;
        }
    }
    if (c->tunnel_authkeys_file != NULL) {
        s->authkeys = tunnel_authkeys_load(c->tunnel_authkeys_file, err, errlen);
        if (s->authkeys == NULL)
            return -1;
    }
    return 0;
}

bool snapshot_uses_passwords(const struct config *cfg)
{
    for (size_t i = 0; i < cfg->nmethods; i++) {
        if (cfg->methods[i] == SOCKS5_METHOD_USERPASS)
            return true;
    }
    return false;
}

struct snapshot *snapshot_load(const char *path, const struct conf_overrides *ov, char *err,
                               size_t errlen, char *warn, size_t warnlen)
{
    struct snapshot *s = calloc(1, sizeof(*s));
    unsigned wide;

    if (warnlen > 0)
        warn[0] = '\0';
    if (s == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (path == NULL && ov == NULL) {
        conf_defaults(&s->config);
    } else if (conf_load_with(&s->config, path, ov, err, errlen) < 0) {
        free(s);
        return NULL;
    }
    if (snapshot_uses_passwords(&s->config)) {
        s->users = auth_users_load(s->config.users_file, err, errlen, warn, warnlen);
        if (s->users == NULL) {
            conf_release(&s->config);
            free(s);
            return NULL;
        }
        if (auth_users_count(s->users) == 0 && (warnlen == 0 || warn[0] == '\0'))
            snprintf(warn, warnlen, "%s has no users: every login will fail", s->config.users_file);
    }
    if (snapshot_load_tunnel(s, err, errlen) < 0) {
        sodium_memzero(s->tunnel_priv, sizeof(s->tunnel_priv));
        auth_users_free(s->users);
        conf_release(&s->config);
        free(s);
        return NULL;
    }
    wide = policy_wide_pass_line(&s->config);
    if (wide != 0 && warnlen > 0) {
        size_t used = strlen(warn);

        snprintf(warn + used, warnlen - used,
                 "%s%s:%u: this request pass rule's 'to' range holds private destinations "
                 "(loopback, RFC 1918, link-local, ...) and does not open them: name the "
                 "private range itself (to 10.0.0.0/8) or add 'private'",
                 used > 0 ? "; " : "", path != NULL ? path : "-", wide);
    }
    atomic_init(&s->refs, 1);
    s->generation = 1;
    return s;
}

struct snapshot *snapshot_ref(struct snapshot *s)
{
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    return s;
}

void snapshot_unref(struct snapshot *s)
{
    if (s == NULL)
        return;
    if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
        return;
    auth_users_free(s->users);
    tunnel_authkeys_free(s->authkeys);
    sodium_memzero(s->tunnel_priv, sizeof(s->tunnel_priv));
    conf_release(&s->config);
    free(s);
}

/* Recently verified logins (see auth_cache.h). */
#include "config.h"

#include "ferry/auth_cache.h"

#include <pthread.h>
#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct auth_cache_slot {
    uint8_t hash[AUTH_CACHE_KEY_LEN];
    unsigned generation; /* 0: empty */
    double expires;
};

struct auth_cache {
    uint8_t key[crypto_generichash_KEYBYTES]; /* set once at creation */
    pthread_mutex_t lock;                     /* guards slots */
    size_t mask;
    struct auth_cache_slot *slots;
};

struct auth_cache *auth_cache_new(size_t slots)
{
    struct auth_cache *c = calloc(1, sizeof(*c));
    size_t n = 1;

    if (c == NULL)
        return NULL;
    while (n < slots && n < ((size_t)1 << 20))
        n <<= 1;
    c->slots = calloc(n, sizeof(*c->slots));
    if (c->slots == NULL) {
        free(c);
        return NULL;
    }
    c->mask = n - 1;
    pthread_mutex_init(&c->lock, NULL);
    randombytes_buf(c->key, sizeof(c->key));
    return c;
}

void auth_cache_free(struct auth_cache *c)
{
    if (c == NULL)
        return;
    sodium_memzero(c->slots, (c->mask + 1) * sizeof(*c->slots));
    sodium_memzero(c->key, sizeof(c->key));
    pthread_mutex_destroy(&c->lock);
    free(c->slots);
    free(c);
}

/* BLAKE2b keyed with the process's secret over len(user) || user || password. */
void auth_cache_key(const struct auth_cache *c, const char *user, size_t user_len,
                    const char *password, size_t pass_len, unsigned char key[AUTH_CACHE_KEY_LEN])
{
    crypto_generichash_state st;
    uint8_t ulen = (uint8_t)(user_len > 255 ? 255 : user_len);

    crypto_generichash_init(&st, c->key, sizeof(c->key), AUTH_CACHE_KEY_LEN);
    crypto_generichash_update(&st, &ulen, 1);
    crypto_generichash_update(&st, (const unsigned char *)user, user_len);
    crypto_generichash_update(&st, (const unsigned char *)password, pass_len);
    crypto_generichash_final(&st, key, AUTH_CACHE_KEY_LEN);
    sodium_memzero(&st, sizeof(st));
}

static struct auth_cache_slot *slot_of(const struct auth_cache *c, const unsigned char *key)
{
    uint32_t h;

    memcpy(&h, key, sizeof(h));
    return &c->slots[h & c->mask];
}

bool auth_cache_check(struct auth_cache *c, const unsigned char key[AUTH_CACHE_KEY_LEN],
                      unsigned generation, double now)
{
    const struct auth_cache_slot *s;
    bool hit;

    if (c == NULL || generation == 0)
        return false;
    pthread_mutex_lock(&c->lock);
    s = slot_of(c, key);
    hit = s->generation == generation && now < s->expires &&
          sodium_memcmp(s->hash, key, AUTH_CACHE_KEY_LEN) == 0;
    pthread_mutex_unlock(&c->lock);
    return hit;
}

void auth_cache_put(struct auth_cache *c, const unsigned char key[AUTH_CACHE_KEY_LEN],
                    unsigned generation, double now, double ttl)
{
    struct auth_cache_slot *s;

    if (c == NULL || ttl <= 0 || generation == 0)
        return;
    pthread_mutex_lock(&c->lock);
    s = slot_of(c, key);
    memcpy(s->hash, key, AUTH_CACHE_KEY_LEN);
    s->generation = generation;
    s->expires = now + ttl;
    pthread_mutex_unlock(&c->lock);
}

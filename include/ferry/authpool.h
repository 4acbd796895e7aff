/* Password verification off the loop: a few threads run crypto_pwhash_str_verify. */
#ifndef FERRY_AUTHPOOL_H
#define FERRY_AUTHPOOL_H

#include <stdbool.h>
#include <stddef.h>

struct ev_loop;
struct authpool;
struct auth_job;

/* ok is true when the password matched. Runs on the loop thread. */
typedef void (*authpool_cb)(bool ok, void *arg);

/* Start `threads` verifier threads posting results to `loop` through an ev_async. */
struct authpool *authpool_new(struct ev_loop *loop, unsigned threads);

/* Stop and join the threads; pending jobs are dropped without callbacks. */
void authpool_free(struct authpool *p);

/*
 * Verify password (len bytes) against hash. hash NULL means an unknown user: a dummy hash with
 * the same cost is verified so the answer takes as long, and ok is false. The password is
 * copied and wiped after use. Returns NULL with errno set when the job cannot be queued.
 */
struct auth_job *authpool_verify(struct authpool *p, const char *hash, const char *password,
                                 size_t len, authpool_cb cb, void *arg);

/* The callback of job will not run; the pool frees it. */
void authpool_cancel(struct auth_job *job);

#endif

/* Password verification off the loop: a few threads run crypto_pwhash_str_verify. */
#ifndef FERRY_AUTH_POOL_H
#define FERRY_AUTH_POOL_H

#include <stdbool.h>
#include <stddef.h>

struct ev_loop;
struct auth_pool;
struct auth_job;

/* ok is true when the password matched. Runs on the loop thread. */
typedef void (*auth_pool_cb)(bool ok, void *arg);

/*
 * Start `threads` verifier threads posting results to `loop` through an ev_async. Every pool
 * of the process shares one gate: at most `threads` (the largest any pool was started with)
 * verifications run at once in the whole process, which bounds Argon2id's memory.
 */
struct auth_pool *auth_pool_new(struct ev_loop *loop, unsigned threads);

/* Stop and join the threads; pending jobs are dropped without callbacks. */
void auth_pool_free(struct auth_pool *p);

/*
 * Verify password (len bytes) against hash. hash NULL means an unknown user: a dummy hash with
 * the same cost is verified so the answer takes as long, and ok is false. The password is
 * copied and wiped after use. Returns NULL with errno set when the job cannot be queued:
 * EAGAIN when the process already has 4 jobs waiting per run allowed at once (answer at once
 * rather than after a long wait), ENOMEM.
 */
struct auth_job *auth_pool_verify(struct auth_pool *p, const char *hash, const char *password,
                                  size_t len, auth_pool_cb cb, void *arg);

/* For tests: verifications started in the whole process so far, and the most at once. */
void auth_pool_gate_stats(unsigned long *runs, unsigned *peak);

/* The callback of job will not run; the pool frees it. */
void auth_pool_cancel(struct auth_job *job);

#endif

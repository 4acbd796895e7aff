/*
 * Password verification off the loop. Argon2id costs tens of milliseconds and tens of megabytes
 * by design, so a few threads run crypto_pwhash_str_verify and hand results back to the loop
 * through one ev_async. Jobs belong to the pool from auth_pool_verify until freed on the loop
 * thread; a session that goes away only marks its job cancelled.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include <ev.h>
#include <sodium.h>

#include "ferry/auth_pool.h"

/* Jobs in the pool at once (queued, running or waiting for the loop); more get EAGAIN. */
#define AUTH_POOL_MAX_JOBS 1024
#define AUTH_POOL_MAX_THREADS 64
/*
 * Jobs waiting for a run in the whole process, per run allowed at once: past it a new job gets
 * EAGAIN at once. Four runs' time (well under a second with ferry-passwd's cost) is the
 * longest a queued login waits behind others.
 */
#define AUTH_POOL_QUEUE_PER_RUN 4

/*
 * The process's Argon2id gate: every pool (one per worker) runs at most `max` verifications
 * at once together, so memory in flight is max x the hash's memory (64 MiB for ferry-passwd's
 * hashes) however many workers there are. max is the largest thread count of any pool.
 */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t free;
    unsigned max;
    unsigned running;
    unsigned peak;      /* most running at once, ever */
    size_t waiting;     /* jobs in any pool not yet running (queued, or at the gate) */
    unsigned long runs; /* verifications started, ever */
} gate = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, 0, 0};

/* A queued job will not run: skipped when cancelled, or freed with its pool. */
static void gate_unqueue(void)
{
    pthread_mutex_lock(&gate.lock);
    if (gate.waiting > 0)
        gate.waiting--;
    pthread_mutex_unlock(&gate.lock);
}

/* Wait for a run's turn; the job stops waiting then. */
static void gate_enter(void)
{
    pthread_mutex_lock(&gate.lock);
    while (gate.running >= gate.max)
        pthread_cond_wait(&gate.free, &gate.lock);
    if (gate.waiting > 0)
        gate.waiting--;
    gate.running++;
    gate.runs++;
    if (gate.running > gate.peak)
        gate.peak = gate.running;
    pthread_mutex_unlock(&gate.lock);
}

static void gate_leave(void)
{
    pthread_mutex_lock(&gate.lock);
    gate.running--;
    pthread_cond_signal(&gate.free);
    pthread_mutex_unlock(&gate.lock);
}

struct auth_job {
    struct auth_job *next;
    struct auth_pool *pool;
    auth_pool_cb cb;
    void *arg;
    bool cancelled; /* written on the loop thread under the lock, read by workers under it */
    bool ok;
    bool dummy; /* unknown user: verify the dummy hash, answer false */
    size_t len;
    char hash[crypto_pwhash_STRBYTES];
    char *password; /* len bytes, wiped before free */
};

/* A FIFO of jobs linked through next. */
struct job_list {
    struct auth_job *head;
    struct auth_job *tail;
};

struct auth_pool {
    struct ev_loop *loop;
    ev_async async;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    struct job_list queued; /* waiting for a thread */
    struct job_list done;   /* verified (or skipped when cancelled), waiting for the loop */
    bool stopping;
    size_t njobs; /* every job not yet freed; touched only on the loop thread */
    pthread_t threads[AUTH_POOL_MAX_THREADS];
    unsigned nthreads;
};

/*
 * A hash of a random secret at the cost of ferry-passwd's, checked for unknown users so they
 * take as long as known ones. One per process, made on first use on a pool thread (a few
 * hundred milliseconds and 64 MiB once; nothing at startup).
 */
static char dummy_hash_str[crypto_pwhash_STRBYTES];
static pthread_once_t dummy_once = PTHREAD_ONCE_INIT;

static void dummy_hash_make(void)
{
    unsigned char secret[32];

    randombytes_buf(secret, sizeof(secret));
    if (crypto_pwhash_str(dummy_hash_str, (const char *)secret, sizeof(secret),
                          crypto_pwhash_OPSLIMIT_INTERACTIVE,
                          crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0)
        dummy_hash_str[0] = '\0'; /* out of memory: verification of it fails, as it should */
    sodium_memzero(secret, sizeof(secret));
}

static const char *dummy_hash(void)
{
    pthread_once(&dummy_once, dummy_hash_make);
    return dummy_hash_str;
}

static void list_push(struct job_list *l, struct auth_job *j)
{
    j->next = NULL;
    if (l->tail != NULL)
        l->tail->next = j;
    else
        l->head = j;
    l->tail = j;
}

static struct auth_job *list_pop(struct job_list *l)
{
    struct auth_job *j = l->head;

    if (j != NULL) {
        l->head = j->next;
        if (l->head == NULL)
            l->tail = NULL;
        j->next = NULL;
    }
    return j;
}

static void job_free(struct auth_job *j)
{
    sodium_memzero(j->password, j->len);
    free(j->password);
    sodium_memzero(j, sizeof(*j));
    free(j);
}

static void *worker_main(void *arg)
{
    struct auth_pool *p = arg;

    pthread_mutex_lock(&p->lock);
    for (;;) {
        struct auth_job *j;

        while (!p->stopping && p->queued.head == NULL)
            pthread_cond_wait(&p->wake, &p->lock);
        if (p->stopping)
            break;
        j = list_pop(&p->queued);
        if (j->cancelled) {
            gate_unqueue();
        } else {
            const char *hash = j->dummy ? dummy_hash() : j->hash;
            bool match = false, run;

            pthread_mutex_unlock(&p->lock);
            gate_enter();
            /* Cancelled while this thread waited for the gate: no run needed after all. */
            pthread_mutex_lock(&p->lock);
            run = !j->cancelled;
            pthread_mutex_unlock(&p->lock);
            if (run)
                match = crypto_pwhash_str_verify(hash, j->password, j->len) == 0;
            gate_leave();
            sodium_memzero(j->password, j->len);
            pthread_mutex_lock(&p->lock);
            j->ok = match && !j->dummy;
        }
        list_push(&p->done, j);
        ev_async_send(p->loop, &p->async);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* The loop's side: take every finished job, run the callbacks of those not cancelled. */
static void async_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    struct auth_pool *p = w->data;
    struct auth_job *j;
    struct job_list done;

    pthread_mutex_lock(&p->lock);
    done = p->done;
    p->done.head = p->done.tail = NULL;
    pthread_mutex_unlock(&p->lock);

    /* A callback may cancel a job later in this list: cancelled is re-read for each. */
    while ((j = list_pop(&done)) != NULL) {
        bool cancelled, ok = j->ok;
        auth_pool_cb cb = j->cb;
        void *arg = j->arg;

        /* Written only on this thread (auth_pool_cancel), so no lock is needed to read it. */
        cancelled = j->cancelled;
        job_free(j);
        /* While jobs are out the pool holds a reference on the loop; drop it with the last. */
        if (--p->njobs == 0)
            ev_unref(p->loop);
        if (!cancelled)
            cb(ok, arg);
    }
}

struct auth_pool *auth_pool_new(struct ev_loop *loop, unsigned threads)
{
    struct auth_pool *p;
    sigset_t all, old;

    if (threads < 1 || threads > AUTH_POOL_MAX_THREADS) {
        errno = EINVAL;
        return NULL;
    }
    if (sodium_init() < 0) {
        errno = ENOSYS;
        return NULL;
    }
    p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    p->loop = loop;
    pthread_mutex_lock(&gate.lock);
    if (threads > gate.max)
        gate.max = threads;
    pthread_mutex_unlock(&gate.lock);

    if (pthread_mutex_init(&p->lock, NULL) != 0) {
        free(p);
        errno = ENOMEM;
        return NULL;
    }
    if (pthread_cond_init(&p->wake, NULL) != 0) {
        pthread_mutex_destroy(&p->lock);
        free(p);
        errno = ENOMEM;
        return NULL;
    }
    ev_async_init(&p->async, async_cb);
    p->async.data = p;
    ev_async_start(loop, &p->async);
    ev_unref(loop); /* an idle pool does not keep the loop running */

    /* Workers never take signals: the loop thread handles them. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    for (; p->nthreads < threads; p->nthreads++) {
        int e = pthread_create(&p->threads[p->nthreads], NULL, worker_main, p);
        if (e != 0) {
            pthread_sigmask(SIG_SETMASK, &old, NULL);
            auth_pool_free(p);
            errno = e;
            return NULL;
        }
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return p;
}

void auth_pool_free(struct auth_pool *p)
{
    struct auth_job *j;

    if (p == NULL)
        return;
    pthread_mutex_lock(&p->lock);
    p->stopping = true;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    for (unsigned i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);

    while ((j = list_pop(&p->queued)) != NULL) {
        gate_unqueue();
        job_free(j);
    }
    while ((j = list_pop(&p->done)) != NULL)
        job_free(j);
    /* libev wants the reference back before an unref'd watcher stops. */
    if (p->njobs == 0)
        ev_ref(p->loop);
    ev_async_stop(p->loop, &p->async);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->lock);
    sodium_memzero(p, sizeof(*p));
    free(p);
}

struct auth_job *auth_pool_verify(struct auth_pool *p, const char *hash, const char *password,
                                  size_t len, auth_pool_cb cb, void *arg)
{
    struct auth_job *j;

    if (p == NULL || cb == NULL || (password == NULL && len > 0)) {
        errno = EINVAL;
        return NULL;
    }
    if (p->njobs >= AUTH_POOL_MAX_JOBS) {
        errno = EAGAIN;
        return NULL;
    }
    pthread_mutex_lock(&gate.lock);
    if (gate.waiting >= (size_t)AUTH_POOL_QUEUE_PER_RUN * gate.max) {
        pthread_mutex_unlock(&gate.lock);
        errno = EAGAIN;
        return NULL;
    }
    gate.waiting++;
    pthread_mutex_unlock(&gate.lock);
    j = calloc(1, sizeof(*j));
    if (j == NULL) {
        gate_unqueue();
        return NULL;
    }
    j->password = malloc(len > 0 ? len : 1);
    if (j->password == NULL) {
        free(j);
        gate_unqueue();
        return NULL;
    }
    if (len > 0)
        memcpy(j->password, password, len);
    j->len = len;
    j->pool = p;
    j->cb = cb;
    j->arg = arg;
    /* A hash too long to be ours is treated as an unknown user: same time, answer false. */
    if (hash == NULL || strlen(hash) >= sizeof(j->hash))
        j->dummy = true;
    else
        memcpy(j->hash, hash, strlen(hash) + 1);

    if (p->njobs++ == 0)
        ev_ref(p->loop);
    pthread_mutex_lock(&p->lock);
    list_push(&p->queued, j);
    pthread_cond_signal(&p->wake);
    pthread_mutex_unlock(&p->lock);
    return j;
}

void auth_pool_gate_stats(unsigned long *runs, unsigned *peak)
{
    pthread_mutex_lock(&gate.lock);
    *runs = gate.runs;
    *peak = gate.peak;
    pthread_mutex_unlock(&gate.lock);
}

/* Valid until the callback has run; after that the job is gone and must not be cancelled. */
/*
 * A job still waiting for a thread leaves the queue at once (and its place in the process's
 * gate), so that cancelled logins hold no room; the loop frees it with the answered ones. A
 * job a thread has taken finishes its run and is dropped when it comes back.
 */
void auth_pool_cancel(struct auth_job *job)
{
    struct auth_pool *p;

    if (job == NULL)
        return;
    p = job->pool;
    pthread_mutex_lock(&p->lock);
    job->cancelled = true;
    for (struct auth_job **link = &p->queued.head, *prev = NULL; *link != NULL;
         prev = *link, link = &(*link)->next) {
        if (*link != job)
            continue;
        *link = job->next;
        if (p->queued.tail == job)
            p->queued.tail = prev;
        gate_unqueue();
        list_push(&p->done, job);
        ev_async_send(p->loop, &p->async);
        break;
    }
    pthread_mutex_unlock(&p->lock);
}

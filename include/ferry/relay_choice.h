/*
 * relay auto's choice for bulk transfers: copy through a buffer (recv/send) or splice(2).
 * Which one moves a bulk stream faster depends on the machine (bench/README has figures), so
 * a worker measures it on a real transfer: the first bulk direction it sees takes turns, copy
 * then splice, RELAY_TRIAL_PHASES phases of RELAY_TRIAL_BYTES each, and the path that took
 * less time wins, splice on a near tie (it costs the server less CPU). Only the bytes after
 * the first RELAY_TRIAL_SETTLE of a phase are timed: splice starts fast and slows down as
 * the pages it holds make the sender allocate new ones, so a short sample favours it. The
 * verdict holds for RELAY_CHOICE_TTL, then the next bulk direction measures again.
 *
 * Pure: the caller passes the time and the bytes the measured direction has moved.
 */
#ifndef FERRY_RELAY_CHOICE_H
#define FERRY_RELAY_CHOICE_H

#include <stdbool.h>
#include <stdint.h>

#define RELAY_TRIAL_PHASES 6                  /* copy, splice, copy, splice, ... */
#define RELAY_TRIAL_BYTES (32u * 1024 * 1024) /* per phase */
#define RELAY_TRIAL_SETTLE (8u * 1024 * 1024) /* the untimed start of a phase */
#define RELAY_TRIAL_PHASE_MAX 1.0             /* s: a slower phase abandons the trial */
#define RELAY_TRIAL_MARGIN 0.05               /* splice wins unless copying is this much faster */
#define RELAY_CHOICE_TTL 60.0                 /* s */

enum relay_path {
    RELAY_PATH_COPY,
    RELAY_PATH_SPLICE,
};

enum relay_choice_step {
    RELAY_CHOICE_GO_ON,     /* stay on the path */
    RELAY_CHOICE_SWITCH,    /* a new phase: take *path now */
    RELAY_CHOICE_DECIDED,   /* the trial is over: *path is the verdict */
    RELAY_CHOICE_ABANDONED, /* the transfer was too slow to tell (or stopped): no verdict */
};

struct relay_choice {
    /* The verdict, when known, and the rates it came from (bytes/s, for the log). */
    bool known;
    uint8_t path; /* enum relay_path */
    double decided;
    double rate[2]; /* per enum relay_path */
    /* The trial, while one runs. */
    bool trying;
    uint8_t phase; /* even: copy, odd: splice */
    double phase_start;
    uint64_t phase_from; /* the direction's byte count when the phase began */
    double timed_start;  /* < 0 until RELAY_TRIAL_SETTLE bytes of the phase are through */
    uint64_t timed_from;
    double spent[2];   /* timed seconds per path over the phases so far */
    uint64_t moved[2]; /* timed bytes per path */
};

/* True when a new bulk direction should be measured: no fresh verdict and no trial running
 * (a trial whose phase has outlived RELAY_TRIAL_PHASE_MAX is abandoned here). */
bool relay_choice_due(struct relay_choice *c, double now);

/* Start a trial on a direction that has moved `bytes` so far and now copies (phase 0). */
void relay_choice_begin(struct relay_choice *c, double now, uint64_t bytes);

/* The measured direction has moved `bytes` in all by now: what it should do. */
enum relay_choice_step relay_choice_note(struct relay_choice *c, double now, uint64_t bytes,
                                         enum relay_path *path);

/* End the running trial without a verdict (its direction ended or cannot splice). */
void relay_choice_abandon(struct relay_choice *c);

/* The path for a bulk direction while no trial is due: the verdict, or copy when none yet. */
enum relay_path relay_choice_path(const struct relay_choice *c);

/* Bytes per second the path moved in the trial that gave the verdict (0 before one). */
double relay_choice_rate(const struct relay_choice *c, enum relay_path path);

#endif

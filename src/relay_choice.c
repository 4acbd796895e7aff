/* relay auto's measured choice between copying and splicing bulk transfers: see relay_choice.h. */
#include "config.h"

#include "ferry/relay_choice.h"

static enum relay_path phase_path(unsigned phase)
{
    return phase % 2 == 0 ? RELAY_PATH_COPY : RELAY_PATH_SPLICE;
}

bool relay_choice_due(struct relay_choice *c, double now)
{
    if (c->trying && now - c->phase_start > RELAY_TRIAL_PHASE_MAX)
        relay_choice_abandon(c);
    if (c->trying)
        return false;
    return !c->known || now - c->decided > RELAY_CHOICE_TTL;
}

static void phase_begin(struct relay_choice *c, unsigned phase, double now, uint64_t bytes)
{
    c->phase = (uint8_t)phase;
    c->phase_start = now;
    c->phase_from = bytes;
    c->timed_start = -1;
}

void relay_choice_begin(struct relay_choice *c, double now, uint64_t bytes)
{
    c->trying = true;
    phase_begin(c, 0, now, bytes);
    c->spent[0] = c->spent[1] = 0;
    c->moved[0] = c->moved[1] = 0;
}

void relay_choice_abandon(struct relay_choice *c)
{
    c->trying = false;
}

/* The trial's last phase is over: the faster path wins, splice on a near tie. */
static enum relay_path decide(struct relay_choice *c, double now)
{
    double copy = (double)c->moved[RELAY_PATH_COPY] / c->spent[RELAY_PATH_COPY];
    double splice = (double)c->moved[RELAY_PATH_SPLICE] / c->spent[RELAY_PATH_SPLICE];

    c->trying = false;
    c->known = true;
    c->decided = now;
    c->rate[RELAY_PATH_COPY] = copy;
    c->rate[RELAY_PATH_SPLICE] = splice;
    c->path = copy > splice * (1 + RELAY_TRIAL_MARGIN) ? RELAY_PATH_COPY : RELAY_PATH_SPLICE;
    return (enum relay_path)c->path;
}

enum relay_choice_step relay_choice_note(struct relay_choice *c, double now, uint64_t bytes,
                                         enum relay_path *path)
{
    enum relay_path p = phase_path(c->phase);
    double timed;

    *path = p;
    if (!c->trying)
        return RELAY_CHOICE_ABANDONED;
    if (now - c->phase_start > RELAY_TRIAL_PHASE_MAX) {
        relay_choice_abandon(c);
        return RELAY_CHOICE_ABANDONED;
    }
    if (c->timed_start < 0) {
        if (bytes - c->phase_from >= RELAY_TRIAL_SETTLE) {
            c->timed_start = now;
            c->timed_from = bytes;
        }
        return RELAY_CHOICE_GO_ON;
    }
    if (bytes - c->phase_from < RELAY_TRIAL_BYTES)
        return RELAY_CHOICE_GO_ON;
    timed = now - c->timed_start;
    if (timed <= 0) {
        /* The clock did not move over a whole phase: too coarse to measure anything. */
        relay_choice_abandon(c);
        return RELAY_CHOICE_ABANDONED;
    }
    c->spent[p] += timed;
    c->moved[p] += bytes - c->timed_from;
    if (c->phase + 1 == RELAY_TRIAL_PHASES) {
        *path = decide(c, now);
        return RELAY_CHOICE_DECIDED;
    }
    phase_begin(c, c->phase + 1u, now, bytes);
    *path = phase_path(c->phase);
    return RELAY_CHOICE_SWITCH;
}

enum relay_path relay_choice_path(const struct relay_choice *c)
{
    return c->known ? (enum relay_path)c->path : RELAY_PATH_COPY;
}

double relay_choice_rate(const struct relay_choice *c, enum relay_path path)
{
    return c->rate[path];
}

/*
 * Dropping root once the listeners are open: the user and group to run as (user, group in
 * ferryd.conf), looked up at start, then supplementary groups, gid and uid changed and
 * no_new_privs set, and the drop checked.
 */
#ifndef FERRY_PRIVDROP_H
#define FERRY_PRIVDROP_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct privdrop {
    bool wanted; /* a user to run as was named */
    uid_t uid;
    gid_t gid;
    char user[256];
    char group[256];
};

/*
 * Look up user (NULL: no drop) and group (NULL: the user's primary group). Returns 0, or -1
 * with "user NAME: no such user" style messages in err.
 */
int privdrop_lookup(struct privdrop *pd, const char *user, const char *group, char *err,
                    size_t errlen);

/*
 * Become pd's user and group (when not that already) and set no_new_privs; then check that
 * root cannot be had back. Must run before any thread starts (no_new_privs is per thread and
 * inherited). Returns 0, or -1 with the problem in err.
 */
int privdrop_apply(const struct privdrop *pd, char *err, size_t errlen);

/*
 * After the drop: path must stay readable for reloads. Returns 0, or -1 with a message naming
 * the file, the user and the ownership needed.
 */
int privdrop_check_readable(const struct privdrop *pd, const char *path, const char *what,
                            char *err, size_t errlen);

#endif

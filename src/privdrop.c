/* Dropping root after binding (see privdrop.h). */
#include "config.h"

#include "ferry/privdrop.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

/* getpwnam_r/getgrnam_r want a buffer; this fits any sane entry and retries bigger once. */
#define NSS_BUF 16384

int privdrop_lookup(struct privdrop *pd, const char *user, const char *group, char *err,
                    size_t errlen)
{
    char *buf = malloc(NSS_BUF);
    struct passwd pw, *pwp = NULL;
    struct group gr, *grp = NULL;
    int rc;

    memset(pd, 0, sizeof(*pd));
    if (user == NULL && group == NULL) {
        free(buf);
        return 0;
    }
    if (buf == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (user == NULL) {
        snprintf(err, errlen, "group %s needs user (the user to run as)", group);
        goto fail;
    }
    rc = getpwnam_r(user, &pw, buf, NSS_BUF, &pwp);
    if (pwp == NULL) {
        snprintf(err, errlen, "user %s: %s", user, rc != 0 ? strerror(rc) : "no such user");
        goto fail;
    }
    if (pw.pw_uid == 0) {
        snprintf(err, errlen,
                 "user %s is root: name an unprivileged user (or remove the line to keep "
                 "root)",
                 user);
        goto fail;
    }
    pd->uid = pw.pw_uid;
    pd->gid = pw.pw_gid;
    snprintf(pd->user, sizeof(pd->user), "%s", user);
    if (group != NULL) {
        rc = getgrnam_r(group, &gr, buf, NSS_BUF, &grp);
        if (grp == NULL) {
            snprintf(err, errlen, "group %s: %s", group, rc != 0 ? strerror(rc) : "no such group");
            goto fail;
        }
        if (gr.gr_gid == 0) {
            snprintf(err, errlen, "group %s is root's group: name an unprivileged group", group);
            goto fail;
        }
        pd->gid = gr.gr_gid;
        snprintf(pd->group, sizeof(pd->group), "%s", group);
    } else {
        rc = getgrgid_r(pd->gid, &gr, buf, NSS_BUF, &grp);
        if (grp != NULL)
            snprintf(pd->group, sizeof(pd->group), "%s", gr.gr_name);
        else
            snprintf(pd->group, sizeof(pd->group), "%lu", (unsigned long)pd->gid);
        if (pd->gid == 0) {
            snprintf(err, errlen,
                     "user %s has root's group as its primary group: name a group (group NAME)",
                     user);
            goto fail;
        }
    }
    pd->wanted = true;
    free(buf);
    return 0;

fail:
    free(buf);
    return -1;
}

int privdrop_apply(const struct privdrop *pd, char *err, size_t errlen)
{
    if (!pd->wanted)
        return 0;
    if (getuid() != pd->uid || geteuid() != pd->uid || getgid() != pd->gid ||
        getegid() != pd->gid) {
        /* Groups first (they need root), then the gid, then the uid, which gives root up. */
        if (initgroups(pd->user, pd->gid) < 0) {
            snprintf(err, errlen,
                     "user %s: cannot set the supplementary groups: %s (ferryd runs as uid "
                     "%lu: start it as root to change user, or remove 'user')",
                     pd->user, strerror(errno), (unsigned long)geteuid());
            return -1;
        }
        if (setresgid(pd->gid, pd->gid, pd->gid) < 0) {
            snprintf(err, errlen, "group %s: cannot change to gid %lu: %s", pd->group,
                     (unsigned long)pd->gid, strerror(errno));
            return -1;
        }
        if (setresuid(pd->uid, pd->uid, pd->uid) < 0) {
            snprintf(err, errlen, "user %s: cannot change to uid %lu: %s", pd->user,
                     (unsigned long)pd->uid, strerror(errno));
            return -1;
        }
    }
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
        snprintf(err, errlen, "cannot set no_new_privs: %s", strerror(errno));
        return -1;
    }
    /* Checked, not assumed: root must be gone for good. */
    if (setuid(0) == 0 || seteuid(0) == 0 || setgid(0) == 0 || getuid() != pd->uid ||
        geteuid() != pd->uid || getgid() != pd->gid || getegid() != pd->gid) {
        snprintf(err, errlen, "user %s: the privilege drop did not hold (uid %lu, euid %lu)",
                 pd->user, (unsigned long)getuid(), (unsigned long)geteuid());
        return -1;
    }
    return 0;
}

int privdrop_check_readable(const struct privdrop *pd, const char *path, const char *what,
                            char *err, size_t errlen)
{
    int fd;

    if (!pd->wanted || path == NULL)
        return 0;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        close(fd);
        return 0;
    }
    if (strcmp(what, "tunnel key") == 0 || strcmp(what, "parent credentials") == 0) {
        /* A private key or a password file is its owner's only (mode 600): the user must own
         * it. */
        snprintf(err, errlen,
                 "%s: %s as user %s: ferryd reads its %s again on reload (SIGHUP) after "
                 "dropping privileges; give it to that user (chown %s %s; it stays mode 600) "
                 "and make its directories searchable by it",
                 path, strerror(errno), pd->user, what, pd->user, path);
        return -1;
    }
    snprintf(err, errlen,
             "%s: %s as user %s: ferryd reads its %s again on reload (SIGHUP) after dropping "
             "privileges; make it and its directories readable by %s or group %s (for "
             "example chown root:%s %s; chmod 640 %s)",
             path, strerror(errno), pd->user, what, pd->user, pd->group, pd->group, path, path);
    return -1;
}

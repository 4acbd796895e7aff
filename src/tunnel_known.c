/* The one-command mode's default key and known-hosts file (tunnel_known.h). */
#include "config.h"

#include "ferry/tunnel_known.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ferry/tunnel_keys.h"
#include "ferry/units.h"

int tunnel_known_find(const char *text, size_t len, const char *name, const char *host,
                      uint8_t key[32], char *err, size_t errlen)
{
    size_t pos = 0, hl = strlen(host);
    unsigned line = 0;

    while (pos < len) {
        const char *p = text + pos, *nl = memchr(p, '\n', len - pos);
        size_t n = nl != NULL ? (size_t)(nl - p) : len - pos, a = 0, b, c, d;

        pos += n + 1;
        line++;
        while (a < n && (p[a] == ' ' || p[a] == '\t'))
            a++;
        if (a == n || p[a] == '#' || p[a] == '\r')
            continue;
        for (b = a; b < n && p[b] != ' ' && p[b] != '\t'; b++)
            ;
        for (c = b; c < n && (p[c] == ' ' || p[c] == '\t'); c++)
            ;
        for (d = c; d < n && p[d] != ' ' && p[d] != '\t' && p[d] != '\r'; d++)
            ;
        if (c == d) {
            snprintf(err, errlen, "%s:%u: expected HOST:PORT KEY", name, line);
            return -1;
        }
        if (b - a != hl || memcmp(p + a, host, hl) != 0)
            continue;
        if (tunnel_key_decode(p + c, d - c, key) < 0) {
            snprintf(err, errlen, "%s:%u: not a key", name, line);
            return -1;
        }
        return 1;
    }
    return 0;
}

/* The file's text (NULL and *len 0 when it does not exist). -1 on another error. */
static int read_text(const char *path, char **text, size_t *len, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    *text = NULL;
    *len = 0;
    if (fd < 0) {
        if (errno == ENOENT)
            return 0;
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    *text = units_read_fd(fd, TUNNEL_KNOWN_MAX_FILE, len);
    close(fd);
    if (*text == NULL) {
        snprintf(err, errlen, "%s: cannot read it (or larger than %d bytes)", path,
                 TUNNEL_KNOWN_MAX_FILE);
        return -1;
    }
    return 0;
}

int tunnel_known_resolve(struct conf_overrides *ov, bool accept_new, char *keypath, char *keytext,
                         char *err, size_t errlen)
{
    const char *home = getenv("HOME");
    char known[PATH_MAX], *text;
    uint8_t given[32], stored[32];
    size_t len;
    int found;

    if (home == NULL || home[0] == '\0')
        home = "/";
    if (ov->tunnel_key == NULL) {
        snprintf(keypath, PATH_MAX, "%s/.config/ferry/key", home);
        ov->tunnel_key = keypath;
    }
    snprintf(known, sizeof(known), "%s/.config/ferry/known_hosts", home);
    if (read_text(known, &text, &len, err, errlen) < 0)
        return -1;
    found = text != NULL ? tunnel_known_find(text, len, known, ov->tunnel, stored, err, errlen) : 0;
    free(text);
    if (found < 0)
        return -1;
    if (ov->tunnel_server_key == NULL) {
        if (found == 0) {
            snprintf(err, errlen,
                     "no key known for %s: give --server-key KEY (what ferry-keygen printed on "
                     "the server), and --accept-new-server-key to remember it in %s",
                     ov->tunnel, known);
            return -1;
        }
        tunnel_key_encode(stored, keytext);
        ov->tunnel_server_key = keytext;
        return 0;
    }
    if (tunnel_key_decode(ov->tunnel_server_key, strlen(ov->tunnel_server_key), given) < 0) {
        snprintf(err, errlen, "--server-key: not a key (44 characters of base64)");
        return -1;
    }
    if (found == 1 && memcmp(given, stored, sizeof(given)) != 0) {
        char fs[TUNNEL_FINGERPRINT_SIZE], fg[TUNNEL_FINGERPRINT_SIZE];

        tunnel_key_fingerprint(stored, fs);
        tunnel_key_fingerprint(given, fg);
        snprintf(err, errlen,
                 "the server key given for %s (%s) is not the one remembered in %s (%s): if "
                 "the server's key really changed, remove its line there",
                 ov->tunnel, fg, known, fs);
        return -1;
    }
    if (accept_new && found == 0) {
        char dir[PATH_MAX], fp[TUNNEL_FINGERPRINT_SIZE], enc[TUNNEL_KEY_B64 + 1];
        FILE *f;

        snprintf(dir, sizeof(dir), "%s/.config", home);
        mkdir(dir, 0755);
        snprintf(dir, sizeof(dir), "%s/.config/ferry", home);
        mkdir(dir, 0700);
        f = fopen(known, "a");
        if (f == NULL) {
            snprintf(err, errlen, "%s: %s", known, strerror(errno));
            return -1;
        }
        tunnel_key_encode(given, enc);
        fprintf(f, "%s %s\n", ov->tunnel, enc);
        if (fclose(f) != 0) {
            snprintf(err, errlen, "%s: %s", known, strerror(errno));
            return -1;
        }
        tunnel_key_fingerprint(given, fp);
        printf("ferryd: remembered the key of %s (fingerprint %s) in %s\n", ov->tunnel, fp, known);
        fflush(stdout);
    }
    return 0;
}

/*
 * The one-command mode's files (ferryd --tunnel, ferryd(8)): the default private key
 * ~/.config/ferry/key and the known-hosts file ~/.config/ferry/known_hosts, one "HOST:PORT KEY"
 * a line ('#' comments, blank lines), that remembers a server's key once the user confirmed it
 * (--accept-new-server-key). The Noise IK handshake needs the server's key before the first
 * byte, and a server says nothing to a client it does not know, so the first key always comes
 * from the user: the file spares giving it again, and refuses a different one later.
 */
#ifndef FERRY_TUNNEL_KNOWN_H
#define FERRY_TUNNEL_KNOWN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ferry/conf.h"

#define TUNNEL_KNOWN_MAX_FILE (1024 * 1024)

/*
 * The key remembered for host ("HOST:PORT" as given) in the file's text: 1 found (into key),
 * 0 not there, -1 a malformed line ("NAME:LINE: problem" in err).
 */
int tunnel_known_find(const char *text, size_t len, const char *name, const char *host,
                      uint8_t key[32], char *err, size_t errlen);

/*
 * Complete ov for --tunnel: the default key path, the server key from the known-hosts file when
 * not given, a given key checked against a remembered one, and with accept_new a new one
 * remembered (its fingerprint printed to stdout). Paths and the key text go to the buffers
 * (PATH_MAX each, keytext 45 bytes) that ov then points into. -1 with the problem in err.
 */
int tunnel_known_resolve(struct conf_overrides *ov, bool accept_new, char *keypath, char *keytext,
                         char *err, size_t errlen);

#endif

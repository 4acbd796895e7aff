/*
 * The tunnel's keys on disk (doc/tunnel-protocol.md, man/ferry-keygen.1): X25519 keys as one
 * line of base64, their fingerprints, the private key file (refused when others may read it,
 * as OpenSSH refuses an "UNPROTECTED PRIVATE KEY FILE") and the authorized-keys file that maps
 * client keys to user names. Parsers and checks are pure; the two loaders do the file I/O.
 */
#ifndef FERRY_TUNNEL_KEYS_H
#define FERRY_TUNNEL_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define TUNNEL_KEY_BYTES 32
#define TUNNEL_KEY_B64 44 /* standard base64 of 32 bytes, with its '=' */
/* "BLAKE2b:" and 11 characters of unpadded base64 (the first 8 bytes of BLAKE2b-512). */
#define TUNNEL_FINGERPRINT_SIZE 20
#define TUNNEL_KEY_FILE_MAX 4096
#define TUNNEL_AUTHKEYS_MAX_FILE (16u * 1024 * 1024)

/* The key as 44 characters of standard base64 and a NUL. */
void tunnel_key_encode(const uint8_t key[TUNNEL_KEY_BYTES], char out[TUNNEL_KEY_B64 + 1]);
/* Exactly TUNNEL_KEY_B64 characters of standard padded base64 (len bytes at s) to a key. */
int tunnel_key_decode(const char *s, size_t len, uint8_t key[TUNNEL_KEY_BYTES]);
/*
 * The short fingerprint of a public key: "BLAKE2b:" and the first 8 bytes of the unkeyed
 * BLAKE2b-512 hash of the 32 key bytes in unpadded standard base64 ("BLAKE2b:3q2+7wABAgM").
 * For people comparing keys by eye; files always hold the whole key.
 */
void tunnel_key_fingerprint(const uint8_t pub[TUNNEL_KEY_BYTES], char out[TUNNEL_FINGERPRINT_SIZE]);

/*
 * The private key file's text (len bytes, named name in messages): blank lines and lines
 * starting with '#' skipped, exactly one line holding the base64 key. "NAME:LINE: problem" in
 * err on failure. The key's public half must not be all zero.
 */
int tunnel_key_parse_private(const char *text, size_t len, const char *name,
                             uint8_t priv[TUNNEL_KEY_BYTES], char *err, size_t errlen);
/*
 * Whether a private key file with this mode and owner may be used by a process of user euid:
 * not when its group or others have any access to it, nor when it belongs to another user
 * (root's files aside; and root, which ferryd starts as before it becomes its configured user,
 * may use the files of that user, which must own them to read them again on SIGHUP). -1 with
 * the reason in err.
 */
int tunnel_key_check_mode(const char *name, mode_t mode, uid_t owner, uid_t euid, char *err,
                          size_t errlen);
/* Open, check, read and parse a private key file; the read buffer is wiped. */
int tunnel_key_load_private(const char *path, uint8_t priv[TUNNEL_KEY_BYTES], char *err,
                            size_t errlen);

/*
 * The authorized-keys file: one client public key per line with the user name it acts as,
 * "KEY USER" or "USER KEY" (separated by blanks; a user name is what the users file allows),
 * blank lines and '#' comments (a whole line, or a field starting with '#' and the rest of its
 * line). A key appears once; a user may have several keys.
 */
struct tunnel_authkeys;

struct tunnel_authkeys *tunnel_authkeys_parse(const char *text, size_t len, const char *name,
                                              char *err, size_t errlen);
/*
 * Read and parse a file: refused when its group or others may write it (whoever can write it
 * can add a key). "PATH: problem" or "PATH:LINE: problem" in err.
 */
struct tunnel_authkeys *tunnel_authkeys_load(const char *path, char *err, size_t errlen);
void tunnel_authkeys_free(struct tunnel_authkeys *db);
/* The user a client key acts as, or NULL when the key is not authorized. */
const char *tunnel_authkeys_lookup(const struct tunnel_authkeys *db,
                                   const uint8_t key[TUNNEL_KEY_BYTES]);
size_t tunnel_authkeys_count(const struct tunnel_authkeys *db);

#endif

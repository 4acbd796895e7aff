/*
 * ferry-keygen: make an X25519 key pair for the encrypted hop (doc/tunnel-protocol.md). The
 * private key goes to a new file only its owner can read; the public key is printed as one
 * line of base64 for the other side's authorized-keys file or command line, its fingerprint
 * on standard error. With -y, print the public key of an existing private key file.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "ferry/tunnel_keys.h"

static const char *progname = "ferry-keygen";

static void usage(FILE *f)
{
    fprintf(f,
            "usage: %s [-f] FILE\n"
            "       %s -y FILE\n"
            "Make an X25519 key pair for ferry's encrypted hop: the private key goes to FILE\n"
            "(mode 0600, which must not exist yet), the public key to standard output.\n"
            "\n"
            "  -f  replace FILE if it exists\n"
            "  -y  print the public key of the private key FILE\n"
            "  -h  show this help\n"
            "  -V  show the version\n",
            progname, progname);
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void die(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "%s: ", progname);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

static void write_all(int fd, const char *path, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, buf, len);

        if (w < 0) {
            if (errno == EINTR)
                continue;
            die("%s: %s", path, strerror(errno));
        }
        buf += w;
        len -= (size_t)w;
    }
}

/* Print the public key line and, on standard error, its fingerprint. */
static void print_public(const uint8_t pub[TUNNEL_KEY_BYTES], const char *what, const char *path)
{
    char text[TUNNEL_KEY_B64 + 1], fp[TUNNEL_FINGERPRINT_SIZE];

    tunnel_key_encode(pub, text);
    tunnel_key_fingerprint(pub, fp);
    printf("%s\n", text);
    if (fflush(stdout) != 0 || ferror(stdout))
        die("standard output: %s", strerror(errno));
    fprintf(stderr, "%s: %s %s; public key fingerprint %s\n", progname, what, path, fp);
}

/*
 * Write content to path as a new file of mode 0600: created exclusively, or, with replace,
 * written beside it and renamed over it (so a reader sees the old key or the new one).
 */
static void write_key_file(const char *path, const char *content, size_t len, bool replace)
{
    char *tmp = NULL, *dcopy = NULL;
    const char *target = path;
    int fd;

    if (!replace) {
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0 && errno == EEXIST)
            die("%s exists: not overwriting a key (-f replaces it)", path);
    } else {
        size_t tlen;

        dcopy = strdup(path);
        if (dcopy == NULL)
            die("%s", strerror(errno));
        tlen = strlen(path) + 32;
        tmp = malloc(tlen);
        if (tmp == NULL)
            die("%s", strerror(errno));
        snprintf(tmp, tlen, "%s/.ferry-key.XXXXXX", dirname(dcopy));
        fd = mkstemp(tmp);
        target = tmp;
    }
    if (fd < 0)
        die("%s: %s", target, strerror(errno));
    if (fchmod(fd, 0600) < 0) {
        int e = errno;
        if (tmp != NULL)
            unlink(tmp);
        die("%s: %s", target, strerror(e));
    }
    write_all(fd, target, content, len);
    if (fsync(fd) < 0 || close(fd) < 0) {
        int e = errno;
        unlink(target);
        die("%s: %s", target, strerror(e));
    }
    if (tmp != NULL && rename(tmp, path) < 0) {
        int e = errno;
        unlink(tmp);
        die("%s: %s", path, strerror(e));
    }
    free(tmp);
    free(dcopy);
}

static int show_public(const char *path)
{
    uint8_t priv[TUNNEL_KEY_BYTES], pub[TUNNEL_KEY_BYTES];
    char err[512];

    if (tunnel_key_load_private(path, priv, err, sizeof(err)) < 0)
        die("%s", err);
    crypto_scalarmult_base(pub, priv);
    sodium_memzero(priv, sizeof(priv));
    print_public(pub, "private key", path);
    return 0;
}

int main(int argc, char **argv)
{
    uint8_t priv[TUNNEL_KEY_BYTES], pub[TUNNEL_KEY_BYTES];
    char text[TUNNEL_KEY_B64 + 1], fp[TUNNEL_FINGERPRINT_SIZE];
    char content[256];
    bool replace = false, show = false;
    int opt, n;

    while ((opt = getopt(argc, argv, "fyhV")) != -1) {
        switch (opt) {
        case 'f':
            replace = true;
            break;
        case 'y':
            show = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("ferry-keygen %s\n", PACKAGE_VERSION);
            return 0;
        default:
            usage(stderr);
            return 1;
        }
    }
    if (argc - optind != 1 || (show && replace)) {
        usage(stderr);
        return 1;
    }
    if (sodium_init() < 0)
        die("libsodium failed to initialise");
    if (show)
        return show_public(argv[optind]);

    crypto_box_keypair(pub, priv); /* X25519: random scalar, its base-point multiple */
    tunnel_key_encode(priv, text);
    tunnel_key_fingerprint(pub, fp);
    n = snprintf(content, sizeof(content),
                 "# ferry-keygen X25519 private key (public key fingerprint %s)\n%s\n", fp, text);
    sodium_memzero(priv, sizeof(priv));
    sodium_memzero(text, sizeof(text));
    if (n < 0 || (size_t)n >= sizeof(content))
        die("internal error: key text too long");
    write_key_file(argv[optind], content, (size_t)n, replace);
    sodium_memzero(content, sizeof(content));
    print_public(pub, "private key written to", argv[optind]);
    return 0;
}

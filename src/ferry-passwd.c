/*
 * ferry-passwd: add, update or delete a user in ferryd's users file. The password comes from
 * the terminal (asked twice, without echo) or from one line of standard input, never from the
 * command line. The file is rewritten atomically and other lines are kept as they are.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <sodium.h>

#include "ferry/auth_users.h"
#include "ferry/units.h"

/* RFC 1929: PLEN is one byte, so a longer password could never be sent. */
#define PASSWORD_MAX 255
#define USERS_FILE_MAX (64u * 1024 * 1024)

static const char *progname = "ferry-passwd";

/* Terminal state to put back if a signal arrives while echo is off. */
static int tty_fd = -1;
static struct termios tty_saved;
static volatile sig_atomic_t tty_echo_off;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: %s [-d] FILE USER\n"
            "Add USER to the ferryd users FILE, or change its password; with -d delete USER.\n"
            "The password is read from the terminal, or as one line from standard input.\n"
            "\n"
            "  -d  delete USER\n"
            "  -h  show this help\n"
            "  -V  show the version\n",
            progname);
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

static void restore_tty_on_signal(int sig)
{
    if (tty_echo_off)
        tcsetattr(tty_fd, TCSAFLUSH, &tty_saved);
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Read one line (without newline) from fd into buf; returns its length or -1. */
static ssize_t read_line(int fd, char *buf, size_t size, bool *too_long)
{
    size_t n = 0;
    char ch;

    *too_long = false;
    for (;;) {
        ssize_t r = read(fd, &ch, 1);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (r == 0 || ch == '\n')
            break;
        if (n < size)
            buf[n++] = ch;
        else
            *too_long = true;
    }
    return (ssize_t)n;
}

/* Prompt on the terminal with echo off and read one line. */
static ssize_t ask(int fd, const char *prompt, char *buf, size_t size, bool *too_long)
{
    struct termios noecho;
    struct sigaction sa = {.sa_handler = restore_tty_on_signal}, old[3];
    static const int sigs[3] = {SIGINT, SIGTERM, SIGHUP};
    ssize_t n;
    int saved;

    if (write(fd, prompt, strlen(prompt)) < 0)
        return -1;
    if (tcgetattr(fd, &tty_saved) < 0)
        return -1;
    tty_fd = fd;
    sigemptyset(&sa.sa_mask);
    for (int i = 0; i < 3; i++)
        sigaction(sigs[i], &sa, &old[i]);
    noecho = tty_saved;
    noecho.c_lflag &= ~(tcflag_t)(ECHO | ECHOE | ECHOK | ECHONL);
    noecho.c_lflag |= ICANON;
    if (tcsetattr(fd, TCSAFLUSH, &noecho) < 0)
        return -1;
    tty_echo_off = 1;
    n = read_line(fd, buf, size, too_long);
    saved = errno;
    tcsetattr(fd, TCSAFLUSH, &tty_saved);
    tty_echo_off = 0;
    for (int i = 0; i < 3; i++)
        sigaction(sigs[i], &old[i], NULL);
    (void)!write(fd, "\n", 1);
    errno = saved;
    return n;
}

/* The new password into pw (PASSWORD_MAX bytes); returns its length. Exits on failure. */
static size_t read_password(const char *user, char *pw)
{
    char again[PASSWORD_MAX];
    char prompt[AUTH_USERS_MAX_NAME * 4 + 32];
    bool too_long = false, too_long2;
    ssize_t n, n2;

    if (!isatty(STDIN_FILENO)) {
        n = read_line(STDIN_FILENO, pw, PASSWORD_MAX, &too_long);
        if (n < 0)
            die("reading the password from standard input: %s", strerror(errno));
    } else {
        int fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);

        if (fd < 0)
            die("/dev/tty: %s", strerror(errno));
        snprintf(prompt, sizeof(prompt), "New password for %s: ", user);
        n = ask(fd, prompt, pw, PASSWORD_MAX, &too_long);
        if (n < 0)
            die("reading the password: %s", strerror(errno));
        n2 = ask(fd, "Retype the password: ", again, sizeof(again), &too_long2);
        if (n2 < 0)
            die("reading the password: %s", strerror(errno));
        close(fd);
        if (n != n2 || too_long != too_long2 || sodium_memcmp(pw, again, (size_t)n) != 0) {
            sodium_memzero(pw, PASSWORD_MAX);
            sodium_memzero(again, sizeof(again));
            die("the passwords do not match");
        }
        sodium_memzero(again, sizeof(again));
    }
    if (too_long) {
        sodium_memzero(pw, PASSWORD_MAX);
        die("the password is longer than %d bytes, which SOCKS5 cannot send (RFC 1929)",
            PASSWORD_MAX);
    }
    if (n == 0)
        die("empty password");
    return (size_t)n;
}

/* The whole file, or an empty buffer when it does not exist yet. */
static char *read_users(const char *path, size_t *lenp, bool *exists, struct stat *st)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    char *buf;

    *exists = fd >= 0;
    if (fd < 0) {
        if (errno != ENOENT)
            die("%s: %s", path, strerror(errno));
        buf = calloc(1, 1);
        if (buf == NULL)
            die("%s", strerror(errno));
        *lenp = 0;
        return buf;
    }
    if (fstat(fd, st) < 0)
        die("%s: %s", path, strerror(errno));
    if (!S_ISREG(st->st_mode))
        die("%s: not a regular file", path);
    buf = units_read_fd(fd, USERS_FILE_MAX, lenp);
    if (buf == NULL)
        die("%s: %s", path, errno == EFBIG ? "file too large" : strerror(errno));
    close(fd);
    return buf;
}

/* Does this line (n bytes, no newline) hold an entry for user? */
static bool line_is_user(const char *s, size_t n, const char *user, size_t ulen)
{
    return n > ulen && s[ulen] == ':' && memcmp(s, user, ulen) == 0;
}

/*
 * Write content to a temporary file beside path, flush it to disk and rename it over path,
 * so readers see the old file or the new one, never half of one.
 */
static void replace_file(const char *path, const char *content, size_t len, bool exists,
                         const struct stat *st)
{
    char *dcopy = strdup(path), *bcopy = strdup(path), *tmp;
    const char *dir, *base;
    int fd, dfd;
    size_t tlen;
    mode_t mode;

    if (dcopy == NULL || bcopy == NULL)
        die("%s", strerror(errno));
    dir = dirname(dcopy);
    base = basename(bcopy);
    tlen = strlen(dir) + strlen(base) + 16;
    tmp = malloc(tlen);
    if (tmp == NULL)
        die("%s", strerror(errno));
    snprintf(tmp, tlen, "%s/.%s.XXXXXX", dir, base);
    fd = mkstemp(tmp);
    if (fd < 0)
        die("%s: %s", dir, strerror(errno));
    /* Keep the old file's owner and mode, tightened to at most owner read-write and group
     * read (ferryd refuses a file others may write); a new file is its owner's only. */
    mode = exists ? (st->st_mode & 0640) : 0600;
    if (exists && (st->st_mode & 07777) != mode)
        fprintf(stderr, "%s: %s: mode %04o tightened to %04o\n", progname, path,
                (unsigned)(st->st_mode & 07777), (unsigned)mode);
    if (fchmod(fd, mode) < 0 ||
        (exists && fchown(fd, st->st_uid, st->st_gid) < 0 && errno != EPERM)) {
        int e = errno;
        unlink(tmp);
        die("%s: %s", tmp, strerror(e));
    }
    while (len > 0) {
        ssize_t w = write(fd, content, len);
        if (w < 0) {
            int e = errno;
            if (e == EINTR)
                continue;
            unlink(tmp);
            die("%s: %s", tmp, strerror(e));
        }
        content += w;
        len -= (size_t)w;
    }
    if (fsync(fd) < 0 || close(fd) < 0) {
        int e = errno;
        unlink(tmp);
        die("%s: %s", tmp, strerror(e));
    }
    if (rename(tmp, path) < 0) {
        int e = errno;
        unlink(tmp);
        die("%s: %s", path, strerror(e));
    }
    /* Make the rename itself durable. */
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    free(tmp);
    free(dcopy);
    free(bcopy);
}

int main(int argc, char **argv)
{
    bool delete = false, exists, found = false;
    const char *path, *user;
    char hash[crypto_pwhash_STRBYTES];
    char pw[PASSWORD_MAX];
    char *old, *out, *real = NULL, err[512];
    size_t oldlen, ulen, outlen = 0, pos = 0, pwlen;
    struct stat st = {0};
    struct auth_users *check;
    int opt;

    while ((opt = getopt(argc, argv, "dhV")) != -1) {
        switch (opt) {
        case 'd':
            delete = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("ferry-passwd %s\n", PACKAGE_VERSION);
            return 0;
        default:
            usage(stderr);
            return 1;
        }
    }
    if (argc - optind != 2) {
        usage(stderr);
        return 1;
    }
    path = argv[optind];
    user = argv[optind + 1];
    ulen = strlen(user);
    if (!auth_users_valid_name(user, ulen))
        die("'%s' is not a valid user name (1 to %d bytes, no ':', no blanks or control "
            "characters, not starting with '#')",
            user, AUTH_USERS_MAX_NAME);
    if (sodium_init() < 0)
        die("libsodium failed to initialise");

    /* Write through a symbolic link rather than replacing the link with a file. */
    {
        struct stat lst;
        if (lstat(path, &lst) == 0 && S_ISLNK(lst.st_mode)) {
            real = realpath(path, NULL);
            if (real == NULL)
                die("%s: %s", path, strerror(errno));
            path = real;
        }
    }
    old = read_users(path, &oldlen, &exists, &st);

    if (!delete) {
        pwlen = read_password(user, pw);
        if (crypto_pwhash_str(hash, pw, pwlen, crypto_pwhash_OPSLIMIT_INTERACTIVE,
                              crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0) {
            sodium_memzero(pw, sizeof(pw));
            die("hashing the password: out of memory");
        }
        sodium_memzero(pw, sizeof(pw));
    }

    /* Old content, with the user's line replaced (first) or dropped (delete, or a repeat). */
    out = malloc(oldlen + ulen + sizeof(hash) + 8);
    if (out == NULL)
        die("%s", strerror(errno));
    while (pos < oldlen) {
        const char *s = old + pos;
        const char *nl = memchr(s, '\n', oldlen - pos);
        size_t n = nl != NULL ? (size_t)(nl - s) : oldlen - pos;

        pos += n + (nl != NULL ? 1 : 0);
        if (line_is_user(s, n, user, ulen)) {
            if (!delete &&!found)
                outlen += (size_t)sprintf(out + outlen, "%s:%s\n", user, hash);
            found = true;
            continue;
        }
        memcpy(out + outlen, s, n);
        outlen += n;
        out[outlen++] = '\n';
    }
    if (delete &&!found)
        die("%s: no user '%s'", path, user);
    if (!delete &&!found)
        outlen += (size_t)sprintf(out + outlen, "%s:%s\n", user, hash);
    out[outlen] = '\0';

    /* Say so when the file has other problems that ferryd will refuse. */
    check = auth_users_parse(out, path, err, sizeof(err));
    if (check == NULL)
        fprintf(stderr, "%s: warning: %s\n", progname, err);
    auth_users_free(check);

    replace_file(path, out, outlen, exists, &st);
    sodium_memzero(hash, sizeof(hash));
    free(out);
    free(old);
    free(real);
    return 0;
}

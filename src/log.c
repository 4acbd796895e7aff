/*
 * Log lines to stderr or a file (with a UTC timestamp) or to syslog, filtered by a syslog
 * priority, as text, JSON or logfmt.
 */
#include "config.h"

#include "ferry/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "ferry/access.h"

#define LOG_FILE_FLAGS (O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY)
#define LOG_FILE_MODE 0640

/* Set by log_open before the workers start, read by every thread after. */
static enum log_target log_target = LOG_TARGET_STDERR;
static enum access_format log_format = ACCESS_TEXT;
/* stderr, or the log file: log_reopen changes the file behind it, never the number. */
static int log_fd = STDERR_FILENO;
static char *log_path;
/*
 * Written by a reload on the main thread while workers read it: atomic, relaxed (a worker may
 * log a line or two under the old level, and a relaxed load is a plain load).
 */
static _Atomic int log_level = LOG_INFO;

static const struct {
    const char *name;
    int level;
} log_levels[] = {
    {"err", LOG_ERR},       {"error", LOG_ERR}, {"warning", LOG_WARNING}, {"warn", LOG_WARNING},
    {"notice", LOG_NOTICE}, {"info", LOG_INFO}, {"debug", LOG_DEBUG},
};

static const char *log_level_name(int level)
{
    switch (level) {
    case LOG_EMERG:
    case LOG_ALERT:
    case LOG_CRIT:
    case LOG_ERR:
        return "error";
    case LOG_WARNING:
        return "warning";
    case LOG_NOTICE:
        return "notice";
    case LOG_INFO:
        return "info";
    default:
        return "debug";
    }
}

int log_level_from_name(const char *name)
{
    for (size_t i = 0; i < sizeof(log_levels) / sizeof(log_levels[0]); i++) {
        if (strcasecmp(name, log_levels[i].name) == 0)
            return log_levels[i].level;
    }
    return -1;
}

const char *log_escape(const char *text, size_t len, char *out, size_t size)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;

    if (size == 0)
        return out;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)text[i];

        if (ch > 0x20 && ch < 0x7f && ch != '\\') {
            if (o + 1 >= size)
                break;
            out[o++] = (char)ch;
        } else {
            if (o + 4 >= size)
                break;
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[ch >> 4];
            out[o++] = hex[ch & 0x0f];
        }
    }
    out[o] = '\0';
    return out;
}

/* The last line of defence: no control byte from any argument reaches the log as such. */
static void log_defuse(char *line, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)line[i];

        if (ch < 0x20 || ch == 0x7f)
            line[i] = '?';
    }
}

int log_open(const struct config *c)
{
    if (c->log_target == LOG_TARGET_FILE) {
        int fd = open(c->log_file, LOG_FILE_FLAGS, LOG_FILE_MODE);
        char *path;

        if (fd < 0)
            return -1;
        path = strdup(c->log_file);
        if (path == NULL) {
            close(fd);
            return -1;
        }
        if (log_fd != STDERR_FILENO)
            close(log_fd);
        free(log_path);
        log_fd = fd;
        log_path = path;
    }
    if (log_target == LOG_TARGET_SYSLOG && c->log_target != LOG_TARGET_SYSLOG)
        closelog();
    log_target = c->log_target;
    log_format = c->log_format;
    atomic_store_explicit(&log_level, c->log_level, memory_order_relaxed);
    if (log_target == LOG_TARGET_SYSLOG)
        openlog("ferryd", LOG_PID | LOG_NDELAY, c->syslog_facility);
    return 0;
}

/*
 * The new file takes the old one's descriptor number in one dup3(2): a worker's write(2)
 * goes whole to the old file or whole to the new one, so no lock is needed and no line is
 * split or lost.
 */
int log_reopen(void)
{
    int fd, err;

    if (log_target != LOG_TARGET_FILE)
        return 0;
    fd = open(log_path, LOG_FILE_FLAGS, LOG_FILE_MODE);
    if (fd >= 0 && dup3(fd, log_fd, O_CLOEXEC) >= 0) {
        close(fd);
        log_notice("log file %s reopened", log_path);
        return 0;
    }
    err = errno;
    if (fd >= 0)
        close(fd);
    log_err("cannot reopen the log file %s: %s; still writing to the one open", log_path,
            strerror(err));
    errno = err;
    return -1;
}

bool log_same_settings(const struct config *a, const struct config *b)
{
    if (a->log_target != b->log_target || a->log_format != b->log_format)
        return false;
    if (a->log_target == LOG_TARGET_SYSLOG)
        return a->syslog_facility == b->syslog_facility;
    if (a->log_target == LOG_TARGET_FILE)
        return strcmp(a->log_file, b->log_file) == 0;
    return true;
}

void log_set_level(int level)
{
    if (level < LOG_ERR)
        level = LOG_ERR;
    if (level > LOG_DEBUG)
        level = LOG_DEBUG;
    atomic_store_explicit(&log_level, level, memory_order_relaxed);
}

bool log_enabled(int level)
{
    return level <= atomic_load_explicit(&log_level, memory_order_relaxed);
}

/*
 * One line: the prefix its target and format want (time, pid and level, which syslog adds
 * itself), then fields, already in the format: the message for text, members for JSON, pairs
 * for logfmt. One write(2) per line, so lines from threads and processes do not interleave.
 */
static void log_write(int level, const char *fields, size_t n)
{
    char line[ACCESS_LINE_MAX + 128];
    struct timespec ts;
    struct tm tm;
    char now[40];
    size_t len = 0;
    int r = 0;

    if (log_target == LOG_TARGET_SYSLOG) {
        if (log_format == ACCESS_JSON)
            syslog(level, "{%.*s}", (int)n, fields);
        else
            syslog(level, "%.*s", (int)n, fields);
        return;
    }
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    len = strftime(now, sizeof(now), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(now + len, sizeof(now) - len, ".%03ldZ", ts.tv_nsec / 1000000);
    switch (log_format) {
    case ACCESS_TEXT:
        r = snprintf(line, sizeof(line), "%s ferryd[%ld] %s: ", now, (long)getpid(),
                     log_level_name(level));
        break;
    case ACCESS_JSON:
        r = snprintf(line, sizeof(line), "{\"time\":\"%s\",\"level\":\"%s\",\"pid\":%ld,", now,
                     log_level_name(level), (long)getpid());
        break;
    case ACCESS_LOGFMT:
        r = snprintf(line, sizeof(line), "time=%s level=%s pid=%ld ", now, log_level_name(level),
                     (long)getpid());
        break;
    }
    len = r > 0 ? (size_t)r : 0;
    /* Fields are made to fit; were they not, a JSON line is dropped rather than cut. */
    if (n > sizeof(line) - len - 2) {
        if (log_format != ACCESS_TEXT)
            return;
        n = sizeof(line) - len - 2;
    }
    memcpy(line + len, fields, n);
    len += n;
    if (log_format == ACCESS_JSON)
        line[len++] = '}';
    line[len++] = '\n';
    (void)!write(log_fd, line, len);
}

void log_msg(int level, const char *fmt, ...)
{
    char text[2048], fields[ACCESS_LINE_MAX];
    va_list ap;
    int r;

    if (!log_enabled(level))
        return;
    va_start(ap, fmt);
    r = vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    if (r < 0)
        return;
    if ((size_t)r >= sizeof(text))
        r = sizeof(text) - 1;
    log_defuse(text, (size_t)r);
    if (log_format == ACCESS_TEXT) {
        log_write(level, text, (size_t)r);
        return;
    }
    /* {"msg":"..."} or msg=...: 2047 bytes escaped take at most 6 times as many. */
    if (log_format == ACCESS_JSON) {
        memcpy(fields, "\"msg\":", 6);
        r = access_json_string(text, (size_t)r, fields + 6, sizeof(fields) - 6);
    } else {
        memcpy(fields, "msg=", 4);
        r = access_logfmt_value(text, (size_t)r, fields + 4, sizeof(fields) - 4);
    }
    if (r >= 0)
        log_write(level, fields, (size_t)r + (log_format == ACCESS_JSON ? 6 : 4));
}

void log_access(int level, const struct access_record *r)
{
    char fields[ACCESS_LINE_MAX];
    int n;

    if (!log_enabled(level))
        return;
    n = access_format(log_format, r, fields, sizeof(fields));
    if (n < 0) {
        log_err("an access line did not fit in %d bytes", ACCESS_LINE_MAX);
        return;
    }
    if (log_format == ACCESS_TEXT)
        log_defuse(fields, (size_t)n);
    log_write(level, fields, (size_t)n);
}

/* Log lines to stderr (with a UTC timestamp) or to syslog, filtered by a syslog priority. */
#include "config.h"

#include "ferry/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static enum log_target log_target = LOG_TARGET_STDERR;
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

void log_open(enum log_target target, int facility, int level)
{
    if (log_target == LOG_TARGET_SYSLOG && target != LOG_TARGET_SYSLOG)
        closelog();
    log_target = target;
    atomic_store_explicit(&log_level, level, memory_order_relaxed);
    if (target == LOG_TARGET_SYSLOG)
        openlog("ferryd", LOG_PID | LOG_NDELAY, facility);
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

void log_msg(int level, const char *fmt, ...)
{
    va_list ap;

    if (!log_enabled(level))
        return;
    va_start(ap, fmt);
    if (log_target == LOG_TARGET_SYSLOG) {
        char text[2048];
        int r = vsnprintf(text, sizeof(text), fmt, ap);

        if (r > 0) {
            log_defuse(text, (size_t)r < sizeof(text) ? (size_t)r : sizeof(text) - 1);
            syslog(level, "%s", text);
        }
    } else {
        /* One write per line so lines from concurrent processes do not interleave. */
        char line[2048];
        struct timespec ts;
        struct tm tm;
        size_t n;
        int r;

        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
        r = snprintf(line + n, sizeof(line) - n, ".%03ldZ ferryd[%ld] %s: ", ts.tv_nsec / 1000000,
                     (long)getpid(), log_level_name(level));
        if (r > 0 && (size_t)r < sizeof(line) - n)
            n += (size_t)r;
        r = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
        if (r > 0) {
            size_t m = (size_t)r < sizeof(line) - n ? (size_t)r : sizeof(line) - n - 1;

            log_defuse(line + n, m);
            n += m;
        }
        if (n >= sizeof(line) - 1)
            n = sizeof(line) - 2;
        line[n++] = '\n';
        (void)!write(STDERR_FILENO, line, n);
    }
    va_end(ap);
}

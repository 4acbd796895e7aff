/* Log lines to stderr, a file or syslog, filtered by a syslog priority; text, JSON or logfmt. */
#ifndef FERRY_LOG_H
#define FERRY_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <syslog.h>

#include "ferry/access.h"
#include "ferry/conf.h"

/*
 * Log as the configuration says: target, format, level. A log file is opened (appending,
 * mode 0640 before the umask, closed on exec). Returns 0, or -1 (errno set) when the file
 * cannot be opened: logging stays as it was.
 */
int log_open(const struct config *c);
/*
 * Open the log file again by its name (logrotate renamed it: SIGUSR1), safe while other
 * threads log. On failure the open file stays in use and the error is logged; -1.
 */
int log_reopen(void);
/* Whether two configurations log to the same place in the same format. */
bool log_same_settings(const struct config *a, const struct config *b);
void log_set_level(int level);
bool log_enabled(int level);
void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A session's access line in the configured format. */
void log_access(int level, const struct access_record *r);

/*
 * A client-supplied string (len bytes, any bytes) for a log line: bytes outside printable
 * ASCII, the space and the backslash become \xHH, so it can neither forge a line nor split a
 * key=value field. Writes at most size bytes (NUL included) into out, cutting at a whole
 * escape; returns out. LOG_ESCAPED(n) is the room n bytes may need.
 * log_msg itself also turns any control byte left in a line into '?'.
 */
const char *log_escape(const char *text, size_t len, char *out, size_t size);
#define LOG_ESCAPED(n) ((n)*4 + 1)

/* Level names as in the config ("err", "warning", "notice", "info", "debug"); -1 if unknown. */
int log_level_from_name(const char *name);

#define log_err(...) log_msg(LOG_ERR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARNING, __VA_ARGS__)
#define log_notice(...) log_msg(LOG_NOTICE, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif

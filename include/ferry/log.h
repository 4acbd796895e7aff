/* Log lines to stderr or syslog, filtered by a syslog priority. */
#ifndef FERRY_LOG_H
#define FERRY_LOG_H

#include <stdbool.h>
#include <syslog.h>

#include "ferry/conf.h"

void log_open(enum log_target target, int facility, int level);
void log_set_level(int level);
bool log_enabled(int level);
void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Replace bytes that could forge or break a log line (controls, spaces, DEL, non-ASCII). */
void log_sanitize(char *text);

/* Level names as in the config ("err", "warning", "notice", "info", "debug"); -1 if unknown. */
int log_level_from_name(const char *name);

#define log_err(...) log_msg(LOG_ERR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARNING, __VA_ARGS__)
#define log_notice(...) log_msg(LOG_NOTICE, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif

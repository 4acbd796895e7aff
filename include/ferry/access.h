/*
 * The access line: one record per session, formatted as today's text, as JSON or as logfmt.
 * Pure: a record in, bytes in a buffer out.
 */
#ifndef FERRY_ACCESS_H
#define FERRY_ACCESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* log-format text | json | logfmt */
enum access_format {
    ACCESS_TEXT,
    ACCESS_JSON,
    ACCESS_LOGFMT,
};

/* Room for a formatted record: client strings are cut at ACCESS_STRING_MAX bytes. */
#define ACCESS_LINE_MAX 16384
#define ACCESS_STRING_MAX 512

/* A UDP association's datagram counters. */
struct access_udp {
    uint64_t up, down; /* datagrams relayed each way */
    uint64_t drop_stranger, drop_frag, drop_malformed, drop_filtered, drop_resolve, drop_queue,
        drop_send, drop_oversize, drop_blocked;
    bool sealed; /* a tunnel's association: the sealed datagrams' drops below are shown */
    uint64_t drop_auth, drop_replay, drop_old;
};

/* A session's access line. NULL strings are absent ("-" in text, null in JSON, no key in
 * logfmt). user and target are as the client sent them: any bytes, escaped here. */
struct access_record {
    const char *client; /* "192.0.2.1:5555" */
    const char *user;   /* user_len bytes, NULL before a login */
    size_t user_len;
    const char *cmd_prefix; /* the front end's ("", "socks4-", "http-") */
    const char *cmd;        /* "connect"..., NULL before a request */
    const char *method;     /* a forwarded HTTP request's method, NULL for others */
    int status;             /* its response status, 0 none (yet) */
    const char *target;     /* "host:port" as asked (target_len bytes), NULL before a request */
    size_t target_len;
    const char *addr;             /* the address connected to, NULL none */
    unsigned route;               /* the rule number of the route taken, 0 none */
    const char *via;              /* the path it left by, NULL none */
    const char *reply;            /* the reply's name, NULL before a reply */
    const char *rule;             /* the refusing rule: "request:3", "private"; NULL none */
    const char *limit;            /* the limit reached: "max-sessions", "rule:3"; NULL none */
    uint64_t up, down;            /* bytes */
    double duration;              /* seconds */
    const char *end;              /* why it ended */
    const struct access_udp *udp; /* a UDP association's counters, NULL for others */
};

/*
 * The record's fields in format f into out (size bytes, NUL included): text
 * "session client=... end=eof", JSON members '"msg":"session","client":...' (the caller puts
 * them in an object), logfmt "msg=session client=...". Returns the length, or -1 when out is
 * too small (ACCESS_LINE_MAX always suffices).
 */
int access_format(enum access_format f, const struct access_record *r, char *out, size_t size);

/*
 * A string of len bytes (any bytes) as a JSON string, quotes included: '"', '\\', control
 * bytes, DEL and C1 controls escaped, valid UTF-8 kept, each ill-formed sequence (its maximal
 * subpart, as Unicode recommends) replaced by \ufffd. Returns the length or -1 as above.
 */
int access_json_string(const char *s, size_t len, char *out, size_t size);

/* A logfmt value: bare when printable ASCII without '"', '=' and '\\', else a JSON string. */
int access_logfmt_value(const char *s, size_t len, char *out, size_t size);

/* The name of a format ("text", "json", "logfmt") and back (-1 when unknown). */
const char *access_format_name(enum access_format f);
int access_format_from_name(const char *name);

#endif

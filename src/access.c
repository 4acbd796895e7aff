/*
 * The access line in three formats. Text is the historical line (client strings escaped as
 * \xHH by log_escape); JSON and logfmt carry client strings as JSON strings, so user names and
 * domain names come out whole, and no byte of theirs can end a line or a value early.
 */
#include "config.h"

#include "ferry/access.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "ferry/log.h"

/* Strings not from the client (addresses, names from the config) are cut here. */
#define ACCESS_NAME_MAX 128
/* Text: room for an escaped user name, as the access line always had. */
#define TEXT_USER_ROOM (255 * 4 + 1)

struct out {
    char *p;
    size_t size; /* NUL included */
    size_t len;
    bool full;
};

static void put(struct out *o, const char *s, size_t n)
{
    if (o->full || n >= o->size - o->len) {
        o->full = true;
        return;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
    o->p[o->len] = '\0';
}

static void puts_(struct out *o, const char *s)
{
    put(o, s, strlen(s));
}

static void __attribute__((format(printf, 2, 3))) putf(struct out *o, const char *fmt, ...)
{
    char tmp[128];
    va_list ap;
    int r;

    va_start(ap, fmt);
    r = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (r < 0 || (size_t)r >= sizeof(tmp)) {
        o->full = true;
        return;
    }
    put(o, tmp, (size_t)r);
}

/* At most max bytes of s, not ending inside a UTF-8 sequence that was whole. */
static size_t cut(const char *s, size_t len, size_t max)
{
    size_t n = len;

    if (n <= max)
        return n;
    n = max;
    for (int i = 0; i < 3 && n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80; i++)
        n--;
    return n;
}

/* A name not from the client, cut to ACCESS_NAME_MAX bytes. */
static void put_name(struct out *o, const char *s)
{
    put(o, s, cut(s, strlen(s), ACCESS_NAME_MAX));
}

/* Seconds as "%.3f", a nonsense figure as 0. */
static void put_duration(struct out *o, double d)
{
    putf(o, "%.3f", isfinite(d) && d > -1e9 && d < 1e9 ? d : 0.0);
}

static int finish(struct out *o)
{
    return o->full ? -1 : (int)o->len;
}

/*
 * The UTF-8 sequence at s (n > 0 bytes): its length with *cp set, or 0 with *bad the length
 * of its maximal ill-formed subpart (Unicode 15, 3.9 "U+FFFD substitution"), at least 1.
 */
static size_t utf8_next(const unsigned char *s, size_t n, uint32_t *cp, size_t *bad)
{
    unsigned char c = s[0], lo = 0x80, hi = 0xbf;
    size_t need;
    uint32_t v;

    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c >= 0xc2 && c <= 0xdf) {
        need = 1;
        v = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        need = 2;
        v = c & 0x0f;
        lo = c == 0xe0 ? 0xa0 : 0x80; /* no overlong form */
        hi = c == 0xed ? 0x9f : 0xbf; /* no surrogate */
    } else if (c >= 0xf0 && c <= 0xf4) {
        need = 3;
        v = c & 0x07;
        lo = c == 0xf0 ? 0x90 : 0x80; /* no overlong form */
        hi = c == 0xf4 ? 0x8f : 0xbf; /* nothing past U+10FFFF */
    } else {
        *bad = 1;
        return 0;
    }
    for (size_t i = 1; i <= need; i++) {
        if (i >= n || s[i] < lo || s[i] > hi) {
            *bad = i;
            return 0;
        }
        v = v << 6 | (s[i] & 0x3f);
        lo = 0x80;
        hi = 0xbf;
    }
    *cp = v;
    return need + 1;
}

static void put_json(struct out *o, const char *text, size_t len)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t i = 0;

    put(o, "\"", 1);
    while (i < len && !o->full) {
        uint32_t cp = 0;
        size_t bad = 0, n = utf8_next(s + i, len - i, &cp, &bad);

        if (n == 0) {
            put(o, "\\ufffd", 6);
            i += bad;
            continue;
        }
        switch (cp) {
        case '"':
            put(o, "\\\"", 2);
            break;
        case '\\':
            put(o, "\\\\", 2);
            break;
        case '\n':
            put(o, "\\n", 2);
            break;
        case '\r':
            put(o, "\\r", 2);
            break;
        case '\t':
            put(o, "\\t", 2);
            break;
        default:
            /* Controls (C0, DEL, C1) and the line separators as escapes: nothing a terminal or
             * a JavaScript reader could take for a command or a line end. */
            if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || cp == 0x2028 || cp == 0x2029)
                putf(o, "\\u%04" PRIx32, cp);
            else
                put(o, text + i, n);
        }
        i += n;
    }
    put(o, "\"", 1);
}

static bool logfmt_bare(const char *s, size_t len)
{
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];

        if (ch <= 0x20 || ch >= 0x7f || ch == '"' || ch == '=' || ch == '\\')
            return false;
    }
    return true;
}

static void put_logfmt(struct out *o, const char *s, size_t len)
{
    if (logfmt_bare(s, len))
        put(o, s, len);
    else
        put_json(o, s, len);
}

int access_json_string(const char *s, size_t len, char *out, size_t size)
{
    struct out o = {out, size, 0, size == 0};

    if (size > 0)
        out[0] = '\0';
    put_json(&o, s, len);
    return finish(&o);
}

int access_logfmt_value(const char *s, size_t len, char *out, size_t size)
{
    struct out o = {out, size, 0, size == 0};

    if (size > 0)
        out[0] = '\0';
    put_logfmt(&o, s, len);
    return finish(&o);
}

static const char *const format_names[] = {
    [ACCESS_TEXT] = "text",
    [ACCESS_JSON] = "json",
    [ACCESS_LOGFMT] = "logfmt",
};

const char *access_format_name(enum access_format f)
{
    return (unsigned)f < sizeof(format_names) / sizeof(format_names[0]) ? format_names[f] : "?";
}

int access_format_from_name(const char *name)
{
    for (size_t i = 0; i < sizeof(format_names) / sizeof(format_names[0]); i++) {
        if (strcmp(name, format_names[i]) == 0)
            return (int)i;
    }
    return -1;
}

/* --- text: the line as it always was ------------------------------------------------------ */

static void put_text_escaped(struct out *o, const char *s, size_t len, size_t room)
{
    char buf[LOG_ESCAPED(ACCESS_STRING_MAX)];

    if (room > sizeof(buf))
        room = sizeof(buf);
    puts_(o, log_escape(s, len, buf, room));
}

static void format_text(struct out *o, const struct access_record *r)
{
    const struct access_udp *u = r->udp;

    puts_(o, "session client=");
    put_name(o, r->client != NULL ? r->client : "-");
    puts_(o, " user=");
    if (r->user != NULL)
        put_text_escaped(o, r->user, r->user_len, TEXT_USER_ROOM);
    else
        puts_(o, "-");
    puts_(o, " cmd=");
    if (r->cmd != NULL) {
        put_name(o, r->cmd_prefix != NULL ? r->cmd_prefix : "");
        put_name(o, r->cmd);
    } else {
        puts_(o, "-");
    }
    if (r->method != NULL) {
        puts_(o, " method=");
        put_name(o, r->method);
        if (r->status > 0)
            putf(o, " status=%d", r->status);
        else
            puts_(o, " status=-");
    }
    puts_(o, " target=");
    if (r->target != NULL) {
        size_t n = cut(r->target, r->target_len, ACCESS_STRING_MAX);

        put_text_escaped(o, r->target, n, LOG_ESCAPED(n));
    } else {
        puts_(o, "-");
    }
    puts_(o, " addr=");
    put_name(o, r->addr != NULL ? r->addr : "-");
    if (r->via != NULL) {
        if (r->route != 0)
            putf(o, " route=%u", r->route);
        puts_(o, " via=");
        put_name(o, r->via);
    }
    puts_(o, " reply=");
    put_name(o, r->reply != NULL ? r->reply : "-");
    if (r->rule != NULL || r->limit != NULL) {
        puts_(o, r->rule != NULL ? " rule=" : " limit=");
        put_name(o, r->rule != NULL ? r->rule : r->limit);
    }
    putf(o, " up=%" PRIu64 " down=%" PRIu64 " duration=", r->up, r->down);
    put_duration(o, r->duration);
    puts_(o, " end=");
    put_name(o, r->end != NULL ? r->end : "-");
    if (u != NULL) {
        putf(o, " udp=up:%" PRIu64 "/down:%" PRIu64, u->up, u->down);
        putf(o, " drop=stranger:%" PRIu64 ",frag:%" PRIu64 ",malformed:%" PRIu64, u->drop_stranger,
             u->drop_frag, u->drop_malformed);
        putf(o, ",filtered:%" PRIu64 ",resolve:%" PRIu64 ",queue:%" PRIu64, u->drop_filtered,
             u->drop_resolve, u->drop_queue);
        putf(o, ",send:%" PRIu64 ",oversize:%" PRIu64 ",blocked:%" PRIu64, u->drop_send,
             u->drop_oversize, u->drop_blocked);
        if (u->sealed)
            putf(o, ",auth:%" PRIu64 ",replay:%" PRIu64 ",old:%" PRIu64, u->drop_auth,
                 u->drop_replay, u->drop_old);
    }
}

/* --- JSON and logfmt: one writer, keyed fields ------------------------------------------- */

struct keyed {
    struct out *o;
    bool json;
    bool first;
};

static void key(struct keyed *k, const char *name)
{
    if (k->json) {
        puts_(k->o, k->first ? "\"" : ",\"");
        puts_(k->o, name);
        puts_(k->o, "\":");
    } else {
        if (!k->first)
            puts_(k->o, " ");
        puts_(k->o, name);
        puts_(k->o, "=");
    }
    k->first = false;
}

/* A string field; an absent one is null in JSON and left out in logfmt. */
static void field_str(struct keyed *k, const char *name, const char *s, size_t len, size_t max)
{
    if (s == NULL) {
        if (k->json) {
            key(k, name);
            puts_(k->o, "null");
        }
        return;
    }
    key(k, name);
    len = cut(s, len, max);
    if (k->json)
        put_json(k->o, s, len);
    else
        put_logfmt(k->o, s, len);
}

static void field_name(struct keyed *k, const char *name, const char *s)
{
    field_str(k, name, s, s != NULL ? strlen(s) : 0, ACCESS_NAME_MAX);
}

static void field_u64(struct keyed *k, const char *name, uint64_t v)
{
    key(k, name);
    putf(k->o, "%" PRIu64, v);
}

static void format_keyed(struct out *o, const struct access_record *r, bool json)
{
    struct keyed k = {o, json, true};
    const struct access_udp *u = r->udp;
    char cmd[ACCESS_NAME_MAX * 2 + 1];

    field_name(&k, "msg", "session");
    field_name(&k, "client", r->client);
    field_str(&k, "user", r->user, r->user_len, ACCESS_STRING_MAX);
    if (r->cmd != NULL)
        snprintf(cmd, sizeof(cmd), "%s%s", r->cmd_prefix != NULL ? r->cmd_prefix : "", r->cmd);
    field_name(&k, "cmd", r->cmd != NULL ? cmd : NULL);
    if (r->method != NULL) {
        field_name(&k, "method", r->method);
        if (r->status > 0)
            field_u64(&k, "status", (uint64_t)r->status);
        else
            field_name(&k, "status", NULL);
    }
    field_str(&k, "target", r->target, r->target_len, ACCESS_STRING_MAX);
    field_name(&k, "addr", r->addr);
    if (r->route != 0)
        field_u64(&k, "route", r->route);
    if (r->via != NULL)
        field_name(&k, "via", r->via);
    field_name(&k, "reply", r->reply);
    if (r->rule != NULL)
        field_name(&k, "rule", r->rule);
    else if (r->limit != NULL)
        field_name(&k, "limit", r->limit);
    field_u64(&k, "up", r->up);
    field_u64(&k, "down", r->down);
    key(&k, "duration");
    put_duration(o, r->duration);
    field_name(&k, "end", r->end != NULL ? r->end : "-");
    if (u == NULL)
        return;
    if (json) {
        putf(o, ",\"udp\":{\"up\":%" PRIu64 ",\"down\":%" PRIu64, u->up, u->down);
        putf(o, ",\"drop\":{\"stranger\":%" PRIu64 ",\"frag\":%" PRIu64 ",\"malformed\":%" PRIu64,
             u->drop_stranger, u->drop_frag, u->drop_malformed);
        putf(o, ",\"filtered\":%" PRIu64 ",\"resolve\":%" PRIu64 ",\"queue\":%" PRIu64,
             u->drop_filtered, u->drop_resolve, u->drop_queue);
        putf(o, ",\"send\":%" PRIu64 ",\"oversize\":%" PRIu64 ",\"blocked\":%" PRIu64, u->drop_send,
             u->drop_oversize, u->drop_blocked);
        if (u->sealed)
            putf(o, ",\"auth\":%" PRIu64 ",\"replay\":%" PRIu64 ",\"old\":%" PRIu64, u->drop_auth,
                 u->drop_replay, u->drop_old);
        puts_(o, "}}");
        return;
    }
    field_u64(&k, "udp_up", u->up);
    field_u64(&k, "udp_down", u->down);
    field_u64(&k, "drop_stranger", u->drop_stranger);
    field_u64(&k, "drop_frag", u->drop_frag);
    field_u64(&k, "drop_malformed", u->drop_malformed);
    field_u64(&k, "drop_filtered", u->drop_filtered);
    field_u64(&k, "drop_resolve", u->drop_resolve);
    field_u64(&k, "drop_queue", u->drop_queue);
    field_u64(&k, "drop_send", u->drop_send);
    field_u64(&k, "drop_oversize", u->drop_oversize);
    field_u64(&k, "drop_blocked", u->drop_blocked);
    if (u->sealed) {
        field_u64(&k, "drop_auth", u->drop_auth);
        field_u64(&k, "drop_replay", u->drop_replay);
        field_u64(&k, "drop_old", u->drop_old);
    }
}

int access_format(enum access_format f, const struct access_record *r, char *out, size_t size)
{
    struct out o = {out, size, 0, size == 0};

    if (size > 0)
        out[0] = '\0';
    if (f == ACCESS_TEXT)
        format_text(&o, r);
    else
        format_keyed(&o, r, f == ACCESS_JSON);
    return finish(&o);
}

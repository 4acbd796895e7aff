/* HTTP/1.1 framing for forwarding (http_frame.h): body scanner, response heads, rewriting. */
#include "config.h"

#include <string.h>
#include <strings.h>

#include "ferry/http_frame.h"

/* The chunked coding's syntax (RFC 9112 section 7.1), one state per place a byte can be. */
enum {
    CH_SIZE_FIRST, /* the first hex digit of a chunk size */
    CH_SIZE,       /* more digits, or the line's end or extensions */
    CH_EXT,        /* chunk extensions up to CR */
    CH_SIZE_LF,    /* LF after the size line */
    CH_DATA,       /* chunk data */
    CH_DATA_CR,    /* CRLF after the data */
    CH_DATA_LF,
    CH_TRAILER_START, /* a trailer field line, or CR of the final empty line */
    CH_TRAILER,       /* inside a trailer field line */
    CH_TRAILER_LF,    /* LF ending a trailer field line */
    CH_END_LF,        /* LF of the final empty line */
};

static int hex_value(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

void http_body_init(struct http_body *b, enum http_body_kind kind, uint64_t length)
{
    memset(b, 0, sizeof(*b));
    b->kind = kind;
    b->left = length;
    b->state = CH_SIZE_FIRST;
    b->done = kind == HTTP_BODY_NONE || (kind == HTTP_BODY_LENGTH && length == 0);
}

static ssize_t chunked_scan(struct http_body *b, const uint8_t *buf, size_t len)
{
    size_t i = 0;

    while (i < len && !b->done) {
        uint8_t c = buf[i];
        int h;

        switch (b->state) {
        case CH_SIZE_FIRST:
        case CH_SIZE:
            h = hex_value(c);
            if (h >= 0) {
                /* 15 hex digits at most: a size below 2^60 never overflows. */
                if (b->left >> 56 != 0)
                    return -1;
                b->left = b->left << 4 | (uint64_t)h;
                b->state = CH_SIZE;
            } else if (b->state == CH_SIZE_FIRST) {
                return -1;
            } else if (c == '\r') {
                b->state = CH_SIZE_LF;
            } else if (c == ';' || c == ' ' || c == '\t') {
                b->state = CH_EXT;
            } else {
                return -1;
            }
            if (++b->taken > HTTP_CHUNK_LINE_MAX)
                return -1;
            i++;
            break;
        case CH_EXT:
            if (c == '\r')
                b->state = CH_SIZE_LF;
            else if ((c < 0x20 && c != '\t') || c == 0x7f)
                return -1;
            if (++b->taken > HTTP_CHUNK_LINE_MAX)
                return -1;
            i++;
            break;
        case CH_SIZE_LF:
            if (c != '\n')
                return -1;
            b->taken = 0;
            b->state = b->left == 0 ? CH_TRAILER_START : CH_DATA;
            i++;
            break;
        case CH_DATA: {
            size_t n = len - i;

            if ((uint64_t)n > b->left)
                n = (size_t)b->left;
            b->left -= n;
            i += n;
            if (b->left == 0)
                b->state = CH_DATA_CR;
            break;
        }
        case CH_DATA_CR:
            if (c != '\r')
                return -1;
            b->state = CH_DATA_LF;
            i++;
            break;
        case CH_DATA_LF:
            if (c != '\n')
                return -1;
            b->state = CH_SIZE_FIRST;
            b->taken = 0;
            i++;
            break;
        case CH_TRAILER_START:
        case CH_TRAILER:
            if (c == '\r') {
                b->state = b->state == CH_TRAILER_START ? CH_END_LF : CH_TRAILER_LF;
            } else if ((c < 0x20 && c != '\t') || c == 0x7f) {
                return -1;
            } else {
                b->state = CH_TRAILER;
            }
            if (++b->taken > HTTP_TRAILER_MAX)
                return -1;
            i++;
            break;
        case CH_TRAILER_LF:
            if (c != '\n')
                return -1;
            b->state = CH_TRAILER_START;
            i++;
            break;
        case CH_END_LF:
            if (c != '\n')
                return -1;
            b->done = true;
            i++;
            break;
        default:
            return -1;
        }
    }
    return (ssize_t)i;
}

ssize_t http_body_scan(struct http_body *b, const uint8_t *buf, size_t len)
{
    size_t n;

    if (b->done)
        return 0;
    switch (b->kind) {
    case HTTP_BODY_LENGTH:
        n = (uint64_t)len < b->left ? len : (size_t)b->left;
        b->left -= n;
        b->done = b->left == 0;
        return (ssize_t)n;
    case HTTP_BODY_CHUNKED:
        return chunked_scan(b, buf, len);
    case HTTP_BODY_CLOSE:
        return (ssize_t)len;
    default:
        return 0;
    }
}

/* --- response heads ---------------------------------------------------------------------- */

static bool is_tchar(uint8_t c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static bool equal_nocase(const uint8_t *p, size_t len, const char *word)
{
    return strlen(word) == len && strncasecmp((const char *)p, word, len) == 0;
}

/* Trim optional whitespace from both ends of [*p, *p + *len). */
static void trim_ows(const uint8_t **p, size_t *len)
{
    while (*len > 0 && ((*p)[0] == ' ' || (*p)[0] == '\t')) {
        (*p)++;
        (*len)--;
    }
    while (*len > 0 && ((*p)[*len - 1] == ' ' || (*p)[*len - 1] == '\t'))
        (*len)--;
}

/*
 * Split a field line into name and trimmed value. false when it is not name ":" value (an
 * obs-fold line starting with whitespace is not: RFC 9112 section 5.2).
 */
static bool split_field(const uint8_t *line, size_t len, const uint8_t **value, size_t *vlen,
                        size_t *nlen)
{
    const uint8_t *colon = memchr(line, ':', len);

    if (colon == NULL || colon == line)
        return false;
    *nlen = (size_t)(colon - line);
    for (size_t i = 0; i < *nlen; i++) {
        if (!is_tchar(line[i]))
            return false;
    }
    *value = colon + 1;
    *vlen = len - *nlen - 1;
    trim_ows(value, vlen);
    for (size_t i = 0; i < *vlen; i++) {
        if (((*value)[i] < 0x20 && (*value)[i] != '\t') || (*value)[i] == 0x7f)
            return false;
    }
    return true;
}

/* Call fn on each comma-separated, trimmed element of a list value (empty ones skipped). */
#define FOR_EACH_ELEMENT(v, vlen, el, ellen, body)                                                 \
    for (size_t i_ = 0; i_ < (vlen);) {                                                            \
        size_t j_ = i_;                                                                            \
        const uint8_t *el = (v) + i_;                                                              \
        size_t ellen;                                                                              \
        while (j_ < (vlen) && (v)[j_] != ',')                                                      \
            j_++;                                                                                  \
        ellen = j_ - i_;                                                                           \
        trim_ows(&el, &ellen);                                                                     \
        if (ellen > 0) {                                                                           \
            body                                                                                   \
        }                                                                                          \
        i_ = j_ + 1;                                                                               \
    }

static bool parse_response_field(const uint8_t *line, size_t len, struct http_response_head *out)
{
    const uint8_t *v;
    size_t vlen, nlen;

    if (!split_field(line, len, &v, &vlen, &nlen))
        return false;
    if (equal_nocase(line, nlen, "Content-Length")) {
        uint64_t n = 0;

        if (vlen == 0 || vlen > 18)
            return false;
        for (size_t i = 0; i < vlen; i++) {
            if (v[i] < '0' || v[i] > '9')
                return false;
            n = n * 10 + (uint64_t)(v[i] - '0');
        }
        if (out->has_length && out->content_length != n)
            return false;
        out->has_length = true;
        out->content_length = n;
    } else if (equal_nocase(line, nlen, "Transfer-Encoding")) {
        /* Only the last coding counts (several fields make one list). */
        FOR_EACH_ELEMENT(v, vlen, el, ellen, { out->chunked = equal_nocase(el, ellen, "chunked"); })
        out->coded = true;
    } else if (equal_nocase(line, nlen, "Connection")) {
        FOR_EACH_ELEMENT(v, vlen, el, ellen, {
            if (equal_nocase(el, ellen, "close"))
                out->close = true;
            else if (equal_nocase(el, ellen, "keep-alive") && out->version_minor == 0)
                out->close = false;
        })
    }
    return true;
}

enum proto_status http_parse_response_head(const uint8_t *buf, size_t len, size_t cap,
                                           struct http_response_head *out, size_t *consumed)
{
    size_t limit = len < cap ? len : cap, pos = 0;
    bool first = true;

    memset(out, 0, sizeof(*out));
    for (;;) {
        const uint8_t *nl = memchr(buf + pos, '\n', limit - pos);
        const uint8_t *line = buf + pos;
        size_t line_len;

        if (nl == NULL)
            return len >= cap ? PROTO_ERROR : PROTO_NEED_MORE;
        line_len = (size_t)(nl - line);
        if (line_len > 0 && line[line_len - 1] == '\r')
            line_len--;
        pos = (size_t)(nl - buf) + 1;
        if (first) {
            /* HTTP/1.x SP 3DIGIT SP reason (the reason may be empty, its SP too) */
            if (line_len < 12 || memcmp(line, "HTTP/1.", 7) != 0 || line[7] < '0' ||
                line[7] > '9' || line[8] != ' ')
                return PROTO_ERROR;
            for (int i = 9; i < 12; i++) {
                if (line[i] < '0' || line[i] > '9')
                    return PROTO_ERROR;
            }
            if (line_len > 12 && line[12] != ' ')
                return PROTO_ERROR;
            out->version_minor = (uint8_t)(line[7] - '0');
            out->status = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
            if (out->status < 100)
                return PROTO_ERROR;
            out->close = out->version_minor == 0;
            first = false;
        } else if (line_len == 0) {
            *consumed = pos;
            return PROTO_OK;
        } else if (!parse_response_field(line, line_len, out)) {
            return PROTO_ERROR;
        }
    }
}

enum http_body_kind http_response_framing(const struct http_response_head *h, bool head_request)
{
    if (head_request || h->status < 200 || h->status == 204 || h->status == 304)
        return HTTP_BODY_NONE;
    if (h->coded)
        return h->chunked ? HTTP_BODY_CHUNKED : HTTP_BODY_CLOSE;
    if (h->has_length)
        return HTTP_BODY_LENGTH;
    return HTTP_BODY_CLOSE;
}

/* --- rewriting --------------------------------------------------------------------------- */

/* Connection options ferry tracks in one head; more make the head malformed. */
#define CONNECTION_OPTIONS_MAX 32

struct option {
    const uint8_t *p;
    size_t len;
};

static bool hop_by_hop(const uint8_t *name, size_t len, const struct http_rewrite *rw,
                       const struct option *opts, size_t nopts)
{
    static const char *const fields[] = {
        "Connection",        "Proxy-Connection", "Keep-Alive",          "TE",
        "Trailer",           "Upgrade",          "Proxy-Authorization", "Proxy-Authenticate",
        "Transfer-Encoding",
    };

    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        if (equal_nocase(name, len, fields[i]))
            return true;
    }
    if (rw->drop_host && equal_nocase(name, len, "Host"))
        return true;
    if (rw->drop_length && equal_nocase(name, len, "Content-Length"))
        return true;
    for (size_t i = 0; i < nopts; i++) {
        if (opts[i].len == len &&
            strncasecmp((const char *)opts[i].p, (const char *)name, len) == 0)
            return true;
    }
    return false;
}

/* Append n bytes at *pos in out; false when they do not fit. */
static bool put(uint8_t *out, size_t size, size_t *pos, const void *p, size_t n)
{
    if (n > size - *pos)
        return false;
    memcpy(out + *pos, p, n);
    *pos += n;
    return true;
}

/* The next line of head from *pos: its start and length without CR LF. false at the end. */
static bool next_line(const uint8_t *head, size_t len, size_t *pos, const uint8_t **line,
                      size_t *line_len)
{
    const uint8_t *nl;

    if (*pos >= len)
        return false;
    *line = head + *pos;
    nl = memchr(*line, '\n', len - *pos);
    if (nl == NULL) {
        *line_len = len - *pos;
        *pos = len;
    } else {
        *line_len = (size_t)(nl - *line);
        *pos = (size_t)(nl - head) + 1;
    }
    if (*line_len > 0 && (*line)[*line_len - 1] == '\r')
        (*line_len)--;
    return true;
}

size_t http_rewrite_head(const uint8_t *head, size_t len, const struct http_rewrite *rw,
                         uint8_t *out, size_t size)
{
    struct option opts[CONNECTION_OPTIONS_MAX];
    size_t nopts = 0, pos = 0, fields_at, o = 0, line_len;
    const uint8_t *line;

    /* The start line: the first one that is not empty. */
    do {
        if (!next_line(head, len, &pos, &line, &line_len))
            return 0;
    } while (line_len == 0);
    fields_at = pos;
    /* Pass one: the options Connection names are hop-by-hop too (RFC 9110 section 7.6.1). */
    while (next_line(head, len, &pos, &line, &line_len) && line_len > 0) {
        const uint8_t *v;
        size_t vlen, nlen;

        if (!split_field(line, line_len, &v, &vlen, &nlen))
            return 0;
        if (!equal_nocase(line, nlen, "Connection"))
            continue;
        FOR_EACH_ELEMENT(v, vlen, el, ellen, {
            if (nopts == CONNECTION_OPTIONS_MAX)
                return 0;
            opts[nopts].p = el;
            opts[nopts].len = ellen;
            nopts++;
        })
    }
    /* Pass two: the start line, the end-to-end fields, the added ones. */
    if (!put(out, size, &o, rw->start, strlen(rw->start)) || !put(out, size, &o, "\r\n", 2))
        return 0;
    pos = fields_at;
    while (next_line(head, len, &pos, &line, &line_len) && line_len > 0) {
        const uint8_t *colon = memchr(line, ':', line_len);

        if (hop_by_hop(line, (size_t)(colon - line), rw, opts, nopts))
            continue;
        if (!put(out, size, &o, line, line_len) || !put(out, size, &o, "\r\n", 2))
            return 0;
    }
    if ((rw->add != NULL && !put(out, size, &o, rw->add, strlen(rw->add))) ||
        !put(out, size, &o, "\r\n", 2))
        return 0;
    return o;
}

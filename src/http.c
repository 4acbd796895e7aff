/* HTTP/1.1 proxy request heads (http.h): an incremental, pure parser, and response heads. */
#include "config.h"

#include <arpa/inet.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "ferry/http.h"

/* RFC 9110 section 5.6.2: tchar. */
static bool is_tchar(uint8_t c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static bool is_digit(uint8_t c)
{
    return c >= '0' && c <= '9';
}

static bool equal_nocase(const uint8_t *p, size_t len, const char *word)
{
    return strlen(word) == len && strncasecmp((const char *)p, word, len) == 0;
}

static enum http_method method_of(const uint8_t *p, size_t len)
{
    static const struct {
        const char *name;
        enum http_method m;
    } methods[] = {
        {"CONNECT", HTTP_CONNECT}, {"GET", HTTP_GET},     {"HEAD", HTTP_HEAD},
        {"POST", HTTP_POST},       {"PUT", HTTP_PUT},     {"DELETE", HTTP_DELETE},
        {"OPTIONS", HTTP_OPTIONS}, {"PATCH", HTTP_PATCH}, {"TRACE", HTTP_TRACE},
    };

    /* Methods are case-sensitive (RFC 9110 section 9.1). */
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        if (strlen(methods[i].name) == len && memcmp(p, methods[i].name, len) == 0)
            return methods[i].m;
    }
    return HTTP_OTHER;
}

/* A decimal port 1-65535 in p[0..len). Returns it, or 0. */
static uint16_t parse_port(const uint8_t *p, size_t len)
{
    unsigned v = 0;

    if (len == 0 || len > 5)
        return 0;
    for (size_t i = 0; i < len; i++) {
        if (!is_digit(p[i]))
            return 0;
        v = v * 10 + (unsigned)(p[i] - '0');
    }
    return v > 0 && v <= 65535 ? (uint16_t)v : 0;
}

/*
 * host[:port] in p[0..len) into dest: an IPv4 literal, a bracketed IPv6 literal, or a host name
 * (letters, digits, '-', '.', '_'). Without a port, default_port (0: a port is required).
 */
static bool parse_authority(const uint8_t *p, size_t len, uint16_t default_port,
                            struct socks_dest *dest)
{
    const uint8_t *host = p, *colon = NULL;
    size_t hlen;
    char text[DEST_NAME_MAX + 1];

    memset(dest, 0, sizeof(*dest));
    if (len > 0 && p[0] == '[') {
        const uint8_t *end = memchr(p, ']', len);

        if (end == NULL)
            return false;
        host = p + 1;
        hlen = (size_t)(end - host);
        if ((size_t)(end + 1 - p) < len) {
            if (end[1] != ':')
                return false;
            colon = end + 1;
        }
        if (hlen == 0 || hlen >= INET6_ADDRSTRLEN)
            return false;
        memcpy(text, host, hlen);
        text[hlen] = '\0';
        if (inet_pton(AF_INET6, text, dest->ip) != 1)
            return false;
        dest->type = DEST_IPV6;
    } else {
        colon = memchr(p, ':', len);
        hlen = colon != NULL ? (size_t)(colon - p) : len;
        if (hlen == 0 || hlen > DEST_NAME_MAX)
            return false;
        for (size_t i = 0; i < hlen; i++) {
            uint8_t c = p[i];

            if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                  c == '-' || c == '.' || c == '_'))
                return false;
        }
        memcpy(text, p, hlen);
        text[hlen] = '\0';
        if (inet_pton(AF_INET, text, dest->ip) == 1) {
            dest->type = DEST_IPV4;
        } else {
            dest->type = DEST_NAME;
            memcpy(dest->name, text, hlen + 1);
        }
    }
    if (colon != NULL) {
        dest->port = parse_port(colon + 1, (size_t)(p + len - (colon + 1)));
        return dest->port != 0;
    }
    dest->port = default_port;
    return default_port != 0;
}

/* The request target of the request line, judged against the method. */
static bool parse_target(const uint8_t *buf, size_t off, size_t len, struct http_request *out)
{
    const uint8_t *t = buf + off;

    if (out->method == HTTP_CONNECT) {
        out->form = HTTP_TARGET_AUTHORITY;
        return parse_authority(t, len, 0, &out->dest);
    }
    if (len == 1 && t[0] == '*') {
        out->form = HTTP_TARGET_ASTERISK;
        return true;
    }
    if (t[0] == '/') {
        out->form = HTTP_TARGET_ORIGIN;
        return true;
    }
    if (len > 7 && strncasecmp((const char *)t, "http://", 7) == 0) {
        t += 7;
        len -= 7;
    } else if (len > 8 && strncasecmp((const char *)t, "https://", 8) == 0) {
        out->https = true;
        t += 8;
        len -= 8;
    } else {
        return false;
    }
    out->form = HTTP_TARGET_ABSOLUTE;
    {
        size_t alen = 0;

        while (alen < len && t[alen] != '/' && t[alen] != '?')
            alen++;
        /* RFC 9110 section 4.2.4: a sender must not put userinfo in an http(s) URI. */
        if (memchr(t, '@', alen) != NULL)
            return false;
        if (!parse_authority(t, alen, out->https ? 443 : 80, &out->dest))
            return false;
        out->path_off = (size_t)(t + alen - buf);
        out->path_len = len - alen;
    }
    return true;
}

/* method SP request-target SP HTTP-version (RFC 9112 section 3). 0, or the error status. */
static int parse_request_line(const uint8_t *buf, size_t off, size_t len, struct http_request *out)
{
    const uint8_t *line = buf + off, *sp1, *sp2;
    size_t mlen, tlen;

    sp1 = memchr(line, ' ', len);
    if (sp1 == NULL || sp1 == line)
        return 400;
    mlen = (size_t)(sp1 - line);
    for (size_t i = 0; i < mlen; i++) {
        if (!is_tchar(line[i]))
            return 400;
    }
    sp2 = memchr(sp1 + 1, ' ', len - mlen - 1);
    if (sp2 == NULL || sp2 == sp1 + 1)
        return 400;
    tlen = (size_t)(sp2 - (sp1 + 1));
    for (size_t i = 0; i < tlen; i++) {
        if (sp1[1 + i] <= 0x20 || sp1[1 + i] >= 0x7f)
            return 400;
    }
    if ((size_t)(line + len - (sp2 + 1)) != 8 || memcmp(sp2 + 1, "HTTP/", 5) != 0)
        return 400;
    if (sp2[6] != '1' || sp2[7] != '.' || !is_digit(sp2[8]))
        return is_digit(sp2[6]) && sp2[7] == '.' && is_digit(sp2[8]) ? 505 : 400;
    out->version_minor = (uint8_t)(sp2[8] - '0');
    out->close = out->version_minor == 0;
    out->method = method_of(line, mlen);
    return parse_target(buf, (size_t)(sp1 + 1 - buf), tlen, out) ? 0 : 400;
}

/* Basic credentials (RFC 7617) from a Proxy-Authorization value. */
static void parse_basic(const uint8_t *v, size_t len, struct http_request *out)
{
    unsigned char decoded[600];
    size_t dlen = 0, skip = 0;
    const unsigned char *colon;

    if (len < 6 || strncasecmp((const char *)v, "Basic ", 6) != 0)
        return;
    skip = 6;
    while (skip < len && v[skip] == ' ')
        skip++;
    if (len - skip > 800 ||
        sodium_base642bin(decoded, sizeof(decoded), (const char *)v + skip, len - skip, NULL, &dlen,
                          NULL, sodium_base64_VARIANT_ORIGINAL) != 0)
        return;
    colon = memchr(decoded, ':', dlen);
    if (colon != NULL && (size_t)(colon - decoded) <= 255 &&
        dlen - (size_t)(colon - decoded) - 1 <= 255) {
        out->user_len = (size_t)(colon - decoded);
        memcpy(out->user, decoded, out->user_len);
        out->user[out->user_len] = '\0';
        out->pass_len = dlen - out->user_len - 1;
        memcpy(out->pass, colon + 1, out->pass_len);
        out->pass[out->pass_len] = '\0';
        out->proxy_auth_ok = true;
    }
    sodium_memzero(decoded, sizeof(decoded));
}

/* One header field line. 0, or the error status. */
static int parse_field(const uint8_t *line, size_t len, struct http_request *out)
{
    const uint8_t *colon = memchr(line, ':', len), *v;
    size_t nlen, vlen;

    if (line[0] == ' ' || line[0] == '\t')
        return 400; /* obs-fold: rejected (RFC 9112 section 5.2) */
    if (colon == NULL || colon == line)
        return 400;
    nlen = (size_t)(colon - line);
    for (size_t i = 0; i < nlen; i++) {
        if (!is_tchar(line[i]))
            return 400;
    }
    v = colon + 1;
    vlen = len - nlen - 1;
    while (vlen > 0 && (v[0] == ' ' || v[0] == '\t')) {
        v++;
        vlen--;
    }
    while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
        vlen--;
    for (size_t i = 0; i < vlen; i++) {
        if ((v[i] < 0x20 && v[i] != '\t') || v[i] == 0x7f)
            return 400;
    }
    if (equal_nocase(line, nlen, "Proxy-Authorization")) {
        if (out->proxy_auth)
            return 400;
        out->proxy_auth = true;
        parse_basic(v, vlen, out);
    } else if (equal_nocase(line, nlen, "Content-Length")) {
        uint64_t n = 0;

        if (vlen == 0 || vlen > 18)
            return 400;
        for (size_t i = 0; i < vlen; i++) {
            if (!is_digit(v[i]))
                return 400;
            n = n * 10 + (uint64_t)(v[i] - '0');
        }
        if (out->has_length && out->content_length != n)
            return 400;
        out->has_length = true;
        out->content_length = n;
    } else if (equal_nocase(line, nlen, "Transfer-Encoding")) {
        /* The last coding must be chunked (RFC 9112 section 6.3); anything else is 400. */
        out->chunked = vlen >= 7 && strncasecmp((const char *)v + vlen - 7, "chunked", 7) == 0 &&
                       (vlen == 7 || v[vlen - 8] == ' ' || v[vlen - 8] == ',');
        if (!out->chunked)
            return 400;
    } else if (equal_nocase(line, nlen, "Connection")) {
        for (size_t i = 0; i < vlen;) {
            size_t j = i;

            while (j < vlen && v[j] != ',')
                j++;
            {
                size_t a = i, b = j;

                while (a < b && (v[a] == ' ' || v[a] == '\t'))
                    a++;
                while (b > a && (v[b - 1] == ' ' || v[b - 1] == '\t'))
                    b--;
                if (equal_nocase(v + a, b - a, "close"))
                    out->close = true;
                else if (equal_nocase(v + a, b - a, "keep-alive"))
                    out->close = false;
            }
            i = j + 1;
        }
    }
    return 0;
}

enum proto_status http_parse_request(const uint8_t *buf, size_t len, size_t cap,
                                     struct http_request *out, size_t *consumed, int *status)
{
    size_t limit = len < cap ? len : cap, pos = 0;
    bool first = true;

    memset(out, 0, sizeof(*out));
    for (;;) {
        const uint8_t *nl = memchr(buf + pos, '\n', limit - pos);
        size_t line_len;
        int st;

        if (nl == NULL) {
            /* A request line can only grow: judge its length before the head's. */
            if (first && limit - pos > HTTP_REQUEST_LINE_MAX) {
                *status = 414;
                break;
            }
            if (len >= cap) {
                *status = 431;
                break;
            }
            sodium_memzero(out, sizeof(*out));
            return PROTO_NEED_MORE;
        }
        line_len = (size_t)(nl - (buf + pos));
        if (line_len > 0 && buf[pos + line_len - 1] == '\r')
            line_len--;
        if (first) {
            if (line_len == 0 && pos < 4) {
                /* Up to a few empty lines before the request line are skipped. */
                pos = (size_t)(nl - buf) + 1;
                continue;
            }
            if (line_len > HTTP_REQUEST_LINE_MAX) {
                *status = 414;
                break;
            }
            st = parse_request_line(buf, pos, line_len, out);
            first = false;
        } else if (line_len == 0) {
            if (out->chunked && out->has_length) {
                *status = 400; /* both framings: a smuggling attempt (RFC 9112 section 6.3) */
                break;
            }
            *consumed = (size_t)(nl - buf) + 1;
            return PROTO_OK;
        } else {
            st = parse_field(buf + pos, line_len, out);
        }
        if (st != 0) {
            *status = st;
            break;
        }
        pos = (size_t)(nl - buf) + 1;
    }
    sodium_memzero(out, sizeof(*out));
    return PROTO_ERROR;
}

const char *http_reason(int status)
{
    switch (status) {
    case 200:
        return "Connection established";
    case 400:
        return "Bad Request";
    case 403:
        return "Forbidden";
    case 405:
        return "Method Not Allowed";
    case 407:
        return "Proxy Authentication Required";
    case 414:
        return "URI Too Long";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Unknown";
    }
}

size_t http_response(char *out, size_t size, int status, const char *fields)
{
    int n = snprintf(out, size, "HTTP/1.1 %d %s\r\n%s%s\r\n", status, http_reason(status),
                     fields != NULL ? fields : "",
                     status >= 300 ? "Content-Length: 0\r\nConnection: close\r\n" : "");

    return n > 0 && (size_t)n < size ? (size_t)n : 0;
}

size_t http_response_body(char *out, size_t size, int status, const char *fields, const char *body)
{
    int n = snprintf(out, size, "HTTP/1.1 %d %s\r\n%sConnection: close\r\n\r\n%s", status,
                     http_reason(status), fields != NULL ? fields : "", body);

    return n > 0 && (size_t)n < size ? (size_t)n : 0;
}

const char *http_method_name(enum http_method m)
{
    static const char *const names[] = {
        [HTTP_CONNECT] = "CONNECT", [HTTP_GET] = "GET",     [HTTP_HEAD] = "HEAD",
        [HTTP_POST] = "POST",       [HTTP_PUT] = "PUT",     [HTTP_DELETE] = "DELETE",
        [HTTP_OPTIONS] = "OPTIONS", [HTTP_PATCH] = "PATCH", [HTTP_TRACE] = "TRACE",
        [HTTP_OTHER] = "other",
    };

    return (unsigned)m < sizeof(names) / sizeof(names[0]) ? names[m] : "other";
}

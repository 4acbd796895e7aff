/*
 * The small text parsers every config line and rule goes through: addr_parse (with
 * addr_format round trips), addr_cidr_parse and conf_parse_duration. Input: two bytes of
 * default port, then the text.
 */
#include "config.h"

#include "ferry/acl.h"
#include "ferry/addr.h"
#include "ferry/conf.h"
#include "fuzz.h"

static void check_addr(const struct addr *a, uint16_t default_port, const char *text)
{
    char buf[ADDR_STRLEN], ip[ADDR_STRLEN];
    struct addr back;

    FUZZ_CHECK(addr_family(a) == AF_INET || addr_family(a) == AF_INET6);
    FUZZ_CHECK(addr_equal(a, a) && addr_same_ip(a, a));
    /* No port written means the default port. */
    if (strchr(text, ':') == NULL || (text[0] != '[' && strchr(strchr(text, ':') + 1, ':')))
        FUZZ_CHECK(addr_port(a) == default_port);
    addr_format(a, buf, sizeof(buf));
    FUZZ_CHECK(strnlen(buf, sizeof(buf)) < sizeof(buf));
    FUZZ_CHECK(addr_parse(buf, (uint16_t)(default_port + 1), &back) == 0);
    FUZZ_CHECK(addr_equal(a, &back));
    addr_format_ip(a, ip, sizeof(ip));
    FUZZ_CHECK(addr_parse(ip, addr_port(a), &back) == 0);
    FUZZ_CHECK(addr_equal(a, &back));
    /* Cut-short output stays terminated. */
    addr_format(a, buf, 1 + default_port % sizeof(buf));
    FUZZ_CHECK(strnlen(buf, sizeof(buf)) < 1 + default_port % sizeof(buf));
}

static void check_cidr(const struct addr_cidr *c)
{
    char ip[ADDR_STRLEN], text[ADDR_STRLEN + 8];
    struct addr_cidr back;

    FUZZ_CHECK(c->prefix <= (addr_family(&c->net) == AF_INET ? 32u : 128u));
    FUZZ_CHECK(addr_cidr_contains(c, &c->net));
    addr_format_ip(&c->net, ip, sizeof(ip));
    snprintf(text, sizeof(text), "%s/%u", ip, c->prefix);
    FUZZ_CHECK(addr_cidr_parse(text, &back) == 0);
    FUZZ_CHECK(back.prefix == c->prefix && addr_equal(&back.net, &c->net));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint16_t port = size >= 2 ? (uint16_t)(data[0] << 8 | data[1]) : 1080;
    char *text = fuzz_strdup(data + (size >= 2 ? 2 : 0), size >= 2 ? size - 2 : 0);
    struct addr a;
    struct addr_cidr c;
    double seconds = -1;

    if (addr_parse(text, port, &a) == 0)
        check_addr(&a, port, text);
    if (addr_cidr_parse(text, &c) == 0)
        check_cidr(&c);
    if (conf_parse_duration(text, &seconds) == 0)
        FUZZ_CHECK(seconds >= 0 && seconds <= 1e9);
    free(text);
    return 0;
}

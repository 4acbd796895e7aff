/*
 * ferryd.conf: conf_parse on the input as text. The file name has no directory part, so a
 * 'users' path is only stored (never opened or resolved): nothing here touches the file
 * system. Checks that a parse that succeeds leaves a config within the documented limits
 * (and the safe defaults: no unauthenticated listener others can reach unless asked for),
 * that a failure names file and line, and that a short error buffer is never overrun.
 */
#include "config.h"

#include "ferry/conf.h"
#include "ferry/socks5.h"
#include "fuzz.h"

#define FUZZ_CONF_NAME "fuzz.conf"

static void check_config(const struct config *c, const char *text)
{
    bool noauth = false;

    FUZZ_CHECK(c->nlisten >= 1 && c->nlisten <= CONF_MAX_LISTEN);
    for (size_t i = 0; i < c->nlisten; i++)
        FUZZ_CHECK(addr_family(&c->listen[i]) == AF_INET || addr_family(&c->listen[i]) == AF_INET6);
    FUZZ_CHECK(c->nmethods >= 1 && c->nmethods <= 2);
    for (size_t i = 0; i < c->nmethods; i++) {
        FUZZ_CHECK(c->methods[i] == SOCKS5_METHOD_NOAUTH ||
                   c->methods[i] == SOCKS5_METHOD_USERPASS);
        if (c->methods[i] == SOCKS5_METHOD_USERPASS)
            FUZZ_CHECK(c->users_file != NULL);
        noauth = noauth || c->methods[i] == SOCKS5_METHOD_NOAUTH;
    }
    if (c->nmethods == 2)
        FUZZ_CHECK(c->methods[0] != c->methods[1]);
    /* No directory in the file name: the users path is kept as written. */
    if (c->users_file != NULL)
        FUZZ_CHECK(c->users_file[0] != '\0' && strstr(text, c->users_file) != NULL);
    FUZZ_CHECK((c->resolver_servers == NULL) == (c->nresolver_servers == 0));
    for (size_t i = 0; i < c->nresolver_servers; i++)
        FUZZ_CHECK((addr_family(&c->resolver_servers[i]) == AF_INET ||
                    addr_family(&c->resolver_servers[i]) == AF_INET6) &&
                   addr_port(&c->resolver_servers[i]) != 0);
    FUZZ_CHECK(c->resolver_timeout > 0 && c->resolver_timeout <= 1e9);
    FUZZ_CHECK(c->resolver_tries >= 1 && c->resolver_tries <= 10);
    FUZZ_CHECK(c->timeout_negotiate > 0 && c->timeout_resolve > 0 && c->timeout_connect > 0 &&
               c->timeout_udp > 0 && c->timeout_bind > 0 && c->timeout_idle >= 0);
    FUZZ_CHECK(c->timeout_negotiate <= 1e9 && c->timeout_idle <= 1e9 && c->shutdown_grace >= 0 &&
               c->shutdown_grace <= 1e9);
    FUZZ_CHECK(c->udp_port_min <= c->udp_port_max &&
               (c->udp_port_min == 0) == (c->udp_port_max == 0));
    FUZZ_CHECK(c->bind_port_min <= c->bind_port_max &&
               (c->bind_port_min == 0) == (c->bind_port_max == 0));
    FUZZ_CHECK(c->udp_max_per_client >= 1 && c->udp_max_total >= 1);
    FUZZ_CHECK(c->max_sessions >= 1 && c->auth_threads >= 1 && c->auth_threads <= 64);
    FUZZ_CHECK(c->ntrusted_clients <= CONF_MAX_TRUSTED);
    if (c->allow_unauthenticated) {
        FUZZ_CHECK(acl_rules_count(c->client_rules) >= 1);
    } else if (noauth) {
        for (size_t i = 0; i < c->nlisten; i++)
            FUZZ_CHECK(addr_is_loopback(&c->listen[i]));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_strdup(data, size);
    char err[512];
    struct config c;
    size_t small = 1 + size % 24;
    char *short_err;
    int r, r2;

    r = conf_parse(&c, text, FUZZ_CONF_NAME, err, sizeof(err));
    FUZZ_CHECK(r == 0 || r == -1);
    FUZZ_CHECK(strnlen(err, sizeof(err)) < sizeof(err));
    if (r == 0) {
        FUZZ_CHECK(err[0] == '\0');
        check_config(&c, text);
    } else {
        FUZZ_CHECK(strncmp(err, FUZZ_CONF_NAME ":", strlen(FUZZ_CONF_NAME) + 1) == 0);
    }
    conf_release(&c);

    /* The same text gives the same answer, and a tiny error buffer is not overrun. */
    short_err = malloc(small);
    if (short_err == NULL)
        abort();
    r2 = conf_parse(&c, text, FUZZ_CONF_NAME, short_err, small);
    FUZZ_CHECK(r2 == r);
    FUZZ_CHECK(strnlen(short_err, small) < small);
    conf_release(&c);
    free(short_err);
    free(text);
    return 0;
}

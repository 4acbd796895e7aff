/* The direct outbound (outbound.h): the connector's Happy Eyeballs over the checked addresses. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>

#include "ferry/connector.h"
#include "ferry/outbound.h"
#include "ferry/reply.h"
#include "ferry/socks5.h"

#define CONNECT_ATTEMPT_DELAY 0.250 /* RFC 8305 section 8 recommends 250 ms */

struct direct {
    struct connector *connector;
    outbound_done_cb cb;
    void *arg;
};

static void direct_done(int fd, int err, const struct addr *peer, void *arg)
{
    struct direct *d = arg;
    struct outbound_result res = {
        .fd = fd,
        .err = err,
        .rep = fd >= 0 ? SOCKS5_REP_SUCCEEDED : reply_from_errno(err),
        .peer = peer,
        .via = "direct",
    };
    outbound_done_cb cb = d->cb;
    void *cb_arg = d->arg;

    free(d);
    cb(&res, cb_arg);
}

static struct outbound_conn *direct_start(const struct outbound_request *req, outbound_done_cb cb,
                                          void *arg)
{
    struct direct *d = malloc(sizeof(*d));

    if (d == NULL)
        return NULL;
    d->cb = cb;
    d->arg = arg;
    d->connector = connector_start(req->loop, req->addrs, req->naddrs, req->dest->port,
                                   CONNECT_ATTEMPT_DELAY, direct_done, d);
    if (d->connector == NULL) {
        int err = errno;

        free(d);
        errno = err;
        return NULL;
    }
    return (struct outbound_conn *)d;
}

static const char *direct_current(const struct outbound_conn *c)
{
    (void)c;
    return "direct";
}

static void direct_cancel(struct outbound_conn *c)
{
    struct direct *d = (struct direct *)c;

    connector_cancel(d->connector);
    free(d);
}

const struct outbound outbound_direct = {
    .name = "direct",
    .start = direct_start,
    .cancel = direct_cancel,
    .current = direct_current,
};

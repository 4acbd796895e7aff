/* The direct outbound (outbound.h): the connector's Happy Eyeballs over the checked addresses. */
#include "config.h"

#include "ferry/connector.h"
#include "ferry/outbound.h"

#define CONNECT_ATTEMPT_DELAY 0.250 /* RFC 8305 section 8 recommends 250 ms */

static struct outbound_conn *direct_start(const struct outbound_request *req, outbound_done_cb cb,
                                          void *arg)
{
    return (struct outbound_conn *)connector_start(req->loop, req->addrs, req->naddrs,
                                                   req->dest->port, CONNECT_ATTEMPT_DELAY, cb,
                                                   arg);
}

static void direct_cancel(struct outbound_conn *c)
{
    connector_cancel((struct connector *)c);
}

const struct outbound outbound_direct = {
    .name = "direct",
    .start = direct_start,
    .cancel = direct_cancel,
};

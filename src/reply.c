/* One mapping from failures (errno, resolver status) to SOCKS reply codes. Pure. */
#include "config.h"

#include <errno.h>

#include "ferry/reply.h"
#include "ferry/socks4.h"
#include "ferry/socks5.h"

/* RFC 1928 section 6 gives the codes but not the causes; connect timeouts are reported as
 * TTL expired, as other servers do, so clients can tell them from refusals. */
uint8_t reply_from_errno(int err)
{
    switch (err) {
    case 0:
        return SOCKS5_REP_SUCCEEDED;
    case ECONNREFUSED:
        return SOCKS5_REP_CONNECTION_REFUSED;
    case ENETUNREACH:
    case ENETDOWN:
        return SOCKS5_REP_NETWORK_UNREACHABLE;
    case EHOSTUNREACH:
    case EHOSTDOWN:
        return SOCKS5_REP_HOST_UNREACHABLE;
    case ETIMEDOUT:
        return SOCKS5_REP_TTL_EXPIRED;
    case EACCES:
    case EPERM:
        return SOCKS5_REP_NOT_ALLOWED;
    case EAFNOSUPPORT:
    case EPROTONOSUPPORT:
        return SOCKS5_REP_ADDRESS_TYPE_NOT_SUPPORTED;
    default:
        return SOCKS5_REP_GENERAL_FAILURE;
    }
}

uint8_t reply_from_resolver(enum resolver_status status)
{
    switch (status) {
    case RESOLVER_OK:
        return SOCKS5_REP_SUCCEEDED;
    case RESOLVER_NXDOMAIN:
    case RESOLVER_NODATA:
    case RESOLVER_TIMEOUT:
    case RESOLVER_SERVFAIL:
    case RESOLVER_BADNAME: /* a name that cannot exist is as unresolvable as a missing one */
        return SOCKS5_REP_HOST_UNREACHABLE;
    case RESOLVER_ERROR:
        return SOCKS5_REP_GENERAL_FAILURE;
    }
    return SOCKS5_REP_GENERAL_FAILURE;
}

uint8_t reply_socks4_from_socks5(uint8_t rep)
{
    return rep == SOCKS5_REP_SUCCEEDED ? SOCKS4_CD_GRANTED : SOCKS4_CD_REJECTED;
}

const char *reply_name(uint8_t rep)
{
    switch (rep) {
    case SOCKS5_REP_SUCCEEDED:
        return "succeeded";
    case SOCKS5_REP_GENERAL_FAILURE:
        return "general-failure";
    case SOCKS5_REP_NOT_ALLOWED:
        return "not-allowed";
    case SOCKS5_REP_NETWORK_UNREACHABLE:
        return "network-unreachable";
    case SOCKS5_REP_HOST_UNREACHABLE:
        return "host-unreachable";
    case SOCKS5_REP_CONNECTION_REFUSED:
        return "connection-refused";
    case SOCKS5_REP_TTL_EXPIRED:
        return "ttl-expired";
    case SOCKS5_REP_COMMAND_NOT_SUPPORTED:
        return "command-not-supported";
    case SOCKS5_REP_ADDRESS_TYPE_NOT_SUPPORTED:
        return "address-type-not-supported";
    default:
        return "unknown";
    }
}

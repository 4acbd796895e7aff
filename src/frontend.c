/* Which front end speaks to a client (frontend.h): its first byte tells. */
#include "config.h"

#include "ferry/frontend.h"
#include "ferry/socks4.h"

const struct frontend *frontend_for(uint8_t first)
{
    if (first == SOCKS4_VERSION)
        return &frontend_socks4;
    /* HTTP methods are upper-case tokens (CONNECT, GET, ...). */
    if (first >= 'A' && first <= 'Z')
        return &frontend_http;
    /* SOCKS5's parser says whether the bytes are SOCKS5 (anything else: bad input, closed). */
    return &frontend_socks5;
}

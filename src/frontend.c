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

bool frontend_serves(const struct frontend *fe, unsigned set)
{
    if (fe == &frontend_socks4)
        return (set & FRONTEND_SOCKS4) != 0;
    if (fe == &frontend_http)
        return (set & FRONTEND_HTTP) != 0;
    if (fe == &frontend_socks5)
        return (set & FRONTEND_SOCKS5) != 0;
    return true;
}

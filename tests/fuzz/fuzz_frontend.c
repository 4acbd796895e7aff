/*
 * The SOCKS front ends as the session drives them: the first byte chooses one, then input()
 * runs over the buffer until it needs more or hands the session over. The first input byte
 * sets the configuration's methods and the login answer; the rest is the client's bytes. The
 * same bytes fed whole and in two pieces must give the same steps, answers and request, every
 * `used` stays within what was given, and replies render for the request's address.
 */
#include "config.h"

#include <sys/socket.h>

#include "ferry/conf.h"
#include "ferry/frontend.h"
#include "ferry/socks5.h"
#include "fuzz.h"

#define MAX_STEPS 64

/* What a run did: each step and answer byte, and the request it ended with. */
struct trace {
    uint8_t steps[MAX_STEPS];
    size_t nsteps;
    uint8_t out[MAX_STEPS * FRONTEND_OUT_MAX];
    size_t out_len;
    struct request req;
    uint8_t rep;
    bool ended;
};

/* Feed data[0..len) to the front end in two reads, the first of `split` bytes. */
static void run(const struct config *cfg, bool login_ok, const uint8_t *data, size_t len,
                size_t split, struct trace *t)
{
    uint8_t *buf = malloc(len > 0 ? len : 1);
    const struct frontend *fe = NULL;
    uint8_t state = 0;
    size_t pos = 0, have = 0; /* data[pos..pos+have) is in buf, not yet consumed */

    if (buf == NULL)
        abort();
    memset(t, 0, sizeof(*t));
    for (int reads = 0; reads < 2 && !t->ended; reads++) {
        size_t upto = reads == 0 ? split : len;

        memcpy(buf + have, data + pos + have, upto - pos - have);
        have = upto - pos;
        while (have > 0 && !t->ended && t->nsteps < MAX_STEPS) {
            struct frontend_login login;
            struct frontend_input in = {
                .cfg = cfg,
                .state = &state,
                .buf = buf,
                .len = have,
                .req = &t->req,
                .login = &login,
            };
            enum frontend_step st;
            size_t consumed = 0;

            if (fe == NULL)
                fe = frontend_for(buf[0]);
            st = fe->input(&in);
            if (st == FRONTEND_NEED_MORE)
                break;
            t->steps[t->nsteps++] = (uint8_t)st;
            FUZZ_CHECK(in.out_len <= FRONTEND_OUT_MAX);
            memcpy(t->out + t->out_len, in.out, in.out_len);
            t->out_len += in.out_len;
            switch (st) {
            case FRONTEND_NEXT:
                FUZZ_CHECK(in.used > 0 && in.used <= have);
                consumed = in.used;
                break;
            case FRONTEND_LOGIN: {
                uint8_t reply[16];
                size_t n = fe->login_reply(login_ok, &state, reply, sizeof(reply));

                FUZZ_CHECK(in.used > 0 && in.used <= have);
                FUZZ_CHECK(login.user_len < sizeof(login.user));
                FUZZ_CHECK(login.pass_len < sizeof(login.pass));
                FUZZ_CHECK(n <= sizeof(reply));
                consumed = in.used;
                t->ended = !login_ok;
                break;
            }
            case FRONTEND_REQUEST:
            case FRONTEND_REFUSE:
                FUZZ_CHECK(in.used > 0 && in.used <= have);
                t->rep = in.rep;
                t->ended = true;
                break;
            default:
                t->rep = in.rep;
                t->ended = true;
                break;
            }
            memmove(buf, buf + consumed, have - consumed);
            have -= consumed;
            pos += consumed;
        }
    }
    /* Replies render for whatever address the request names. */
    if (fe != NULL && t->ended && t->nsteps > 0 &&
        (t->steps[t->nsteps - 1] == FRONTEND_REQUEST ||
         t->steps[t->nsteps - 1] == FRONTEND_REFUSE)) {
        struct addr a;
        uint8_t reply[300];

        if (socks_dest_to_addr(&t->req.dest, &a) == 0)
            FUZZ_CHECK(fe->reply(SOCKS5_REP_SUCCEEDED, &a.u.sa, reply, sizeof(reply)) > 0);
        FUZZ_CHECK(fe->reply(SOCKS5_REP_HOST_UNREACHABLE, NULL, reply, sizeof(reply)) > 0);
    }
    free(buf);
}

static bool same(const struct trace *a, const struct trace *b)
{
    if (a->nsteps != b->nsteps || memcmp(a->steps, b->steps, a->nsteps) != 0)
        return false;
    if (a->out_len != b->out_len || memcmp(a->out, b->out, a->out_len) != 0)
        return false;
    if (a->ended != b->ended || a->rep != b->rep)
        return false;
    if (a->req.cmd != b->req.cmd || a->req.dest.type != b->req.dest.type ||
        a->req.dest.port != b->req.dest.port)
        return false;
    if (a->req.dest.type == DEST_NAME)
        return strcmp(a->req.dest.name, b->req.dest.name) == 0;
    return memcmp(a->req.dest.ip, b->req.dest.ip, 16) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t method_sets[4][2] = {
        {SOCKS5_METHOD_NOAUTH, 0},
        {SOCKS5_METHOD_USERPASS, 0},
        {SOCKS5_METHOD_USERPASS, SOCKS5_METHOD_NOAUTH},
        {SOCKS5_METHOD_NOAUTH, SOCKS5_METHOD_USERPASS},
    };
    struct config cfg;
    struct trace whole, parts;
    bool login_ok;

    if (size < 1 || size > 4096)
        return 0;
    memset(&cfg, 0, sizeof(cfg));
    memcpy(cfg.methods, method_sets[data[0] & 3], 2);
    cfg.nmethods = (data[0] & 3) < 2 ? 1 : 2;
    login_ok = (data[0] & 4) != 0;
    data++;
    size--;
    run(&cfg, login_ok, data, size, size, &whole);
    for (size_t split = 1; split < size; split += 1 + split / 8) {
        run(&cfg, login_ok, data, size, split, &parts);
        FUZZ_CHECK(same(&whole, &parts));
    }
    return 0;
}

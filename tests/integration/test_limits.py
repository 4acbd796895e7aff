"""Limits through the real ferryd: sessions per client IP, per user and in total answered with
a failure reply (and freed again), the accept rate per client IP, failed logins per client IP,
bandwidth per client IP and per user measured against the configured rate, and the byte quota
per user.
"""

import hashlib
import os
import socket
import time
import unittest

import ferrytest as ft

CLIENT2 = "127.0.0.2"


def open_echo(ferry, echo, user=None, password=None, source=None):
    """A CONNECT session to the echo origin: (sock, REP)."""
    s, rep, _, _ = ft.socks5_open(ferry.addr(), echo.host, echo.port, user=user,
                                  password=password, source=source)
    return s, rep


def held(testcase, ferry, echo, n, **kw):
    """n sessions that work (an echo each), closed at the end of the test."""
    out = []
    for i in range(n):
        s, rep = open_echo(ferry, echo, **kw)
        testcase.addCleanup(s.close)
        testcase.assertEqual(rep, ft.REP_SUCCEEDED, "session %d" % i)
        testcase.assertEqual(ft.echo_roundtrip(s, b"held %d" % i), b"held %d" % i)
        out.append(s)
    return out


def refused_reply(testcase, ferry, echo, want, **kw):
    s, rep = open_echo(ferry, echo, **kw)
    with s:
        testcase.assertEqual(rep, want)
        closed, _, _ = ft.wait_closed(s, 3)
        testcase.assertTrue(closed)


class SessionLimitsTest(unittest.TestCase):
    def setUp(self):
        self.echo = ft.EchoOrigin(self)

    def test_sessions_per_client_answers_failure_then_frees_the_slot(self):
        ferry = ft.start_ferryd(self, extra=["limit sessions-per-client 3"])
        socks = held(self, ferry, self.echo, 3)
        refused_reply(self, ferry, self.echo, ft.REP_GENERAL_FAILURE)
        sess = ferry.wait_sessions(1)[0]
        self.assertEqual((sess["reply"], sess["limit"]), ("general-failure", "sessions-per-client"))
        ferry.wait_line(r"limit sessions-per-client \(3\) reached by 127\.0\.0\.1")
        # Another client IP has its own count.
        held(self, ferry, self.echo, 1, source=CLIENT2)
        # One of the three ends: its slot is free again.
        socks[0].close()
        ferry.wait_sessions(2)
        held(self, ferry, self.echo, 1)
        # SOCKS4 clients get 91.
        s = ft.connect(*ferry.addr())
        with s:
            s.sendall(ft.socks4_request(self.echo.host, self.echo.port))
            self.assertEqual(ft.read_socks4_reply(s)[0], ft.SOCKS4_REJECTED)

    def test_clients_far_beyond_the_limit_are_closed_at_accept(self):
        ferry = ft.start_ferryd(self, extra=["limit sessions-per-client 2"])
        held(self, ferry, self.echo, 2)
        # 8 more are answered with failure replies (they wait for their request here) ...
        base = ft.open_fds(ferry.proc.pid)
        waiting = []
        for _ in range(8):
            s = ft.connect(*ferry.addr())
            self.addCleanup(s.close)
            waiting.append(s)
        self.assertEqual(ft.wait_fds(ferry.proc.pid, base + 8), base + 8)
        # ... and the next one is closed at once without a byte.
        s = ft.connect(*ferry.addr())
        with s:
            closed, data, _ = ft.wait_closed(s, 3)
            self.assertTrue(closed)
            self.assertEqual(data, b"")
        for w in waiting:
            w.sendall(ft.socks5_greeting())
            self.assertEqual(ft.read_method(w), ft.METHOD_NOAUTH)
            w.sendall(ft.socks5_request(ft.CMD_CONNECT, self.echo.host, self.echo.port))
            self.assertEqual(ft.read_socks5_reply(w)[0], ft.REP_GENERAL_FAILURE)

    def test_max_sessions_counts_every_client(self):
        ferry = ft.start_ferryd(self, extra=["max-sessions 2"])
        held(self, ferry, self.echo, 1)
        held(self, ferry, self.echo, 1, source=CLIENT2)
        refused_reply(self, ferry, self.echo, ft.REP_GENERAL_FAILURE, source="127.0.0.3")
        self.assertEqual(ferry.wait_sessions(1)[0]["limit"], "max-sessions")

    def test_sessions_per_user(self):
        users = ft.make_users_file(self, {"alice": "pa", "bob": "pb"})
        ferry = ft.start_ferryd(self, auth="password", users=users,
                                extra=["limit sessions-per-user 2"])
        held(self, ferry, self.echo, 2, user="alice", password="pa")
        refused_reply(self, ferry, self.echo, ft.REP_GENERAL_FAILURE, user="alice",
                      password="pa")
        sess = ferry.wait_sessions(1)[0]
        self.assertEqual((sess["user"], sess["limit"]), ("alice", "sessions-per-user"))
        held(self, ferry, self.echo, 2, user="bob", password="pb")


class AcceptRateTest(unittest.TestCase):
    def test_accept_rate_per_client(self):
        echo = ft.EchoOrigin(self)
        ferry = ft.start_ferryd(self, extra=["limit accept-rate 5/1s"])
        results = []
        for _ in range(10):
            s = ft.connect(*ferry.addr())
            with s:
                s.sendall(ft.socks5_greeting())
                try:
                    results.append(ft.read_method(s) == ft.METHOD_NOAUTH)
                except (AssertionError, ConnectionResetError):
                    results.append(False)
        # The burst is 5; at 5/s, at most one more token comes back while this loop runs.
        self.assertIn(results.count(True), (5, 6), results)
        self.assertEqual(results[:5], [True] * 5)
        # Another client IP has its own bucket.
        held(self, ferry, echo, 1, source=CLIENT2)
        # One second later the client may connect again.
        time.sleep(1.1)
        held(self, ferry, echo, 3)


class AuthFailuresTest(unittest.TestCase):
    def login(self, ferry, user, password, source=None):
        """(RFC 1929 status, seconds the answer took)."""
        s = ft.connect(*ferry.addr(), source=source)
        with s:
            s.sendall(ft.socks5_greeting((ft.METHOD_USERPASS,)))
            self.assertEqual(ft.read_method(s), ft.METHOD_USERPASS)
            start = time.monotonic()
            s.sendall(ft.socks5_userpass(user, password))
            _, status = ft.recv_exact(s, 2)
            return status, time.monotonic() - start

    def test_failed_logins_are_rate_limited_per_client_ip(self):
        users = ft.make_users_file(self, {"alice": "right"})
        # -v: the access lines of logins refused unchecked are debug lines.
        ferry = ft.start_ferryd(self, auth="password", users=users, args=("-v",),
                                extra=["limit auth-failures 3/1m"])
        for _ in range(3):
            self.assertEqual(self.login(ferry, "alice", "wrong")[0], 1)
        # Locked out: even the right password is refused, unchecked (no Argon2id run).
        status, took = self.login(ferry, "alice", "right")
        self.assertEqual(status, 1)
        ferry.wait_line(r"login attempts from 127\.0\.0\.1:\d+ are rate-limited")
        sess = ferry.wait_sessions(4)[3]
        self.assertEqual(sess["end"], "auth-rate-limited")
        # Another address is not locked out.
        self.assertEqual(self.login(ferry, "alice", "right", source=CLIENT2)[0], 0)

    def test_successful_logins_do_not_count(self):
        users = ft.make_users_file(self, {"alice": "right"})
        ferry = ft.start_ferryd(self, auth="password", users=users,
                                extra=["limit auth-failures 2/1m"])
        for _ in range(5):
            self.assertEqual(self.login(ferry, "alice", "right")[0], 0)


def timed_download(ferry, origin, size, span=None, **kw):
    """Download size bytes through ferryd; (seconds, sha256 ok). The time starts once the
    handshake is done (Argon2id's time is not the relay's); span, when given, gets the
    monotonic (start, end)."""
    s, rep, _, _ = ft.socks5_open(ferry.addr(), origin.host, origin.port, **kw)
    with s:
        if rep != ft.REP_SUCCEEDED:
            raise AssertionError("REP %#x" % rep)
        start = time.monotonic()
        s.sendall(b"GET %d\n" % size)
        data = ft.recv_until_eof(s)
        end = time.monotonic()
    if span is not None:
        span.append((start, end))
    return end - start, hashlib.sha256(data).digest() == hashlib.sha256(origin.data[:size]).digest()


def timed_upload(ferry, origin, data, **kw):
    s, rep, _, _ = ft.socks5_open(ferry.addr(), origin.host, origin.port, **kw)
    with s:
        if rep != ft.REP_SUCCEEDED:
            raise AssertionError("REP %#x" % rep)
        start = time.monotonic()
        s.sendall(b"PUT\n" + data)
        s.shutdown(socket.SHUT_WR)
        answer = ft.recv_until_eof(s)
        took = time.monotonic() - start
    return took, answer == ("%s %d\n" % (hashlib.sha256(data).hexdigest(), len(data))).encode()


class BandwidthTest(unittest.TestCase):
    RATE = 1 << 20  # "1M": bytes per second, each direction
    SIZE = 3 << 20

    def setUp(self):
        self.data = os.urandom(self.SIZE)
        self.origin = ft.BulkOrigin(self, self.data)

    def assert_rate(self, took, size):
        rate = size / took
        ft.log("%d bytes in %.2f s: %.0f B/s (limit %d B/s)" % (size, took, rate, self.RATE))
        # The time includes the SOCKS handshake, and under valgrind that (Argon2id above all)
        # takes seconds: there only the limit itself is checked.
        if not ft.distorted_by_valgrind("the rate's lower bound (0.8 x the limit)"):
            self.assertGreater(rate, 0.8 * self.RATE)
        self.assertLess(rate, 1.2 * self.RATE)

    def test_bandwidth_per_client_download_and_upload(self):
        for mode in ("splice", "buffered"):
            with self.subTest(relay=mode):
                ferry = ft.start_ferryd(self, extra=["limit bandwidth-per-client 1M",
                                                     "relay %s" % mode])
                cpu = ft.cpu_seconds(ferry.proc.pid)
                took, ok = timed_download(ferry, self.origin, self.SIZE)
                self.assertTrue(ok)
                self.assert_rate(took, self.SIZE)
                took, ok = timed_upload(ferry, self.origin, self.data)
                self.assertTrue(ok)
                self.assert_rate(took, self.SIZE)
                # Waiting for tokens is a timer, not a busy loop.
                cpu = ft.cpu_seconds(ferry.proc.pid) - cpu
                ft.log("ferryd CPU for 6 MiB at 1 MiB/s: %.2f s" % cpu)
                self.assertLess(cpu, 1.0)
                ferry.stop()

    def test_bandwidth_per_user_is_shared_by_its_sessions(self):
        users = ft.make_users_file(self, {"alice": "pa"})
        ferry = ft.start_ferryd(self, auth="password", users=users,
                                extra=["limit bandwidth-per-user 1M"])
        import threading
        results = []

        spans = []

        def one():
            results.append(timed_download(ferry, self.origin, self.SIZE // 2, span=spans,
                                          user="alice", password="pa"))

        threads = [threading.Thread(target=one) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        # From the first session's first request to the last byte of both.
        took = max(e for _, e in spans) - min(s for s, _ in spans)
        self.assertEqual(len(results), 2)
        self.assertTrue(all(ok for _, ok in results))
        # Two sessions of one user together get the user's rate.
        self.assert_rate(took, self.SIZE)

    def test_unlimited_client_is_not_slowed(self):
        ferry = ft.start_ferryd(self, extra=["limit bandwidth-per-user 64K"])
        took, ok = timed_download(ferry, self.origin, self.SIZE)
        self.assertTrue(ok)
        self.assertLess(took, 1.0)  # no user here: the per-user limit does not apply


class QuotaTest(unittest.TestCase):
    def test_quota_per_user_cuts_the_session_and_refuses_new_ones(self):
        data = os.urandom(1 << 20)
        origin = ft.BulkOrigin(self, data)
        echo = ft.EchoOrigin(self)
        users = ft.make_users_file(self, {"alice": "pa", "bob": "pb"})
        ferry = ft.start_ferryd(self, auth="password", users=users,
                                extra=["limit quota-per-user 100K/1h"])
        s, rep, _, _ = ft.socks5_open(ferry.addr(), origin.host, origin.port, user="alice",
                                      password="pa")
        with s:
            self.assertEqual(rep, ft.REP_SUCCEEDED)
            s.sendall(b"GET %d\n" % len(data))
            got = ft.recv_until_eof(s)
        # Cut at the quota: 100 KiB both ways together, the request line included.
        self.assertEqual(len(got) + len(b"GET 1048576\n"), 100 << 10)
        self.assertEqual(got, data[:len(got)])
        ferry.wait_line(r"limit quota-per-user used up by user alice: closing its session")
        refused_reply(self, ferry, echo, ft.REP_NOT_ALLOWED, user="alice", password="pa")
        sess = ferry.wait_sessions(2)[1]
        self.assertEqual((sess["reply"], sess["limit"]), ("not-allowed", "quota-per-user"))
        held(self, ferry, echo, 1, user="bob", password="pb")


class RuleLimitsTest(unittest.TestCase):
    def test_rule_sessions_limit_counts_the_sessions_the_rule_passed(self):
        echo = ft.EchoOrigin(self)
        other = ft.EchoOrigin(self, "127.0.0.5")
        ferry = ft.start_ferryd(self, extra=["request pass to 127.0.0.1 sessions 2",
                                             "request pass"])
        held(self, ferry, echo, 2)
        refused_reply(self, ferry, echo, ft.REP_GENERAL_FAILURE, source=CLIENT2)
        sess = ferry.wait_sessions(1)[0]
        self.assertEqual((sess["reply"], sess["limit"]), ("general-failure", "rule:1"))
        ferry.wait_line(r"request rule 1 \(line \d+\): its limit of 2 sessions is reached")
        # Sessions another rule passes are not counted against it.
        held(self, ferry, other, 3)

    def test_rule_bandwidth_is_shared_by_the_sessions_it_passed(self):
        data = os.urandom(2 << 20)
        origin = ft.BulkOrigin(self, data)
        ferry = ft.start_ferryd(self, extra=["request pass port %d bandwidth 1M" % origin.port,
                                             "request pass"])
        took, ok = timed_download(ferry, origin, len(data))
        self.assertTrue(ok)
        rate = len(data) / took
        ft.log("rule bandwidth 1M: %.0f B/s" % rate)
        self.assertGreater(rate, 0.8 * (1 << 20))
        self.assertLess(rate, 1.2 * (1 << 20))


if __name__ == "__main__":
    ft.main()

"""The HTTP proxy front end on a SOCKS port: CONNECT through curl (-p, and https-style
tunnelling of plain HTTP), Basic proxy credentials, refusals as HTTP statuses, pipelined bytes
after the head, and requests that are not CONNECT answered with a status (forwarding of
absolute-form requests: test_http_forward.py)."""

import os
import socket
import subprocess
import unittest

import ferrytest as ft

CURL_ENV = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
NAME = "www.ferry.test"


def read_head(s):
    """The response head (through the empty line) and what came after it in the same reads."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head.decode("latin-1"), rest


class HTTPConnectTest(unittest.TestCase):
    def setUp(self):
        self.origin = ft.HTTPOrigin(self)
        self.dns = ft.DNSServer(self)
        self.dns.add(NAME, a=["127.0.0.1"], ttl=60)

    def curl(self, proxy, url, user=None, extra=()):
        # -p: tunnel through the proxy with CONNECT even for http:// URLs.
        # Under valgrind an Argon2id check alone takes seconds: the waits scale (ft.SLOW).
        argv = ["curl", "-sS", "--max-time", "%g" % (10 * ft.SLOW),
                "--connect-timeout", "%g" % (5 * ft.SLOW), "-p",
                "-x", "http://%s:%d" % (ft.host_for_url(proxy[0]), proxy[1])]
        if user is not None:
            argv += ["--proxy-user", user]
        argv += list(extra)
        argv.append(url)
        return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              timeout=30 * ft.SLOW, env=CURL_ENV)

    def password_ferry(self, auth="password"):
        users = ft.make_users_file(self, {"alice": "correct horse"})
        return ft.start_ferryd(self, dns=self.dns, auth=auth, users=users)

    def test_curl_connect_by_name_gets_body_and_one_access_line(self):
        ferry = ft.start_ferryd(self, dns=self.dns)
        r = self.curl(ferry.addr(), self.origin.url("/tunnel", host=NAME))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, ft.HTTPOrigin.body("/tunnel"))
        self.assertGreater(self.dns.count(NAME), 0, "ferry did not resolve the name")
        s = ferry.wait_sessions(1)[-1]
        self.assertEqual(s.get("cmd"), "http-connect", s)
        self.assertEqual(s.get("reply"), "succeeded", s)
        self.assertEqual(s.get("target"), "%s:%d" % (NAME, self.origin.port), s)
        self.assertEqual(s.get("end"), "eof", s)

    def test_a_listener_serves_only_its_protocols(self):
        # Two listeners: one SOCKS only, one HTTP only; each closes the other protocol at its
        # first byte, with nothing sent back.
        socks_port, http_port = ft.free_port(), ft.free_port()
        ferry = ft.start_ferryd(
            self, listen=("127.0.0.1:%d protocols socks" % socks_port,
                          "127.0.0.1:%d protocols http" % http_port), dns=self.dns)
        url = self.origin.url("/p", host=NAME)
        r = self.curl(("127.0.0.1", http_port), url)
        self.assertEqual(r.returncode, 0, r.stderr)
        r = subprocess.run(["curl", "-sS", "--max-time", "10", "-x",
                            "socks5h://127.0.0.1:%d" % socks_port, url],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30,
                           env=CURL_ENV)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len(ferry.wait_sessions(2)), 2)
        for port, first in ((socks_port, b"CONNECT x:1 HTTP/1.1\r\n\r\n"),
                            (http_port, b"\x05\x01\x00"), (http_port, b"\x04\x01\x00\x50")):
            c = ft.connect("127.0.0.1", port)
            c.sendall(first)
            closed, data, _ = ft.wait_closed(c, 5 * ft.SLOW)
            c.close()
            self.assertTrue(closed)
            self.assertEqual(data, b"", "port %d answered %r" % (port, data))
        ends = [s.get("end") for s in ferry.wait_sessions(5)[2:]]
        self.assertEqual(ends, ["bad-greeting"] * 3)

    def test_curl_with_right_credentials_gets_body(self):
        ferry = self.password_ferry()
        r = self.curl(ferry.addr(), self.origin.url("/auth"), user="alice:correct horse")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, ft.HTTPOrigin.body("/auth"))
        s = ferry.wait_sessions(1)[-1]
        self.assertEqual(s.get("user"), "alice", s)

    def test_wrong_and_missing_credentials_get_407_and_reach_nothing(self):
        ferry = self.password_ferry()
        for user in ("alice:wrong", None):
            r = self.curl(ferry.addr(), self.origin.url("/x"), user=user,
                          extra=["-o", "/dev/null", "-w", "%{http_connect}"])
            self.assertNotEqual(r.returncode, 0)
            self.assertEqual(r.stdout.strip(), b"407", (user, r.stdout, r.stderr))
        ends = [s.get("end") for s in ferry.wait_sessions(2)]
        self.assertEqual(sorted(ends), ["auth-failed", "no-acceptable-method"], ends)
        self.assertEqual(self.origin.peers, [])
        # The challenge names Basic.
        with ft.connect(*ferry.addr()) as s:
            s.sendall(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\n\r\n" % self.origin.port)
            head, _ = read_head(s)
            self.assertTrue(head.startswith("HTTP/1.1 407 "), head)
            self.assertIn('Proxy-Authenticate: Basic realm="ferry"', head)

    def test_refusals_map_to_http_statuses(self):
        ferry = ft.start_ferryd(self, dns=self.dns,
                                extra=["request block to 127.0.0.2", "request pass"])
        cases = [("127.0.0.2:80", "403"),                   # a rule
                 ("127.0.0.1:%d" % ft.closed_port(), "502"),  # refused
                 ("nx.ferry.test:80", "502")]               # does not resolve
        for target, status in cases:
            with ft.connect(*ferry.addr()) as s:
                s.sendall(b"CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (target.encode(),
                                                                       target.encode()))
                head, _ = read_head(s)
                self.assertTrue(head.startswith("HTTP/1.1 %s " % status), (target, head))
                self.assertIn("Connection: close", head)
                self.assertEqual(ft.recv_until_eof(s), b"")

    def test_bytes_pipelined_after_the_head_reach_the_target(self):
        echo = ft.EchoOrigin(self)
        ferry = ft.start_ferryd(self, dns=self.dns)
        with ft.connect(*ferry.addr()) as s:
            s.sendall(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\n\r\nearly bytes" % echo.port)
            head, rest = read_head(s)
            self.assertTrue(head.startswith("HTTP/1.1 200 "), head)
            while len(rest) < len(b"early bytes"):
                rest += s.recv(4096)
            self.assertEqual(rest, b"early bytes")
            # Half-close is carried: the echo sees EOF and closes, and so do we.
            s.sendall(b" and more")
            s.shutdown(socket.SHUT_WR)
            self.assertEqual(ft.recv_until_eof(s), b" and more")

    def test_bad_heads_and_requests_that_are_not_connect_get_statuses(self):
        ferry = ft.start_ferryd(self, dns=self.dns)
        cases = [(b"CONNECT example.com HTTP/1.1\r\n\r\n", "400"),
                 (b"GET https://%s/ HTTP/1.1\r\nHost: x\r\n\r\n" % NAME.encode(), "501"),
                 (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "400"),
                 (b"CONNECT h:1 HTTP/1.1\r\nX: " + b"a" * 9000 + b"\r\n\r\n", "431"),
                 (b"CONNECT h:1 HTTP/2.0\r\n\r\n", "505")]
        for msg, status in cases:
            with ft.connect(*ferry.addr()) as s:
                s.sendall(msg)
                head, _ = read_head(s)
                self.assertTrue(head.startswith("HTTP/1.1 %s " % status), (msg[:40], head))
        self.assertEqual(self.origin.peers, [])


if __name__ == "__main__":
    ft.main()

"""curl through ferryd: SOCKS4, SOCKS4a, SOCKS5, SOCKS5 with remote names, and RFC 1929 auth."""

import os
import subprocess
import unittest

import ferrytest as ft

CURL_ENV = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
NAME = "www.ferry.test"


class CurlTest(unittest.TestCase):
    def setUp(self):
        self.origin = ft.HTTPOrigin(self)
        self.dns = ft.DNSServer(self)
        self.dns.add(NAME, a=["127.0.0.1"], ttl=60)

    def curl(self, proxy_option, proxy, url, user=None):
        argv = ["curl", "-sS", "--max-time", "10", "--connect-timeout", "5",
                proxy_option, "%s:%d" % (ft.host_for_url(proxy[0]), proxy[1])]
        if user is not None:
            argv += ["--proxy-user", user]
        argv.append(url)
        return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 timeout=30, env=CURL_ENV)

    def assert_body(self, r, path):
        self.assertEqual(r.returncode, 0, "curl failed: %r" % r.stderr)
        self.assertEqual(r.stdout, ft.HTTPOrigin.body(path))

    def assert_one_session(self, ferry, **expect):
        s = ferry.wait_sessions(1)[-1]
        for k, v in expect.items():
            self.assertEqual(s.get(k), v, "access line %r: %s" % (s, k))
        return s

    def test_socks4_ip_target_gets_body(self):
        ferry = ft.start_ferryd(self, dns=self.dns)
        r = self.curl("--socks4", ferry.addr(), self.origin.url("/socks4"))
        self.assert_body(r, "/socks4")
        s = self.assert_one_session(ferry, reply="succeeded", user="-",
                                    target="127.0.0.1:%d" % self.origin.port,
                                    addr="127.0.0.1:%d" % self.origin.port)
        self.assertIn(s.get("cmd"), ("connect", "socks4-connect"), s)

    def test_socks4a_name_resolved_by_ferry_gets_body(self):
        ferry = ft.start_ferryd(self, dns=self.dns)
        r = self.curl("--socks4a", ferry.addr(), self.origin.url("/socks4a", host=NAME))
        self.assert_body(r, "/socks4a")
        self.assertGreater(self.dns.count(NAME), 0, "ferry did not ask the test DNS server")
        self.assert_one_session(ferry, reply="succeeded", target="%s:%d" % (NAME, self.origin.port),
                                addr="127.0.0.1:%d" % self.origin.port)

    def test_socks5_ip_target_gets_body(self):
        ferry = ft.start_ferryd(self, dns=self.dns)
        r = self.curl("--socks5", ferry.addr(), self.origin.url("/socks5"))
        self.assert_body(r, "/socks5")
        s = self.assert_one_session(ferry, reply="succeeded",
                                    target="127.0.0.1:%d" % self.origin.port)
        # The HTTP request went up, the response came down.
        self.assertGreater(int(s["up"]), 20)
        self.assertGreater(int(s["down"]), len(ft.HTTPOrigin.body("/socks5")))

    def test_socks5_hostname_resolved_by_ferry_gets_body(self):
        ferry = ft.start_ferryd(self, dns=self.dns)
        r = self.curl("--socks5-hostname", ferry.addr(), self.origin.url("/name", host=NAME))
        self.assert_body(r, "/name")
        self.assertGreater(self.dns.count(NAME), 0, "ferry did not ask the test DNS server")
        self.assert_one_session(ferry, reply="succeeded", target="%s:%d" % (NAME, self.origin.port))

    def test_socks5_hostname_localhost_gets_body(self):
        ferry = ft.start_ferryd(self, dns=self.dns)
        r = self.curl("--socks5-hostname", ferry.addr(),
                      self.origin.url("/localhost", host="localhost"))
        self.assert_body(r, "/localhost")
        self.assert_one_session(ferry, reply="succeeded",
                                target="localhost:%d" % self.origin.port)

    def password_ferry(self, auth="password"):
        users = ft.make_users_file(self, {"alice": "correct horse", "bob": "battery staple"})
        return ft.start_ferryd(self, dns=self.dns, auth=auth, users=users)

    def test_socks5_good_credentials_get_body(self):
        ferry = self.password_ferry()
        r = self.curl("--socks5-hostname", ferry.addr(), self.origin.url("/auth", host=NAME),
                      user="alice:correct horse")
        self.assert_body(r, "/auth")
        self.assert_one_session(ferry, user="alice", reply="succeeded")
        # The other user works too: the file holds both.
        r = self.curl("--socks5", ferry.addr(), self.origin.url("/bob"), user="bob:battery staple")
        self.assert_body(r, "/bob")

    def test_socks5_bad_password_fails_and_is_logged(self):
        ferry = self.password_ferry()
        r = self.curl("--socks5", ferry.addr(), self.origin.url("/bad"), user="alice:wrong")
        self.assertNotEqual(r.returncode, 0)
        self.assertEqual(r.stdout, b"")
        self.assertIn(b"rejected", r.stderr.lower(), r.stderr)
        s = ferry.wait_sessions(1)[-1]
        self.assertEqual(s.get("user"), "alice", s)
        self.assertNotEqual(s.get("reply"), "succeeded", s)
        self.assertEqual(s.get("addr"), "-", s)
        self.assertEqual(s.get("end"), "auth-failed", s)
        self.assertEqual(self.origin.peers, [])

    def test_socks5_unknown_user_fails(self):
        ferry = self.password_ferry()
        r = self.curl("--socks5", ferry.addr(), self.origin.url("/unknown"), user="mallory:x")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(b"rejected", r.stderr.lower(), r.stderr)
        self.assertEqual(self.origin.peers, [])

    def test_socks5_without_credentials_when_password_required_fails(self):
        ferry = self.password_ferry()
        r = self.curl("--socks5", ferry.addr(), self.origin.url("/nocreds"))
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(b"no authentication method was acceptable", r.stderr.lower(), r.stderr)
        self.assertEqual(self.origin.peers, [])

    def test_socks4_when_password_required_is_rejected_91(self):
        ferry = self.password_ferry()
        r = self.curl("--socks4", ferry.addr(), self.origin.url("/socks4auth"))
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(b"91", r.stderr, r.stderr)
        # The same with a raw client, to see the exact reply.
        with ft.connect(*ferry.addr()) as s:
            s.sendall(ft.socks4_request("127.0.0.1", self.origin.port, b"alice"))
            cd, _, _ = ft.read_socks4_reply(s)
            self.assertEqual(cd, ft.SOCKS4_REJECTED)
        self.assertEqual(self.origin.peers, [])


if __name__ == "__main__":
    ft.main()

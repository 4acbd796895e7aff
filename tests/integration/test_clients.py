"""Other real clients: ncat (SOCKS4 and SOCKS5) and python3-socks (PySocks)."""

import socket
import unittest

import socks

import ferrytest as ft

NAME = "echo.ferry.test"


class NcatTest(unittest.TestCase):
    def setUp(self):
        self.echo = ft.EchoOrigin(self)

    def ncat(self, ferry, proxy_type, line, auth=None):
        host, port = ferry.addr()
        argv = ["ncat", "--wait", "5", "--proxy", "%s:%d" % (host, port),
                "--proxy-type", proxy_type]
        if auth:
            argv += ["--proxy-auth", auth]
        argv += ["127.0.0.1", str(self.echo.port)]
        return ft.run(argv, timeout=20, input=line)

    def test_ncat_socks5_line_echoed(self):
        ferry = ft.start_ferryd(self)
        r = self.ncat(ferry, "socks5", b"hello through ncat socks5\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, b"hello through ncat socks5\n")
        self.assertEqual(self.echo.received, [b"hello through ncat socks5\n"])

    def test_ncat_socks4_line_echoed(self):
        ferry = ft.start_ferryd(self)
        r = self.ncat(ferry, "socks4", b"hello through ncat socks4\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, b"hello through ncat socks4\n")
        sess = ferry.wait_sessions(1)[-1]
        self.assertEqual(sess.get("reply"), "succeeded", sess)

    def test_ncat_socks5_with_password(self):
        users = ft.make_users_file(self, {"carol": "s3cret"})
        ferry = ft.start_ferryd(self, auth="password", users=users)
        r = self.ncat(ferry, "socks5", b"authenticated ncat\n", auth="carol:s3cret")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, b"authenticated ncat\n")
        r = self.ncat(ferry, "socks5", b"nope\n", auth="carol:wrong")
        self.assertNotEqual(r.returncode, 0)
        self.assertEqual(r.stdout, b"")


class PySocksTest(unittest.TestCase):
    def setUp(self):
        self.echo = ft.EchoOrigin(self)
        self.dns = ft.DNSServer(self)
        self.dns.add(NAME, a=["127.0.0.1"])

    def roundtrip(self, ferry, host, rdns, user=None, password=None):
        phost, pport = ferry.addr()
        s = socks.socksocket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(10)
        s.set_proxy(socks.SOCKS5, phost, pport, rdns=rdns, username=user, password=password)
        try:
            s.connect((host, self.echo.port))
            payload = b"pysocks %s rdns=%s" % (host.encode(), str(rdns).encode())
            s.sendall(payload)
            self.assertEqual(ft.recv_exact(s, len(payload)), payload)
        finally:
            s.close()

    def test_remote_dns_name_resolved_by_ferry(self):
        ferry = ft.start_ferryd(self, dns=self.dns)
        self.roundtrip(ferry, NAME, rdns=True)
        self.assertGreater(self.dns.count(NAME), 0)
        sess = ferry.wait_sessions(1)[-1]
        self.assertEqual(sess.get("target"), "%s:%d" % (NAME, self.echo.port), sess)

    def test_local_dns_sends_an_address(self):
        ferry = ft.start_ferryd(self, dns=self.dns)
        self.roundtrip(ferry, "localhost", rdns=False)
        sess = ferry.wait_sessions(1)[-1]
        self.assertEqual(sess.get("target"), "127.0.0.1:%d" % self.echo.port, sess)
        self.assertEqual(self.dns.count(), 0)

    def test_username_password(self):
        users = ft.make_users_file(self, {"dave": "hunter2"})
        ferry = ft.start_ferryd(self, dns=self.dns, auth="password", users=users)
        self.roundtrip(ferry, NAME, rdns=True, user="dave", password="hunter2")
        with self.assertRaises(socks.ProxyError):
            self.roundtrip(ferry, NAME, rdns=True, user="dave", password="hunter3")
        sess = ferry.wait_sessions(2)
        self.assertEqual([s.get("user") for s in sess], ["dave", "dave"])
        self.assertEqual(sess[0].get("reply"), "succeeded")


if __name__ == "__main__":
    ft.main()

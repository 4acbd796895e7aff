"""IPv6: listening on [::1], IPv6 targets by address (ATYP 4) and by name, both families at once."""

import os
import socket
import subprocess
import sys
import unittest

import ferrytest as ft

if not ft.ipv6_available():
    print("SKIP: no IPv6 loopback on this machine")
    sys.exit(77)

CURL_ENV = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}


class IPv6Test(unittest.TestCase):
    def test_listener_on_ipv6_loopback_relays_to_ipv4_origin(self):
        echo = ft.EchoOrigin(self, "127.0.0.1")
        ferry = ft.start_ferryd(self, listen=["[::1]:0"])
        host, port = ferry.addr()
        self.assertEqual(host, "::1")
        s, rep, baddr, bport = ft.socks5_open((host, port), "127.0.0.1", echo.port)
        with s:
            self.assertEqual(rep, ft.REP_SUCCEEDED)
            self.assertEqual(ft.echo_roundtrip(s, b"over v6 to v4"), b"over v6 to v4")
        self.assertEqual((baddr, bport), echo.peers[0])
        sess = ferry.wait_sessions(1)[-1]
        self.assertTrue(sess["client"].startswith("[::1]:"), sess)

    def test_ipv6_address_target_atyp4_bnd_is_outbound_socket(self):
        echo = ft.EchoOrigin(self, "::1")
        ferry = ft.start_ferryd(self)
        with ft.connect(*ferry.addr()) as s:
            s.sendall(ft.socks5_greeting())
            self.assertEqual(ft.read_method(s), ft.METHOD_NOAUTH)
            req = ft.socks5_request(ft.CMD_CONNECT, "::1", echo.port)
            self.assertEqual(req[3], 4)
            s.sendall(req)
            head = ft.recv_exact(s, 4)
            self.assertEqual(head, b"\x05\x00\x00\x04", "IPv6 BND.ADDR expected")
            bnd = ft.recv_exact(s, 18)
            self.assertEqual(ft.echo_roundtrip(s, b"v6 payload"), b"v6 payload")
        peer = echo.peers[0]
        self.assertEqual(socket.inet_ntop(socket.AF_INET6, bnd[:16]), peer[0])
        self.assertEqual(int.from_bytes(bnd[16:], "big"), peer[1])
        sess = ferry.wait_sessions(1)[-1]
        self.assertEqual(sess.get("target"), "[::1]:%d" % echo.port, sess)
        self.assertEqual(sess.get("addr"), "[::1]:%d" % echo.port, sess)

    def test_name_resolving_to_ipv6_only_connects(self):
        echo = ft.EchoOrigin(self, "::1")
        dns = ft.DNSServer(self)
        dns.add("six.ferry.test", aaaa=["::1"])
        ferry = ft.start_ferryd(self, dns=dns)
        s, rep, baddr, bport = ft.socks5_open(ferry.addr(), "six.ferry.test", echo.port)
        with s:
            self.assertEqual(rep, ft.REP_SUCCEEDED)
            self.assertEqual(ft.echo_roundtrip(s, b"named v6"), b"named v6")
        self.assertEqual((baddr, bport), echo.peers[0])
        sess = ferry.wait_sessions(1)[-1]
        self.assertEqual(sess.get("addr"), "[::1]:%d" % echo.port, sess)

    def test_dns_server_on_ipv6_loopback(self):
        echo = ft.EchoOrigin(self, "127.0.0.1")
        dns = ft.DNSServer(self, "::1")
        self.assertEqual(dns.spec, "[::1]:%d" % dns.port)
        dns.add("v6dns.ferry.test", a=["127.0.0.1"])
        ferry = ft.start_ferryd(self, dns=dns)
        s, rep, _, _ = ft.socks5_open(ferry.addr(), "v6dns.ferry.test", echo.port)
        with s:
            self.assertEqual(rep, ft.REP_SUCCEEDED)
        self.assertGreater(dns.count("v6dns.ferry.test"), 0)

    def test_ipv4_and_ipv6_listeners_in_one_ferryd(self):
        http = ft.HTTPOrigin(self, "::1")
        dns = ft.DNSServer(self)
        dns.add("www6.ferry.test", aaaa=["::1"])
        ferry = ft.start_ferryd(self, listen=["127.0.0.1:0", "[::1]:0"], dns=dns)
        self.assertEqual(len(ferry.addrs), 2)
        for family in (socket.AF_INET, socket.AF_INET6):
            host, port = ferry.addr(family)
            path = "/family%d" % family
            r = subprocess.run(
                ["curl", "-sS", "--max-time", "10", "--socks5-hostname",
                 "%s:%d" % (ft.host_for_url(host), port), http.url(path, host="www6.ferry.test")],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30, env=CURL_ENV)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stdout, ft.HTTPOrigin.body(path))
        clients = [s["client"] for s in ferry.wait_sessions(2)]
        self.assertTrue(any(c.startswith("127.0.0.1:") for c in clients), clients)
        self.assertTrue(any(c.startswith("[::1]:") for c in clients), clients)


if __name__ == "__main__":
    ft.main()

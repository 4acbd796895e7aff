"""Name resolution through a DNS server the test runs: answers, NXDOMAIN, timeouts, cache,
and Happy Eyeballs fallback from a refused IPv6 address to IPv4."""

import time
import unittest

import ferrytest as ft


class DNSTest(unittest.TestCase):
    def setUp(self):
        self.echo = ft.EchoOrigin(self)
        self.dns = ft.DNSServer(self)

    def start(self, *extra):
        return ft.start_ferryd(self, dns=self.dns, extra=list(extra))

    def request(self, ferry, name, port=None):
        """(rep, bnd_addr, bnd_port, seconds) for a SOCKS5 CONNECT to name; closes the socket."""
        start = time.monotonic()
        s, rep, baddr, bport = ft.socks5_open(ferry.addr(), name, port or self.echo.port)
        elapsed = time.monotonic() - start
        with s:
            if rep == ft.REP_SUCCEEDED:
                self.assertEqual(ft.echo_roundtrip(s, b"ping " + name.encode()),
                                 b"ping " + name.encode())
        return rep, baddr, bport, elapsed

    def test_served_name_connects_and_bnd_is_outbound_address(self):
        self.dns.add("served.ferry.test", a=["127.0.0.1"])
        ferry = self.start()
        rep, baddr, bport, _ = self.request(ferry, "served.ferry.test")
        self.assertEqual(rep, ft.REP_SUCCEEDED)
        self.assertEqual((baddr, bport), self.echo.peers[0])
        self.assertGreater(self.dns.count("served.ferry.test"), 0)
        sess = ferry.wait_sessions(1)[-1]
        self.assertEqual(sess.get("target"), "served.ferry.test:%d" % self.echo.port, sess)
        self.assertEqual(sess.get("addr"), "127.0.0.1:%d" % self.echo.port, sess)

    def test_ip_literal_sent_as_name_needs_no_dns(self):
        ferry = self.start()
        rep, baddr, _, _ = self.request(ferry, "127.0.0.1")
        self.assertEqual(rep, ft.REP_SUCCEEDED)
        self.assertEqual(baddr, "127.0.0.1")
        self.assertEqual(self.dns.count(), 0, self.dns.queries)

    def test_trailing_dot_name_connects(self):
        self.dns.add("dot.ferry.test", a=["127.0.0.1"])
        ferry = self.start()
        rep, _, _, _ = self.request(ferry, "dot.ferry.test.")
        self.assertEqual(rep, ft.REP_SUCCEEDED)

    def test_name_case_and_second_address(self):
        # The first address refuses; the connector moves on to the second one.
        self.dns.add("two.ferry.test", a=["127.0.0.2", "127.0.0.1"])
        ferry = self.start()
        port = self.echo.port
        rep, baddr, _, _ = self.request(ferry, "TWO.Ferry.Test", port)
        self.assertEqual(rep, ft.REP_SUCCEEDED)
        self.assertEqual(baddr, self.echo.peers[0][0])

    def test_nxdomain_is_host_unreachable(self):
        ferry = self.start()
        rep, _, _, elapsed = self.request(ferry, "nx.ferry.test")
        self.assertEqual(rep, ft.REP_HOST_UNREACHABLE)
        self.assertLess(elapsed, 3)
        self.assertGreater(self.dns.count("nx.ferry.test"), 0)
        sess = ferry.wait_sessions(1)[-1]
        self.assertEqual(sess.get("reply"), "host-unreachable", sess)
        self.assertEqual(sess.get("addr"), "-", sess)
        self.assertEqual(self.echo.peers, [])

    def test_255_byte_name_is_host_unreachable_not_general_failure(self):
        """The longest name SOCKS5 can carry does not fit in a DNS query (255 bytes of wire
        form at most): unresolvable, so 0x04 like any such name, and no query is sent."""
        ferry = self.start()
        for length in (254, 255):
            labels = ["a" * 63] * 3 + ["b" * (length - 3 * 64)]
            name = ".".join(labels)
            self.assertEqual(len(name), length)
            s = ft.connect(*ferry.addr())
            with s:
                s.sendall(ft.socks5_greeting())
                self.assertEqual(ft.read_method(s), ft.METHOD_NOAUTH)
                s.sendall(ft.socks5_request(ft.CMD_CONNECT, name, self.echo.port))
                rep, _, _ = ft.read_socks5_reply(s)
            self.assertEqual(rep, ft.REP_HOST_UNREACHABLE, length)
            self.assertEqual(self.dns.count(name), 0)
        for sess in ferry.wait_sessions(2):
            self.assertEqual(sess.get("reply"), "host-unreachable", sess)
        self.assertEqual(self.echo.peers, [])

    def test_servfail_is_an_error_reply_not_a_hang(self):
        self.dns.set_action("broken.ferry.test", "servfail")
        ferry = self.start("resolver-tries 1")
        rep, _, _, elapsed = self.request(ferry, "broken.ferry.test")
        self.assertIn(rep, (ft.REP_HOST_UNREACHABLE, ft.REP_GENERAL_FAILURE))
        self.assertLess(elapsed, 5)

    def test_silent_server_gives_host_unreachable_after_resolve_timeout(self):
        self.dns.set_action("silent.ferry.test", "silent")
        ferry = self.start("timeout resolve 1s", "resolver-timeout 5s", "resolver-tries 3")
        rep, _, _, elapsed = self.request(ferry, "silent.ferry.test")
        self.assertEqual(rep, ft.REP_HOST_UNREACHABLE)
        self.assertGreaterEqual(elapsed, 0.8)
        self.assertLess(elapsed, 3.0)
        self.assertGreater(self.dns.count("silent.ferry.test"), 0)

    def test_slow_answer_within_resolve_timeout_connects(self):
        self.dns.add("slow.ferry.test", a=["127.0.0.1"])
        self.dns.set_action("slow.ferry.test", "delay", 0.5)
        ferry = self.start("timeout resolve 3s")
        rep, _, _, elapsed = self.request(ferry, "slow.ferry.test")
        self.assertEqual(rep, ft.REP_SUCCEEDED)
        self.assertGreaterEqual(elapsed, 0.45)
        self.assertLess(elapsed, 2.5)

    def test_clients_gone_while_resolving_then_late_answers(self):
        """Clients reset while their query is pending; the answers arrive afterwards and must
        find nothing to touch (the sanitizer build and the exit status would show it). A FIN
        would not do: it may be a half-close after a pipelined request, which is served."""
        self.dns.add("late.ferry.test", a=["127.0.0.1"])
        self.dns.add("late2.ferry.test", a=["127.0.0.1"])
        self.dns.set_action("late.ferry.test", "delay", 0.4)
        self.dns.set_action("late2.ferry.test", "delay", 0.4)
        ferry = self.start()
        for name in ("late.ferry.test", "late.ferry.test", "late2.ferry.test"):
            s = ft.connect(*ferry.addr())
            s.sendall(ft.socks5_greeting()
                      + ft.socks5_request(ft.CMD_CONNECT, name, self.echo.port))
            self.assertEqual(ft.read_method(s), ft.METHOD_NOAUTH)
            ft.reset(s)
        sessions = ferry.wait_sessions(3, timeout=3)
        time.sleep(0.8)
        self.assertTrue(all(x.get("reply") != "succeeded" for x in sessions), sessions)
        rep, _, _, _ = self.request(ferry, "late.ferry.test")
        self.assertEqual(rep, ft.REP_SUCCEEDED)
        self.assertIsNone(ferry.proc.poll())

    def test_second_lookup_within_ttl_is_served_from_cache(self):
        self.dns.add("cached.ferry.test", a=["127.0.0.1"], ttl=300)
        ferry = self.start()
        rep, _, _, _ = self.request(ferry, "cached.ferry.test")
        self.assertEqual(rep, ft.REP_SUCCEEDED)
        first = self.dns.count("cached.ferry.test")
        self.assertGreater(first, 0)
        for _ in range(3):
            rep, _, _, _ = self.request(ferry, "cached.ferry.test")
            self.assertEqual(rep, ft.REP_SUCCEEDED)
        self.assertEqual(self.dns.count("cached.ferry.test"), first,
                         "queries: %r" % self.dns.queries)

    def test_expired_ttl_asks_again(self):
        self.dns.add("short.ferry.test", a=["127.0.0.1"], ttl=1)
        ferry = self.start()
        self.assertEqual(self.request(ferry, "short.ferry.test")[0], ft.REP_SUCCEEDED)
        first = self.dns.count("short.ferry.test")
        time.sleep(2.2)
        self.assertEqual(self.request(ferry, "short.ferry.test")[0], ft.REP_SUCCEEDED)
        self.assertGreater(self.dns.count("short.ferry.test"), first)

    def test_concurrent_lookups_of_one_name_succeed(self):
        self.dns.add("many.ferry.test", a=["127.0.0.1"])
        ferry = self.start()
        socks = []
        try:
            for _ in range(8):
                s = ft.connect(*ferry.addr())
                socks.append(s)
                s.sendall(ft.socks5_greeting()
                          + ft.socks5_request(ft.CMD_CONNECT, "many.ferry.test", self.echo.port))
            for s in socks:
                self.assertEqual(ft.read_method(s), ft.METHOD_NOAUTH)
                self.assertEqual(ft.read_socks5_reply(s)[0], ft.REP_SUCCEEDED)
        finally:
            for s in socks:
                s.close()

    @unittest.skipUnless(ft.ipv6_available(), "no IPv6 loopback")
    def test_refused_ipv6_falls_back_to_ipv4(self):
        port = self.echo.port
        # Nothing may listen on [::1]:port, so the IPv6 attempt is refused.
        try:
            ft.connect("::1", port, timeout=2).close()
            self.skipTest("[::1]:%d is open" % port)
        except ConnectionRefusedError:
            pass
        self.dns.add("dual.ferry.test", a=["127.0.0.1"], aaaa=["::1"])
        ferry = self.start()
        rep, baddr, bport, elapsed = self.request(ferry, "dual.ferry.test", port)
        self.assertEqual(rep, ft.REP_SUCCEEDED)
        self.assertEqual((baddr, bport), self.echo.peers[0])
        self.assertEqual(baddr, "127.0.0.1")
        self.assertLess(elapsed, 3)
        sess = ferry.wait_sessions(1)[-1]
        self.assertEqual(sess.get("addr"), "127.0.0.1:%d" % port, sess)


if __name__ == "__main__":
    ft.main()

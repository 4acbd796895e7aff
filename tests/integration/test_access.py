"""Access control through the real ferryd: client rules at accept, request rules per condition
kind (from, user, command, to as CIDR / host / .domain, port), the order name rules -> DNS ->
address rules with the connect going to exactly the address that passed, the private-destination
block for clients outside trusted-clients, per-datagram checks of UDP associations, and the
safe defaults that refuse an unauthenticated listener others can reach.

A client that is "not on loopback" is played by 127.0.0.2 with trusted-clients narrowed to
127.0.0.1, since tests may only use loopback addresses.
"""

import os
import tempfile
import unittest

import ferrytest as ft

CLIENT2 = "127.0.0.2"  # a second loopback address, as a client the host does not trust


def refused_at_accept(ferry, source=None):
    """True when ferryd closes a new connection without a byte of reply to a greeting."""
    s = ft.connect(*ferry.addr(), source=source)
    try:
        try:
            s.sendall(ft.socks5_greeting())
        except (BrokenPipeError, ConnectionResetError):
            return True
        closed, data, _ = ft.wait_closed(s, 3.0)
        return closed and data == b""
    finally:
        s.close()


def connect_rep(ferry, host, port, source=None, user=None, password=None, cmd=ft.CMD_CONNECT):
    """The REP ferryd answers a SOCKS5 request with (the connection is closed)."""
    s, rep, _, _ = ft.socks5_open(ferry.addr(), host, port, user=user, password=password,
                                  cmd=cmd, source=source)
    s.close()
    return rep


def echo_works(ferry, host, port, source=None, payload=b"through the rules"):
    s, rep, _, _ = ft.socks5_open(ferry.addr(), host, port, source=source)
    try:
        if rep != ft.REP_SUCCEEDED:
            raise AssertionError("REP %#x for %s:%d" % (rep, host, port))
        return ft.echo_roundtrip(s, payload) == payload
    finally:
        s.close()


class ClientRulesTest(unittest.TestCase):
    def test_client_pass_from_range_lets_only_that_range_in(self):
        ferry = ft.start_ferryd(self, extra=["client pass from 127.0.0.1/32"])
        echo = ft.EchoOrigin(self)
        self.assertTrue(echo_works(ferry, echo.host, echo.port))
        self.assertTrue(refused_at_accept(ferry, source=CLIENT2))
        ferry.wait_line(r"client 127\.0\.0\.2:\d+ blocked: no client rule passes it")

    def test_client_block_rule_names_its_number_and_line(self):
        ferry = ft.start_ferryd(self, extra=["client block from 127.0.0.2 log", "client pass"])
        echo = ft.EchoOrigin(self)
        self.assertTrue(refused_at_accept(ferry, source=CLIENT2))
        m = ferry.wait_line(r"client 127\.0\.0\.2:\d+ blocked by client rule 1 \(line (\d+)\)")
        with open(ferry.conf_path) as f:
            lines = f.read().splitlines()
        self.assertEqual(lines[int(m.group(1)) - 1], "client block from 127.0.0.2 log")
        self.assertTrue(echo_works(ferry, echo.host, echo.port))

    def test_client_rule_on_listener(self):
        ferry = ft.start_ferryd(self, listen=("127.0.0.1:0", "127.0.0.3:0"),
                                extra=["client pass listener 127.0.0.1"])
        echo = ft.EchoOrigin(self)
        self.assertTrue(echo_works(ferry, echo.host, echo.port))
        other = [a for a in ferry.addrs if a[0] == "127.0.0.3"][0]
        s = ft.connect(*other)
        s.sendall(ft.socks5_greeting())
        closed, data, _ = ft.wait_closed(s, 3.0)
        s.close()
        self.assertTrue(closed)
        self.assertEqual(data, b"")
        ferry.wait_line(r"client 127\.0\.0\.1:\d+ blocked: no client rule passes it")
        self.assertEqual(len(ferry.wait_sessions(1)), 1)  # the echo session only

    def test_blocked_clients_leave_no_access_line_and_no_fd(self):
        ferry = ft.start_ferryd(self, extra=["client pass from 127.0.0.1"])
        base = ft.open_fds(ferry.proc.pid)
        for _ in range(20):
            self.assertTrue(refused_at_accept(ferry, source=CLIENT2))
        self.assertEqual(ft.wait_fds(ferry.proc.pid, base), base)
        self.assertEqual(ferry.sessions(), [])


class RequestRulesTest(unittest.TestCase):
    def test_from_condition(self):
        ferry = ft.start_ferryd(self, extra=["request block from 127.0.0.2/32", "request pass"])
        echo = ft.EchoOrigin(self)
        self.assertEqual(connect_rep(ferry, echo.host, echo.port, source=CLIENT2),
                         ft.REP_NOT_ALLOWED)
        self.assertTrue(echo_works(ferry, echo.host, echo.port))
        sess = ferry.wait_sessions(1, pred=lambda s: s["reply"] == "not-allowed")[0]
        self.assertEqual(sess["rule"], "request:1")
        self.assertEqual(sess["addr"], "-")

    def test_user_condition(self):
        users = ft.make_users_file(self, {"alice": "a-secret", "bob": "b-secret"})
        ferry = ft.start_ferryd(self, auth="password", users=users,
                                extra=["request pass user alice", "request block log"])
        echo = ft.EchoOrigin(self)
        self.assertEqual(connect_rep(ferry, echo.host, echo.port, user="alice",
                                     password="a-secret"), ft.REP_SUCCEEDED)
        self.assertEqual(connect_rep(ferry, echo.host, echo.port, user="bob",
                                     password="b-secret"), ft.REP_NOT_ALLOWED)
        ferry.wait_line(r"request rule 2 \(line \d+\) block: client=127\.0\.0\.1:\d+ user=bob "
                        r"cmd=connect target=127\.0\.0\.1:%d" % echo.port)
        sess = ferry.wait_sessions(1, pred=lambda s: s["user"] == "bob")[0]
        self.assertEqual((sess["reply"], sess["rule"]), ("not-allowed", "request:2"))
        self.assertEqual(echo.peers[1:], [])  # bob's request never reached the origin

    def test_command_condition(self):
        dns = ft.DNSServer(self)
        dns.add("name.test", a=["127.0.0.1"])
        ferry = ft.start_ferryd(self, dns=dns, extra=["request block command bind,udp,resolve",
                                                      "request pass"])
        echo = ft.EchoOrigin(self)
        self.assertEqual(connect_rep(ferry, "0.0.0.0", 0, cmd=ft.CMD_UDP_ASSOCIATE),
                         ft.REP_NOT_ALLOWED)
        self.assertEqual(connect_rep(ferry, "127.0.0.1", 0, cmd=ft.CMD_BIND), ft.REP_NOT_ALLOWED)
        self.assertEqual(connect_rep(ferry, "name.test", 0, cmd=0xF0), ft.REP_NOT_ALLOWED)
        self.assertEqual(dns.count("name.test"), 0)
        self.assertTrue(echo_works(ferry, echo.host, echo.port))
        cmds = sorted(s["cmd"] for s in ferry.wait_sessions(4))
        self.assertEqual(cmds, ["bind", "connect", "resolve", "udp"])

    def test_to_cidr_condition(self):
        ferry = ft.start_ferryd(self, extra=["request block to 127.0.0.1/32", "request pass"])
        blocked = ft.EchoOrigin(self, "127.0.0.1")
        allowed = ft.EchoOrigin(self, "127.0.0.6")
        self.assertEqual(connect_rep(ferry, blocked.host, blocked.port), ft.REP_NOT_ALLOWED)
        # The IPv4-mapped form of a blocked address is the same address.
        self.assertEqual(connect_rep(ferry, "::ffff:127.0.0.1", blocked.port), ft.REP_NOT_ALLOWED)
        self.assertTrue(echo_works(ferry, allowed.host, allowed.port))
        self.assertEqual(blocked.peers, [])

    def test_to_host_name_condition_is_checked_before_any_dns_query(self):
        dns = ft.DNSServer(self)
        dns.add("blocked.test", a=["127.0.0.1"])
        dns.add("allowed.test", a=["127.0.0.1"])
        ferry = ft.start_ferryd(self, dns=dns, extra=["request block to blocked.test",
                                                      "request pass"])
        echo = ft.EchoOrigin(self)
        self.assertEqual(connect_rep(ferry, "BLOCKED.test.", echo.port), ft.REP_NOT_ALLOWED)
        self.assertEqual(dns.count("blocked.test"), 0)
        self.assertTrue(echo_works(ferry, "allowed.test", echo.port))
        # A host name entry never matches a request for an address.
        self.assertTrue(echo_works(ferry, "127.0.0.1", echo.port))

    def test_to_domain_suffix_condition(self):
        dns = ft.DNSServer(self)
        for name in ("bad.test", "www.bad.test", "a.b.bad.test", "notbad.test"):
            dns.add(name, a=["127.0.0.1"])
        ferry = ft.start_ferryd(self, dns=dns, extra=["request block to .bad.test",
                                                      "request pass"])
        echo = ft.EchoOrigin(self)
        for name in ("bad.test", "www.bad.test", "a.b.bad.test"):
            self.assertEqual(connect_rep(ferry, name, echo.port), ft.REP_NOT_ALLOWED, name)
            self.assertEqual(dns.count(name), 0, name)
        self.assertTrue(echo_works(ferry, "notbad.test", echo.port))

    def test_port_condition(self):
        echo = ft.EchoOrigin(self)
        other = ft.EchoOrigin(self)
        ferry = ft.start_ferryd(self, extra=["request pass port %d-%d" % (echo.port, echo.port),
                                             "request block"])
        self.assertTrue(echo_works(ferry, echo.host, echo.port))
        self.assertEqual(connect_rep(ferry, other.host, other.port), ft.REP_NOT_ALLOWED)
        sess = ferry.wait_sessions(1, pred=lambda s: s["reply"] == "not-allowed")[0]
        self.assertEqual(sess["rule"], "request:2")
        self.assertEqual(other.peers, [])

    def test_socks4_and_socks4a_refusals_are_cd_91(self):
        dns = ft.DNSServer(self)
        dns.add("blocked.test", a=["127.0.0.1"])
        echo = ft.EchoOrigin(self)
        ferry = ft.start_ferryd(self, dns=dns, extra=["request block to blocked.test,127.0.0.1",
                                                      "request pass"])
        for host in ("127.0.0.1", "blocked.test"):
            s = ft.connect(*ferry.addr())
            s.sendall(ft.socks4_request(host, echo.port))
            self.assertEqual(ft.read_socks4_reply(s)[0], ft.SOCKS4_REJECTED, host)
            s.close()
        self.assertEqual(echo.peers, [])

    def test_resolved_addresses_are_checked_and_only_passing_ones_are_connected(self):
        # The name resolves to a refused address first and an allowed one second: ferryd must
        # skip the first (where nothing listens: a connect there would be refused) and reach
        # the second, with no second lookup in between.
        dns = ft.DNSServer(self)
        echo = ft.EchoOrigin(self, "127.0.0.7")
        dns.add("two.test", a=["127.0.0.8", "127.0.0.7"])
        dns.add("none.test", a=["127.0.0.8", "127.0.0.9"])
        ferry = ft.start_ferryd(self, dns=dns, extra=["request pass to 127.0.0.7"])
        self.assertTrue(echo_works(ferry, "two.test", echo.port))
        self.assertEqual(dns.count("two.test"), 2)  # one A and one AAAA query, once
        sess = ferry.wait_sessions(1)[0]
        self.assertEqual(sess["addr"], "127.0.0.7:%d" % echo.port)
        self.assertEqual(connect_rep(ferry, "none.test", echo.port), ft.REP_NOT_ALLOWED)
        self.assertEqual(ferry.wait_sessions(2)[1]["rule"], "request:0")

    def test_rule_refusing_a_name_before_an_address_rule_prevents_the_lookup(self):
        dns = ft.DNSServer(self)
        dns.add("secret.test", a=["127.0.0.1"])
        dns.add("open.test", a=["127.0.0.1"])
        echo = ft.EchoOrigin(self)
        ferry = ft.start_ferryd(self, dns=dns, extra=["request block to secret.test",
                                                      "request pass to 127.0.0.0/8",
                                                      "request block"])
        self.assertEqual(connect_rep(ferry, "secret.test", echo.port), ft.REP_NOT_ALLOWED)
        self.assertEqual(dns.count("secret.test"), 0)
        self.assertTrue(echo_works(ferry, "open.test", echo.port))


class PrivateDestinationsTest(unittest.TestCase):
    """127.0.0.2 plays a client elsewhere: trusted-clients is narrowed to 127.0.0.1."""

    def start(self, extra=(), dns=None):
        return ft.start_ferryd(self, listen=("127.0.0.2:0",), dns=dns,
                               extra=["trusted-clients 127.0.0.1/32"] + list(extra))

    def test_loopback_literal_is_refused_to_an_untrusted_client(self):
        echo = ft.EchoOrigin(self)
        ferry = self.start()
        self.assertEqual(connect_rep(ferry, "127.0.0.1", echo.port, source=CLIENT2),
                         ft.REP_NOT_ALLOWED)
        for host in ("::ffff:127.0.0.1", "::1", "64:ff9b::7f00:1", "2002:7f00:1::1"):
            self.assertEqual(connect_rep(ferry, host, echo.port, source=CLIENT2),
                             ft.REP_NOT_ALLOWED, host)
        sess = ferry.wait_sessions(5)
        self.assertEqual({s["rule"] for s in sess}, {"private"})
        self.assertEqual(echo.peers, [])

    def test_name_resolving_to_loopback_is_refused_to_an_untrusted_client(self):
        dns = ft.DNSServer(self)
        dns.add("rebind.test", a=["127.0.0.1"], aaaa=["::1"])
        echo = ft.EchoOrigin(self)
        ferry = self.start(dns=dns)
        self.assertEqual(connect_rep(ferry, "rebind.test", echo.port, source=CLIENT2),
                         ft.REP_NOT_ALLOWED)
        self.assertEqual(ferry.wait_sessions(1)[0]["rule"], "private")
        self.assertEqual(echo.peers, [])

    def test_trusted_client_reaches_private_destinations(self):
        echo = ft.EchoOrigin(self)
        ferry = ft.start_ferryd(self, extra=["trusted-clients 127.0.0.2"])
        self.assertTrue(echo_works(ferry, echo.host, echo.port, source=CLIENT2))

    def test_default_trusts_loopback_clients(self):
        echo = ft.EchoOrigin(self)
        ferry = ft.start_ferryd(self)
        self.assertTrue(echo_works(ferry, echo.host, echo.port, source=CLIENT2))

    def test_private_destinations_allow_opens_them(self):
        echo = ft.EchoOrigin(self)
        ferry = self.start(["private-destinations allow"])
        self.assertTrue(echo_works(ferry, echo.host, echo.port, source=CLIENT2))

    def test_pass_rule_with_a_to_range_opens_that_range_only(self):
        echo = ft.EchoOrigin(self, "127.0.0.1")
        other = ft.EchoOrigin(self, "127.0.0.5")
        ferry = self.start(["request pass to 127.0.0.1/32", "request pass"])
        self.assertTrue(echo_works(ferry, echo.host, echo.port, source=CLIENT2))
        self.assertEqual(connect_rep(ferry, other.host, other.port, source=CLIENT2),
                         ft.REP_NOT_ALLOWED)

    def test_bind_peer_and_resolve_answers_are_private_destination_checks(self):
        dns = ft.DNSServer(self)
        dns.add("inside.test", a=["127.0.0.1"])
        dns.add("mixed.test", a=["127.0.0.1", "198.51.100.9"])
        dns.add_ptr("127.0.0.1", "inside.test")
        ferry = self.start(dns=dns)
        # RESOLVE (0xF0): a name inside is not mapped; only the public address of a mixed one.
        s, rep, _, _ = ft.socks5_open(ferry.addr(), "inside.test", 0, cmd=0xF0, source=CLIENT2)
        s.close()
        self.assertEqual(rep, ft.REP_NOT_ALLOWED)
        s, rep, host, _ = ft.socks5_open(ferry.addr(), "mixed.test", 0, cmd=0xF0,
                                         source=CLIENT2)
        s.close()
        self.assertEqual((rep, host), (ft.REP_SUCCEEDED, "198.51.100.9"))
        # RESOLVE_PTR (0xF1) of an address inside, and BIND expecting a peer inside.
        for cmd in (0xF1, ft.CMD_BIND):
            s, rep, _, _ = ft.socks5_open(ferry.addr(), "127.0.0.1", 0, cmd=cmd, source=CLIENT2)
            s.close()
            self.assertEqual(rep, ft.REP_NOT_ALLOWED, hex(cmd))
        # BIND expecting 0.0.0.0 means any peer: not a destination.
        s, rep, _, _ = ft.socks5_open(ferry.addr(), "0.0.0.0", 0, cmd=ft.CMD_BIND,
                                      source=CLIENT2)
        s.close()
        self.assertEqual(rep, ft.REP_SUCCEEDED)
        sess = ferry.wait_sessions(5)
        self.assertEqual([x.get("rule") for x in sess if x.get("reply") == "not-allowed"],
                         ["private"] * 3)

    def test_bind_and_resolve_inside_still_work_for_trusted_clients(self):
        dns = ft.DNSServer(self)
        dns.add("inside.test", a=["127.0.0.1"])
        ferry = ft.start_ferryd(self, dns=dns)
        s, rep, host, _ = ft.socks5_open(ferry.addr(), "inside.test", 0, cmd=0xF0)
        s.close()
        self.assertEqual((rep, host), (ft.REP_SUCCEEDED, "127.0.0.1"))
        s, rep, _, _ = ft.socks5_open(ferry.addr(), "127.0.0.1", 0, cmd=ft.CMD_BIND)
        s.close()
        self.assertEqual(rep, ft.REP_SUCCEEDED)

    def test_pass_to_everything_does_not_open_private_destinations(self):
        echo = ft.EchoOrigin(self)
        ferry = self.start(["request pass to 0.0.0.0/0,::/0"])
        ferry.wait_line(r"ferryd: warning: .*:\d+: this request pass rule's 'to' range holds "
                        r"private destinations")
        self.assertEqual(connect_rep(ferry, echo.host, echo.port, source=CLIENT2),
                         ft.REP_NOT_ALLOWED)
        self.assertEqual(ferry.wait_sessions(1)[0]["rule"], "private")
        self.assertEqual(echo.peers, [])

    def test_pass_rule_marked_private_opens_private_destinations(self):
        echo = ft.EchoOrigin(self)
        ferry = self.start(["request pass to 0.0.0.0/0 private"])
        self.assertTrue(echo_works(ferry, echo.host, echo.port, source=CLIENT2))


class UDPRulesTest(unittest.TestCase):
    def test_datagrams_are_checked_one_by_one(self):
        allowed = ft.UDPEcho(self, "127.0.0.1")
        blocked = ft.UDPEcho(self, "127.0.0.4")
        ferry = ft.start_ferryd(self, extra=["request block command udp to 127.0.0.4",
                                             "request pass"])
        assoc = ft.RawAssoc(self, ferry)
        self.assertEqual(assoc.rep, ft.REP_SUCCEEDED)
        for i in range(5):
            assoc.send(blocked.host, blocked.port, b"no %d" % i)
        self.assertEqual(assoc.roundtrip(allowed, b"yes")[2], b"yes")
        assoc.close()
        sess = ferry.wait_sessions(1)[0]
        self.assertEqual(ft.drops(sess)["blocked"], 5)
        self.assertEqual(blocked.count, 0)

    def test_datagrams_to_private_destinations_are_dropped_for_untrusted_clients(self):
        dns = ft.DNSServer(self)
        dns.add("inside.test", a=["127.0.0.1"])
        echo = ft.UDPEcho(self, "127.0.0.1")
        ferry = ft.start_ferryd(self, listen=("127.0.0.2:0",), dns=dns,
                                extra=["trusted-clients 127.0.0.1/32"])
        assoc = ft.RawAssoc(self, ferry, bind_ip=CLIENT2, source=CLIENT2)
        self.assertEqual(assoc.rep, ft.REP_SUCCEEDED)
        assoc.send(echo.host, echo.port, b"literal")
        assoc.send("inside.test", echo.port, b"by name")
        self.assertTrue(ft.nothing_arrives(assoc.sock, 0.5))
        assoc.close()
        sess = ferry.wait_sessions(1)[0]
        self.assertEqual(ft.drops(sess)["blocked"], 2)
        self.assertEqual(echo.count, 0)

    def test_datagram_to_a_refused_name_is_never_resolved(self):
        dns = ft.DNSServer(self)
        dns.add("nope.test", a=["127.0.0.1"])
        echo = ft.UDPEcho(self)
        ferry = ft.start_ferryd(self, dns=dns, extra=["request block to nope.test",
                                                      "request pass"])
        assoc = ft.RawAssoc(self, ferry)
        assoc.send("nope.test", echo.port, b"x")
        self.assertEqual(assoc.roundtrip(echo, b"ok")[2], b"ok")
        assoc.close()
        self.assertEqual(ft.drops(ferry.wait_sessions(1)[0])["blocked"], 1)
        self.assertEqual(dns.count("nope.test"), 0)


class SafeDefaultsTest(unittest.TestCase):
    def check(self, text):
        """ferryd -t on a file holding text: (CompletedProcess, path)."""
        conf = os.path.join(tempfile.mkdtemp(prefix="ferrytest-"), "ferryd.conf")
        with open(conf, "w") as f:
            f.write(text)
        return ft.run(ft.ferryd_argv("-t", "-f", conf)), conf

    def test_unauthenticated_listener_on_a_public_address_refuses_to_start(self):
        r, conf = self.check("listen 0.0.0.0:1080\n")
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"%s:1: listen 0.0.0.0:1080 is not a loopback address" % conf.encode(),
                      r.stderr)

    def test_allow_unauthenticated_needs_client_rules(self):
        r, conf = self.check("listen [::]:1080\nallow-unauthenticated yes\n")
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"%s:2: allow-unauthenticated yes needs at least one 'client' rule"
                      % conf.encode(), r.stderr)
        r, _ = self.check("listen [::]:1080\nallow-unauthenticated yes\n"
                          "client pass from 192.0.2.0/24\n")
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_password_listener_on_a_public_address_is_fine(self):
        users = ft.make_users_file(self, {"alice": "pw"})
        r, _ = self.check("listen 0.0.0.0:1080\nauth password\nusers %s\n" % users)
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_builtin_defaults_still_serve_loopback_without_auth(self):
        r = ft.run(ft.ferryd_argv("-t"))
        self.assertEqual(r.returncode, 0, r.stderr)


if __name__ == "__main__":
    ft.main()

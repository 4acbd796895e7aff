"""DNS through SOCKS: Tor's RESOLVE (0xF0) and RESOLVE_PTR (0xF1) extensions for SOCKS5, and
RESOLVE for SOCKS4a, answered from a DNS server the test runs; then the real tor-resolve.

Spec: https://spec.torproject.org/socks-extensions (doc/socks-extensions.txt in tor).
"""

import ipaddress
import shutil
import socket
import struct
import unittest

import ferrytest as ft

CMD_RESOLVE = 0xF0
CMD_RESOLVE_PTR = 0xF1

SERVED = "host.ferry.test"
SERVED_A = ["192.0.2.10", "192.0.2.11"]
SERVED_AAAA = ["2001:db8::10"]
V6ONLY = "six.ferry.test"
V6ONLY_AAAA = ["2001:db8::20"]
PTR_V4 = "192.0.2.10"
PTR_V6 = "2001:db8::20"
UNKNOWN_V4 = "192.0.2.99"


def hosts_file_name(ip):
    """The first name /etc/hosts gives ip (what c-ares answers a reverse lookup with), or
    None."""
    want = ipaddress.ip_address(ip)
    try:
        with open("/etc/hosts") as f:
            for line in f:
                fields = line.split("#", 1)[0].split()
                if len(fields) < 2:
                    continue
                try:
                    if ipaddress.ip_address(fields[0]) == want:
                        return fields[1]
                except ValueError:
                    continue
    except OSError:
        return None
    return None


class ResolveTest(unittest.TestCase):
    def setUp(self):
        self.dns = ft.DNSServer(self)
        self.dns.add(SERVED, a=SERVED_A, aaaa=SERVED_AAAA)
        self.dns.add(V6ONLY, aaaa=V6ONLY_AAAA)
        self.dns.add_ptr(PTR_V4, SERVED)
        self.dns.add_ptr(PTR_V6, V6ONLY)
        # Also in DNS, but /etc/hosts (read first, as for forward lookups) should win.
        self.dns.add_ptr("127.0.0.1", "loopback-from-dns.ferry.test")
        self.ferry = ft.start_ferryd(self, dns=self.dns, extra=["resolver-tries 1",
                                                                  "resolver-timeout 1s"])

    def socks5(self, cmd, host):
        """Send one SOCKS5 request; returns (rep, atyp, addr, port) and checks ferry closes."""
        s = ft.connect(*self.ferry.addr())
        with s:
            s.sendall(ft.socks5_greeting())
            self.assertEqual(ft.read_method(s), ft.METHOD_NOAUTH)
            s.sendall(bytes([5, cmd, 0]) + ft.encode_dest5(host, 0))
            head = ft.recv_exact(s, 4)
            self.assertEqual(head[0], 5, head)
            self.assertEqual(head[2], 0, head)
            atyp = head[3]
            if atyp == 1:
                addr = socket.inet_ntop(socket.AF_INET, ft.recv_exact(s, 4))
            elif atyp == 4:
                addr = socket.inet_ntop(socket.AF_INET6, ft.recv_exact(s, 16))
            elif atyp == 3:
                addr = ft.recv_exact(s, ft.recv_exact(s, 1)[0]).decode()
            else:
                self.fail("reply ATYP %d" % atyp)
            (port,) = struct.unpack("!H", ft.recv_exact(s, 2))
            closed, extra, _ = ft.wait_closed(s, 5)
            self.assertTrue(closed, "ferry kept the connection open after the reply")
            self.assertEqual(extra, b"")
        return head[1], atyp, addr, port

    def socks4(self, raw):
        """Send a raw SOCKS4 request; returns (cd, port, ip) and checks ferry closes."""
        s = ft.connect(*self.ferry.addr())
        with s:
            s.sendall(raw)
            cd, port, ip = ft.read_socks4_reply(s)
            closed, extra, _ = ft.wait_closed(s, 5)
            self.assertTrue(closed, "ferry kept the connection open after the reply")
            self.assertEqual(extra, b"")
        return cd, port, ip

    # --- SOCKS5 RESOLVE -------------------------------------------------------------------

    def test_resolve_gives_first_ipv4_with_port_0(self):
        rep, atyp, addr, port = self.socks5(CMD_RESOLVE, SERVED)
        self.assertEqual((rep, atyp, port), (ft.REP_SUCCEEDED, 1, 0))
        self.assertEqual(addr, SERVED_A[0])
        self.assertGreater(self.dns.count(SERVED), 0)

    def test_resolve_ipv6_only_name_gives_atyp_4(self):
        rep, atyp, addr, port = self.socks5(CMD_RESOLVE, V6ONLY)
        self.assertEqual((rep, atyp, port), (ft.REP_SUCCEEDED, 4, 0))
        self.assertEqual(ipaddress.ip_address(addr), ipaddress.ip_address(V6ONLY_AAAA[0]))

    def test_resolve_nxdomain_is_host_unreachable_with_zero_address(self):
        rep, atyp, addr, port = self.socks5(CMD_RESOLVE, "nx.ferry.test")
        self.assertEqual((rep, atyp, addr, port), (ft.REP_HOST_UNREACHABLE, 1, "0.0.0.0", 0))
        self.assertGreater(self.dns.count("nx.ferry.test"), 0)

    def test_resolve_unanswered_name_is_host_unreachable(self):
        self.dns.set_action("silent.ferry.test", "silent")
        rep, atyp, addr, port = self.socks5(CMD_RESOLVE, "silent.ferry.test")
        self.assertEqual((rep, atyp, addr, port), (ft.REP_HOST_UNREACHABLE, 1, "0.0.0.0", 0))

    # --- SOCKS5 RESOLVE_PTR ---------------------------------------------------------------

    def test_resolve_ptr_ipv4_gives_name_as_atyp_3(self):
        rep, atyp, addr, port = self.socks5(CMD_RESOLVE_PTR, PTR_V4)
        self.assertEqual((rep, atyp, addr, port), (ft.REP_SUCCEEDED, 3, SERVED, 0))
        self.assertGreater(self.dns.count("10.2.0.192.in-addr.arpa"), 0)

    def test_resolve_ptr_ipv6_gives_name(self):
        rep, atyp, addr, port = self.socks5(CMD_RESOLVE_PTR, PTR_V6)
        self.assertEqual((rep, atyp, addr, port), (ft.REP_SUCCEEDED, 3, V6ONLY, 0))

    def test_resolve_ptr_of_loopback_prefers_hosts_file_like_forward_lookups(self):
        want = hosts_file_name("127.0.0.1") or "loopback-from-dns.ferry.test"
        rep, atyp, addr, port = self.socks5(CMD_RESOLVE_PTR, "127.0.0.1")
        self.assertEqual((rep, atyp, addr, port), (ft.REP_SUCCEEDED, 3, want, 0))

    def test_resolve_ptr_without_record_is_host_unreachable(self):
        rep, _, _, _ = self.socks5(CMD_RESOLVE_PTR, UNKNOWN_V4)
        self.assertEqual(rep, ft.REP_HOST_UNREACHABLE)
        self.assertGreater(self.dns.count("99.2.0.192.in-addr.arpa"), 0)

    def test_resolve_ptr_of_a_name_is_address_type_not_supported(self):
        s = ft.connect(*self.ferry.addr())
        with s:
            s.sendall(ft.socks5_greeting())
            self.assertEqual(ft.read_method(s), ft.METHOD_NOAUTH)
            s.sendall(bytes([5, CMD_RESOLVE_PTR, 0]) + ft.encode_dest5(SERVED, 0))
            rep, _, _ = ft.read_socks5_reply(s)
            self.assertEqual(rep, ft.REP_ADDRESS_TYPE_NOT_SUPPORTED)
        self.assertEqual(self.dns.count(), 0)

    # --- SOCKS4a RESOLVE ------------------------------------------------------------------

    def test_socks4a_resolve_gives_ipv4_in_dstip(self):
        cd, port, ip = self.socks4(ft.socks4_request(SERVED, 0, cmd=CMD_RESOLVE))
        self.assertEqual((cd, ip), (ft.SOCKS4_GRANTED, SERVED_A[0]))

    def test_socks4a_resolve_nxdomain_is_rejected(self):
        cd, _, _ = self.socks4(ft.socks4_request("nx.ferry.test", 0, cmd=CMD_RESOLVE))
        self.assertEqual(cd, ft.SOCKS4_REJECTED)

    def test_socks4a_resolve_of_ipv6_only_name_is_rejected(self):
        cd, _, _ = self.socks4(ft.socks4_request(V6ONLY, 0, cmd=CMD_RESOLVE))
        self.assertEqual(cd, ft.SOCKS4_REJECTED)

    def test_plain_socks4_resolve_is_rejected_without_a_query(self):
        cd, _, _ = self.socks4(ft.socks4_request("192.0.2.10", 0, cmd=CMD_RESOLVE))
        self.assertEqual(cd, ft.SOCKS4_REJECTED)
        self.assertEqual(self.dns.count(), 0)

    # --- the real client ------------------------------------------------------------------

    def tor_resolve(self, *args):
        exe = shutil.which("tor-resolve")
        if exe is None:
            self.skipTest("tor-resolve not installed (Debian package tor)")
        host, port = self.ferry.addr()
        r = ft.run([exe] + list(args) + ["%s:%d" % (host, port)], timeout=30)
        ft.log("tor-resolve %s: rc=%d out=%r err=%r" % (args, r.returncode, r.stdout, r.stderr))
        return r.returncode, r.stdout.decode().strip()

    def test_tor_resolve_socks5_name(self):
        rc, out = self.tor_resolve("-5", SERVED)
        self.assertEqual((rc, out), (0, SERVED_A[0]))

    def test_tor_resolve_socks4a_name(self):
        rc, out = self.tor_resolve("-4", SERVED)
        self.assertEqual((rc, out), (0, SERVED_A[0]))

    def test_tor_resolve_reverse(self):
        rc, out = self.tor_resolve("-x", PTR_V4)
        self.assertEqual((rc, out), (0, SERVED))

    def test_tor_resolve_reverse_of_loopback(self):
        want = hosts_file_name("127.0.0.1") or "loopback-from-dns.ferry.test"
        rc, out = self.tor_resolve("-x", "127.0.0.1")
        self.assertEqual((rc, out), (0, want))

    def test_tor_resolve_nxdomain_fails(self):
        rc, out = self.tor_resolve("-5", "nx.ferry.test")
        self.assertNotEqual(rc, 0)
        self.assertEqual(out, "")


if __name__ == "__main__":
    ft.main()

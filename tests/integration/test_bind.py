"""BIND (RFC 1928 section 4 and SOCKS4): the two replies, the expected peer and the wrong one,
the accept timeout, the port range, the control connection going away, and active-mode FTP
through dante's socksify against a pyftpdlib server."""

import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest

import ferrytest as ft

# Below the ephemeral port range (no outgoing connection holds one of these), and far from
# the ranges the unit tests use (27000-27699), in case both run at once.
PORT_RANGE = (28200, 28209)


def connect_from(source, dest, timeout=5):
    """A TCP connection to dest from source (an IP; port chosen by the kernel)."""
    family = socket.AF_INET6 if ":" in source else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.bind((source, 0))
        s.connect(dest)
    except OSError:
        s.close()
        raise
    return s


def readable(s, timeout):
    r, _, _ = select.select([s], [], [], timeout)
    return bool(r)


def connect_refused(dest, source="127.0.0.1"):
    """True when nothing listens at dest any more. A connect that met a listener as ferryd
    closed it may see a reset instead of a refusal: that counts as not refused yet."""
    try:
        s = connect_from(source, dest, timeout=2)
    except ConnectionRefusedError:
        return True
    except (ConnectionResetError, ConnectionAbortedError):
        return False
    s.close()
    return False


class BindTest(unittest.TestCase):
    extra = ()

    def setUp(self):
        self.dns = ft.DNSServer(self)
        self.dns.add("peer.ferry.test", a=["127.0.0.1"])
        self.ferry = ft.start_ferryd(self, dns=self.dns, extra=list(self.extra))

    def bind5(self, host="127.0.0.1", port=0, proxy=None):
        """Control connection with a SOCKS5 BIND request: (sock, rep, bnd_addr, bnd_port)."""
        s, rep, baddr, bport = ft.socks5_open(proxy or self.ferry.addr(), host, port,
                                              cmd=ft.CMD_BIND, timeout=5)
        self.addCleanup(s.close)
        return s, rep, baddr, bport

    def bind5_ok(self, host="127.0.0.1", port=0):
        s, rep, baddr, bport = self.bind5(host, port)
        self.assertEqual(rep, ft.REP_SUCCEEDED)
        self.assertNotEqual(bport, 0)
        return s, baddr, bport

    def assert_talks(self, client, peer):
        client.sendall(b"from the client")
        self.assertEqual(ft.recv_exact(peer, 15), b"from the client")
        peer.sendall(b"from the peer")
        self.assertEqual(ft.recv_exact(client, 13), b"from the peer")


class Socks5BindTest(BindTest):
    def test_bind_two_replies_then_data_both_ways_and_half_close(self):
        s, baddr, bport = self.bind5_ok("127.0.0.1", 0)
        # The listening address is the outward address towards 127.0.0.1.
        self.assertEqual(baddr, "127.0.0.1")
        self.assertNotEqual(bport, self.ferry.port)
        self.assertFalse(readable(s, 0.2), "second reply before any peer connected")

        peer = connect_from("127.0.0.1", (baddr, bport))
        self.addCleanup(peer.close)
        rep, paddr, pport = ft.read_socks5_reply(s)
        self.assertEqual(rep, ft.REP_SUCCEEDED)
        self.assertEqual((paddr, pport), peer.getsockname()[:2])

        self.assert_talks(s, peer)
        big = os.urandom(300000)
        peer.sendall(big)
        self.assertEqual(ft.recv_exact(s, len(big)), big)

        # The peer half-closes: the client sees EOF and can still send.
        peer.shutdown(socket.SHUT_WR)
        self.assertEqual(ft.recv_until_eof(s), b"")
        s.sendall(b"after the peer's FIN")
        self.assertEqual(ft.recv_exact(peer, 20), b"after the peer's FIN")
        s.shutdown(socket.SHUT_WR)
        self.assertEqual(ft.recv_until_eof(peer), b"")
        s.close()
        peer.close()

        line = self.ferry.wait_sessions(1, pred=lambda l: l.get("cmd") == "bind")[0]
        self.assertEqual(line["reply"], "succeeded")
        self.assertEqual(line["addr"], "%s:%d" % (paddr, pport))
        # Data was relayed as for CONNECT, and counted.
        self.assertGreaterEqual(int(line["down"]), len(big))

        # The listening socket went with the handover.
        self.assertTrue(connect_refused((baddr, bport)))

    def test_bind_wrong_peer_is_closed_then_right_peer_works(self):
        s, baddr, bport = self.bind5_ok("127.0.0.1", 0)
        wrong = connect_from("127.0.0.2", (baddr, bport))
        self.addCleanup(wrong.close)
        closed, data, _ = ft.wait_closed(wrong, 3)
        self.assertTrue(closed, "the connection from 127.0.0.2 was not closed")
        self.assertEqual(data, b"")
        self.ferry.wait_line(r"bind: refused a connection from 127\.0\.0\.2:%d"
                             % wrong.getsockname()[1])
        self.assertFalse(readable(s, 0.2), "a reply was sent for the wrong peer")

        right = connect_from("127.0.0.1", (baddr, bport))
        self.addCleanup(right.close)
        rep, paddr, pport = ft.read_socks5_reply(s)
        self.assertEqual(rep, ft.REP_SUCCEEDED)
        self.assertEqual((paddr, pport), right.getsockname()[:2])
        self.assert_talks(s, right)

    def test_bind_named_peer_is_resolved_and_expected(self):
        s, baddr, bport = self.bind5_ok("peer.ferry.test", 0)
        self.assertEqual(baddr, "127.0.0.1")
        wrong = connect_from("127.0.0.2", (baddr, bport))
        self.addCleanup(wrong.close)
        self.assertTrue(ft.wait_closed(wrong, 3)[0])
        right = connect_from("127.0.0.1", (baddr, bport))
        self.addCleanup(right.close)
        rep, paddr, pport = ft.read_socks5_reply(s)
        self.assertEqual(rep, ft.REP_SUCCEEDED)
        self.assertEqual((paddr, pport), right.getsockname()[:2])
        self.assert_talks(s, right)

    def test_bind_for_0_0_0_0_accepts_any_peer(self):
        s, baddr, bport = self.bind5_ok("0.0.0.0", 0)
        # No destination to route to: the control connection's local address.
        self.assertEqual(baddr, "127.0.0.1")
        peer = connect_from("127.0.0.2", (baddr, bport))
        self.addCleanup(peer.close)
        rep, paddr, pport = ft.read_socks5_reply(s)
        self.assertEqual(rep, ft.REP_SUCCEEDED)
        self.assertEqual((paddr, pport), peer.getsockname()[:2])
        self.assert_talks(s, peer)

    def test_bind_control_close_while_waiting_closes_the_listening_port(self):
        s, baddr, bport = self.bind5_ok("127.0.0.1", 0)
        s.close()
        self.assertTrue(ft.wait_until(lambda: connect_refused((baddr, bport)), 3),
                        "port %d still accepts after the client went away" % bport)

    def test_bind_data_sent_by_client_before_the_peer_arrives_is_not_lost(self):
        s, baddr, bport = self.bind5_ok("127.0.0.1", 0)
        s.sendall(b"early")
        time.sleep(0.1)
        peer = connect_from("127.0.0.1", (baddr, bport))
        self.addCleanup(peer.close)
        self.assertEqual(ft.read_socks5_reply(s)[0], ft.REP_SUCCEEDED)
        self.assertEqual(ft.recv_exact(peer, 5), b"early")

    @unittest.skipUnless(ft.ipv6_available(), "no IPv6 loopback")
    def test_bind_ipv6_peer(self):
        ferry6 = ft.start_ferryd(self, listen=("[::1]:0",), dns=self.dns)
        s, rep, baddr, bport = self.bind5("::1", 0, proxy=ferry6.addr())
        self.assertEqual(rep, ft.REP_SUCCEEDED)
        self.assertEqual(baddr, "::1")
        peer = connect_from("::1", (baddr, bport))
        self.addCleanup(peer.close)
        rep, paddr, pport = ft.read_socks5_reply(s)
        self.assertEqual(rep, ft.REP_SUCCEEDED)
        self.assertEqual((paddr, pport), peer.getsockname()[:2])
        self.assert_talks(s, peer)


class BindPeerAnyTest(BindTest):
    extra = ("bind peer any",)

    def test_bind_peer_any_accepts_another_address(self):
        s, baddr, bport = self.bind5_ok("127.0.0.1", 0)
        peer = connect_from("127.0.0.2", (baddr, bport))
        self.addCleanup(peer.close)
        rep, paddr, pport = ft.read_socks5_reply(s)
        self.assertEqual(rep, ft.REP_SUCCEEDED)
        self.assertEqual((paddr, pport), ("127.0.0.2", peer.getsockname()[1]))
        self.assert_talks(s, peer)


class BindTimeoutTest(BindTest):
    extra = ("timeout bind 1s",)

    def test_bind_accept_timeout_sends_ttl_expired_then_closes(self):
        s, baddr, bport = self.bind5_ok("127.0.0.1", 0)
        start = time.monotonic()
        s.settimeout(5)
        rep, _, _ = ft.read_socks5_reply(s)
        waited = time.monotonic() - start
        self.assertEqual(rep, ft.REP_TTL_EXPIRED)
        self.assertGreater(waited, 0.5)
        self.assertLess(waited, 3.0)
        closed, data, _ = ft.wait_closed(s, 3)
        self.assertTrue(closed, "control connection open after the timeout reply")
        self.assertEqual(data, b"")
        self.assertTrue(ft.wait_until(lambda: connect_refused((baddr, bport)), 3))

    def test_bind_socks4_accept_timeout_sends_rejected(self):
        s = ft.connect(*self.ferry.addr(), timeout=5)
        self.addCleanup(s.close)
        s.sendall(ft.socks4_request("127.0.0.1", 0, cmd=ft.CMD_BIND))
        self.assertEqual(ft.read_socks4_reply(s)[0], ft.SOCKS4_GRANTED)
        start = time.monotonic()
        self.assertEqual(ft.read_socks4_reply(s)[0], ft.SOCKS4_REJECTED)
        self.assertLess(time.monotonic() - start, 3.0)
        self.assertTrue(ft.wait_closed(s, 3)[0])


class BindPortRangeTest(BindTest):
    extra = ("bind port-range %d-%d" % PORT_RANGE,)

    def test_bind_port_range_is_honoured_in_the_first_reply(self):
        ports = set()
        for _ in range(4):
            s, baddr, bport = self.bind5_ok("127.0.0.1", 0)
            self.assertGreaterEqual(bport, PORT_RANGE[0])
            self.assertLessEqual(bport, PORT_RANGE[1])
            ports.add(bport)
        # Four sessions wait at once: four different ports.
        self.assertEqual(len(ports), 4)
        # And the range's ports really listen.
        for p in ports:
            with connect_from("127.0.0.1", ("127.0.0.1", p)):
                pass

    def test_bind_exhausted_port_range_is_a_failure_reply(self):
        held = []
        for port in range(PORT_RANGE[0], PORT_RANGE[1] + 1):
            h = socket.socket()
            self.addCleanup(h.close)
            # As ferry does, so a port in TIME_WAIT is held here too.
            h.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                h.bind(("127.0.0.1", port))
                h.listen(1)
            except OSError:
                pass  # taken by something else: just as exhausted
            held.append(h)
        s, rep, _, _ = self.bind5("127.0.0.1", 0)
        self.assertEqual(rep, ft.REP_GENERAL_FAILURE)
        self.assertTrue(ft.wait_closed(s, 3)[0])


class BindAdvertiseTest(unittest.TestCase):
    def test_bind_first_reply_names_the_advertised_address_with_the_real_port(self):
        ferry = ft.start_ferryd(self, listen=("127.0.0.1:0 advertise 192.0.2.77",))
        s, rep, baddr, bport = ft.socks5_open(ferry.addr(), "127.0.0.1", 0, cmd=ft.CMD_BIND,
                                              timeout=5)
        self.addCleanup(s.close)
        self.assertEqual(rep, ft.REP_SUCCEEDED)
        self.assertEqual(baddr, "192.0.2.77")
        peer = connect_from("127.0.0.1", ("127.0.0.1", bport))
        self.addCleanup(peer.close)
        rep, paddr, pport = ft.read_socks5_reply(s)
        self.assertEqual(rep, ft.REP_SUCCEEDED)
        self.assertEqual((paddr, pport), peer.getsockname()[:2])


class Socks4BindTest(BindTest):
    def test_socks4_bind_two_replies_and_data(self):
        s = ft.connect(*self.ferry.addr(), timeout=5)
        self.addCleanup(s.close)
        s.sendall(ft.socks4_request("127.0.0.1", 0, userid=b"ftp", cmd=ft.CMD_BIND))
        cd, bport, bip = ft.read_socks4_reply(s)
        self.assertEqual(cd, ft.SOCKS4_GRANTED)
        self.assertEqual(bip, "127.0.0.1")
        self.assertNotEqual(bport, 0)

        wrong = connect_from("127.0.0.2", (bip, bport))
        self.addCleanup(wrong.close)
        self.assertTrue(ft.wait_closed(wrong, 3)[0])

        peer = connect_from("127.0.0.1", (bip, bport))
        self.addCleanup(peer.close)
        cd, pport, pip = ft.read_socks4_reply(s)
        self.assertEqual(cd, ft.SOCKS4_GRANTED)
        self.assertEqual((pip, pport), peer.getsockname()[:2])
        self.assert_talks(s, peer)
        peer.shutdown(socket.SHUT_WR)
        self.assertEqual(ft.recv_until_eof(s), b"")
        s.close()
        line = self.ferry.wait_sessions(1, pred=lambda l: l.get("cmd") == "socks4-bind")[0]
        self.assertEqual(line["reply"], "succeeded")
        self.assertEqual(line["addr"], "127.0.0.1:%d" % pport)


@unittest.skipUnless(ft.ipv6_available(), "no IPv6 loopback")
class Socks4BindOverIPv6Test(unittest.TestCase):
    """A SOCKS4 reply holds an IPv4 address only: a client that reached ferryd over [::1] gets
    its BIND port on 127.0.0.1, named in the reply, not 0.0.0.0:0."""

    def test_socks4_bind_through_an_ipv6_listener_names_a_usable_port(self):
        ferry = ft.start_ferryd(self, listen=("[::1]:0",))
        s = ft.connect(*ferry.addr(), timeout=5)
        self.addCleanup(s.close)
        s.sendall(ft.socks4_request("0.0.0.0", 0, cmd=ft.CMD_BIND))
        cd, bport, bip = ft.read_socks4_reply(s)
        self.assertEqual(cd, ft.SOCKS4_GRANTED)
        self.assertEqual(bip, "127.0.0.1")
        self.assertNotEqual(bport, 0)
        peer = connect_from("127.0.0.1", (bip, bport))
        self.addCleanup(peer.close)
        cd, pport, pip = ft.read_socks4_reply(s)
        self.assertEqual((cd, pip, pport), (ft.SOCKS4_GRANTED,) + peer.getsockname()[:2])
        peer.sendall(b"from the peer")
        self.assertEqual(ft.recv_exact(s, 13), b"from the peer")


# --- active-mode FTP through socksify -------------------------------------------------------


def pyftpdlib_available():
    r = subprocess.run([sys.executable, "-c", "import pyftpdlib"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    return r.returncode == 0


FTP_MISSING = [what for what, ok in (
    ("dante-client (socksify)", shutil.which("socksify") is not None),
    ("an ftp client (ftp/tnftp)", shutil.which("ftp") is not None),
    ("python3-pyftpdlib", pyftpdlib_available()),
) if not ok]


@unittest.skipIf(FTP_MISSING, "not installed: %s" % ", ".join(FTP_MISSING))
class ActiveFTPTest(unittest.TestCase):
    """tnftp in active mode (-A: PORT, the server connects back) run under socksify: its
    control connection is a SOCKS CONNECT and its data socket's bind/listen/accept become a
    SOCKS BIND, so every download needs both replies from ferry."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="ferryftp-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.root = os.path.join(self.tmp, "root")
        os.mkdir(self.root)
        self.data = os.urandom(700000)
        with open(os.path.join(self.root, "data.bin"), "wb") as f:
            f.write(self.data)
        self.ferry = ft.start_ferryd(self)
        self.ftpd = subprocess.Popen([sys.executable, "-c", ft.FTP_SERVER, "127.0.0.1", self.root],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.addCleanup(self.stop_ftpd)
        line = self.ftpd.stdout.readline()
        if not line.strip():
            raise AssertionError("pyftpdlib did not start: %r" % self.ftpd.stderr.read())
        self.ftp_port = int(line)

    def stop_ftpd(self):
        self.ftpd.kill()
        self.ftpd.wait(5)
        log = self.ftpd.stderr.read().decode("utf-8", "replace")
        self.ftpd.stdout.close()
        self.ftpd.stderr.close()
        ft.log("pyftpdlib:\n" + log)

    def socks_conf(self, proxyprotocol):
        # Dante adds direct routes for the LAN unless SOCKS_AUTOADD_LANROUTES=no; 127.0.0.1
        # would then never be proxied. The route below covers everything else.
        path = os.path.join(self.tmp, "socks-%s.conf" % proxyprotocol)
        with open(path, "w") as f:
            f.write(textwrap.dedent("""\
                logoutput: stderr
                route {
                    from: 0.0.0.0/0 to: 0.0.0.0/0 via: %s port = %d
                    proxyprotocol: %s
                    method: none
                    command: connect bind bindreply
                }
                """ % (self.ferry.host, self.ferry.port, proxyprotocol)))
        return path

    def download(self, proxyprotocol, expected_cmd):
        out = os.path.join(self.tmp, "out-%s.bin" % proxyprotocol)
        env = dict(os.environ, SOCKS_CONF=self.socks_conf(proxyprotocol),
                   SOCKS_AUTOADD_LANROUTES="no")
        for k in ("SOCKS_SERVER", "SOCKS4_SERVER", "SOCKS5_SERVER", "HTTP_CONNECT_PROXY"):
            env.pop(k, None)
        script = "user anonymous ferry@\nbinary\nget data.bin %s\nquit\n" % out
        r = subprocess.run(["socksify", "ftp", "-A", "-n", "-v", "127.0.0.1",
                            str(self.ftp_port)],
                           input=script.encode(), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, env=env, timeout=60)
        text = (r.stdout + r.stderr).decode("utf-8", "replace")
        ft.log("socksify ftp (rc %d):\n%s" % (r.returncode, text))
        self.assertIn("226", text, "no completed transfer")
        with open(out, "rb") as f:
            self.assertEqual(f.read(), self.data)

        # Both connections went through ferry: the control one as CONNECT, the data one as
        # BIND whose peer is the FTP server.
        prefix = "socks4-" if proxyprotocol == "socks_v4" else ""
        lines = self.ferry.wait_sessions(2, timeout=10)
        cmds = sorted(l.get("cmd") for l in lines)
        self.assertEqual(cmds, sorted([prefix + "connect", expected_cmd]))
        for l in lines:
            self.assertEqual(l["reply"], "succeeded")
        bind = [l for l in lines if l.get("cmd") == expected_cmd][0]
        self.assertTrue(bind["addr"].startswith("127.0.0.1:"), bind)
        self.assertGreaterEqual(int(bind["down"]), len(self.data))

    def test_active_ftp_download_through_socks5_bind(self):
        self.download("socks_v5", "bind")

    def test_active_ftp_download_through_socks4_bind(self):
        self.download("socks_v4", "socks4-bind")


if __name__ == "__main__":
    ft.main()

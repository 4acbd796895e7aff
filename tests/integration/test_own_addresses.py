"""The host's own addresses are private destinations for untrusted clients: an address on one
of ferry's interfaces (a public-looking one included) is delivered over loopback, so a service
bound to 0.0.0.0 would be reachable through the proxy. ferryd reads the interface addresses at
start and on SIGHUP, and again whenever rtnetlink reports an address added or removed.

Runs in a network namespace of its own (this file again, under unshare -n) that has only the
addresses the test adds, so no probe leaves the machine: 192.0.2.7/32 on lo as "the host's
public address", 127.0.0.2 as a client the host does not trust (trusted-clients 127.0.0.1/32).
"""

import os
import subprocess
import sys
import time
import unittest

import ferrytest as ft

NETNS_CHILD = "FERRY_TEST_NETNS_CHILD"
OWN = "192.0.2.7"        # the host's "public" address, on lo from the start
LATER = "198.51.100.7"   # added while ferryd runs
ADVERTISED = "203.0.113.50"  # only in the configuration (listen ... advertise)
CLIENT2 = "127.0.0.2"    # untrusted client
PROBE_BUDGET = 1.0       # seconds in which a new address must be refused


def ip(*args):
    subprocess.run(["ip"] + list(args), check=True)


def rep_for(ferry, host, port, source):
    s, rep, _, _ = ft.socks5_open(ferry.addr(), host, port, source=source)
    s.close()
    return rep


class OwnAddressesTest(unittest.TestCase):
    def test_in_network_namespace(self):
        if subprocess.run(["unshare", "-n", "true"], stderr=subprocess.DEVNULL).returncode:
            self.skipTest("cannot make a network namespace here (unshare -n)")
        env = dict(os.environ, **{NETNS_CHILD: "1"})
        r = subprocess.run(["unshare", "-n", sys.executable, os.path.abspath(__file__),
                            "OwnAddressesChild"], env=env, capture_output=True, text=True,
                           timeout=120 * ft.SLOW)
        ft.log(r.stderr[-6000:])
        self.assertEqual(r.returncode, 0, r.stderr[-6000:])
        self.assertRegex(r.stderr, r"Ran \d+ tests? .*\n\nOK")


@unittest.skipUnless(os.environ.get(NETNS_CHILD), "runs inside OwnAddressesTest's namespace")
class OwnAddressesChild(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        ip("link", "set", "lo", "up")
        ip("addr", "add", OWN + "/32", "dev", "lo")

    def setUp(self):
        self.dns = ft.DNSServer(self)
        self.dns.add("me.test", a=[OWN])
        # A service on every address of the host, as one that trusts local traffic would be.
        self.echo = ft.EchoOrigin(self, "0.0.0.0")

    def start(self, *extra):
        return ft.start_ferryd(self, listen=("127.0.0.2:0",), dns=self.dns,
                               extra=["trusted-clients 127.0.0.1/32"] + list(extra))

    def test_own_address_refused_to_untrusted_client_by_address_and_by_name(self):
        ferry = self.start()
        for host in (OWN, "::ffff:" + OWN, "me.test"):
            self.assertEqual(rep_for(ferry, host, self.echo.port, CLIENT2), ft.REP_NOT_ALLOWED,
                             host)
        sess = ferry.wait_sessions(3)
        self.assertEqual([s.get("rule") for s in sess], ["private"] * 3, sess)
        self.assertEqual(self.echo.peers, [])

    def test_own_address_passes_for_a_trusted_client(self):
        ferry = self.start()
        for host in (OWN, "me.test"):
            s, rep, _, _ = ft.socks5_open(ferry.addr(), host, self.echo.port, source="127.0.0.1")
            with s:
                self.assertEqual(rep, ft.REP_SUCCEEDED, host)
                self.assertEqual(ft.echo_roundtrip(s, b"mine"), b"mine")

    def test_datagram_to_own_address_is_dropped_for_untrusted_client(self):
        echo = ft.UDPEcho(self, "0.0.0.0")
        ferry = self.start()
        assoc = ft.RawAssoc(self, ferry, bind_ip=CLIENT2, source=CLIENT2)
        self.assertEqual(assoc.rep, ft.REP_SUCCEEDED)
        assoc.send(OWN, echo.port, b"literal")
        assoc.send("me.test", echo.port, b"by name")
        self.assertTrue(ft.nothing_arrives(assoc.sock, 0.5))
        assoc.close()
        self.assertEqual(ft.drops(ferry.wait_sessions(1)[0])["blocked"], 2)
        self.assertEqual(echo.count, 0)

    def test_advertised_address_is_private(self):
        ferry = ft.start_ferryd(self, listen=("127.0.0.2:0 advertise %s" % ADVERTISED,),
                                dns=self.dns, extra=["trusted-clients 127.0.0.1/32"])
        self.assertEqual(rep_for(ferry, ADVERTISED, self.echo.port, CLIENT2),
                         ft.REP_NOT_ALLOWED)
        self.assertEqual(ferry.wait_sessions(1)[0].get("rule"), "private")

    def test_address_added_at_run_time_is_refused_within_a_second_without_reload(self):
        ferry = self.start()
        # Not yet the host's: no route to it in this namespace, so not a refusal by policy.
        self.assertNotEqual(rep_for(ferry, LATER, self.echo.port, CLIENT2), ft.REP_NOT_ALLOWED)
        lines = len(ferry.lines)
        ip("addr", "add", LATER + "/32", "dev", "lo")
        self.addCleanup(subprocess.run, ["ip", "addr", "del", LATER + "/32", "dev", "lo"])
        added = time.monotonic()
        rep = None
        while time.monotonic() - added < PROBE_BUDGET:
            rep = rep_for(ferry, LATER, self.echo.port, CLIENT2)
            if rep == ft.REP_NOT_ALLOWED:
                break
            time.sleep(0.02)
        took = time.monotonic() - added
        ft.log("new address refused %.3f s after ip addr add" % took)
        self.assertEqual(rep, ft.REP_NOT_ALLOWED)
        self.assertLess(took, PROBE_BUDGET)
        # The kernel delivers to the address the moment it is added; a probe that beat the
        # change notice may have got through. Once refused, nothing more does.
        reached = len(self.echo.peers)
        for _ in range(3):
            self.assertEqual(rep_for(ferry, LATER, self.echo.port, CLIENT2), ft.REP_NOT_ALLOWED)
        self.assertEqual(len(self.echo.peers), reached)
        ferry.wait_line(r"interface addresses changed: \d+ interface addresses", start=lines)
        self.assertFalse(any("reloaded" in l for l in ferry.lines[lines:]))
        # Removed again: no longer the host's, no longer refused by the policy.
        ip("addr", "del", LATER + "/32", "dev", "lo")
        deadline = time.monotonic() + PROBE_BUDGET
        while time.monotonic() < deadline:
            rep = rep_for(ferry, LATER, self.echo.port, CLIENT2)
            if rep != ft.REP_NOT_ALLOWED:
                break
            time.sleep(0.02)
        self.assertNotEqual(rep, ft.REP_NOT_ALLOWED)


if __name__ == "__main__":
    ft.main()

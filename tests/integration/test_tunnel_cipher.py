"""The tunnel's cipher choice (doc/tunnel-protocol.md 2.2): a ferry parent with `cipher
aes-256-gcm` (and `ferryd --tunnel ... --cipher aes-256-gcm`) carries curl and a bulk transfer
byte-exact both ways, and both ends log the cipher; a first message whose suite code was
flipped on the way (a downgrade) fails the handshake, and one with a code no version defines
gets nothing back, each closed at the negotiate timeout. Skipped without AES-NI, where ferryd
refuses AES-256-GCM. Loopback only.
"""

import hashlib
import os
import socket
import subprocess
import time
import unittest

import ferrytest as ft
from ferrytest import CURL_ENV

NEGOTIATE = 2.0


@unittest.skipUnless(ft.aes_ni(), "no AES-NI: ferryd refuses AES-256-GCM here")
class CipherTest(unittest.TestCase):
    def setUp(self):
        ft.tunnel_keys(self, "ferrycipher-")
        self.origin = ft.HTTPOrigin(self)

    def start_server(self):
        return ft.start_ferryd(self, extra=[
            "tunnel key %s" % self.skey,
            "tunnel authorized-keys %s" % self.authkeys,
            "timeout negotiate %gs" % NEGOTIATE,
            "request pass to 127.0.0.0/8 private",
        ], listen=("127.0.0.1:0 tunnel",))

    def start_client(self, port, cipher="aes-256-gcm"):
        return ft.start_ferryd(self, extra=[
            "parent home ferry 127.0.0.1:%d server-key %s key %s cipher %s timeout 3s"
            % (port, self.spub, self.akey, cipher),
            "route via home",
        ])

    def curl(self, proxy, url):
        return subprocess.run(["curl", "-sS", "--max-time", "%d" % (10 * ft.SLOW), "-x", proxy,
                               url],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=CURL_ENV,
                              timeout=30 * ft.SLOW)

    def socks5_connect(self, port, dport):
        s = ft.connect("127.0.0.1", port)
        s.sendall(ft.socks5_greeting())
        self.assertEqual(ft.read_method(s), ft.METHOD_NOAUTH)
        s.sendall(ft.socks5_request(ft.CMD_CONNECT, "127.0.0.1", dport))
        self.assertEqual(ft.read_socks5_reply(s)[0], ft.REP_SUCCEEDED)
        return s

    def test_aes_256_gcm_carries_curl_and_bulk_both_ways(self):
        server = self.start_server()
        client = self.start_client(server.port)
        r = self.curl("socks5h://127.0.0.1:%d" % client.port, self.origin.url("/gcm"))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, ft.HTTPOrigin.body("/gcm"))
        client.wait_line(r"tunnel to parent home: up, aes-256-gcm")
        server.wait_line(r"key BLAKE2b:\S+, aes-256-gcm, user alice: up")
        # 20 MB down, then 20 MB up with half-close (2 MB under valgrind).
        data = os.urandom((2 if ft.UNDER_VALGRIND else 20) * 1024 * 1024)
        bulk = ft.BulkOrigin(self, data)
        s = self.socks5_connect(client.port, bulk.port)
        s.sendall(b"GET %d\n" % len(data))
        got = ft.recv_until_eof(s)
        s.close()
        self.assertEqual(hashlib.sha256(got).hexdigest(), hashlib.sha256(data).hexdigest())
        s = self.socks5_connect(client.port, bulk.port)
        s.sendall(b"PUT\n")
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        answer = ft.recv_until_eof(s)
        s.close()
        self.assertEqual(answer, ("%s %d\n" % (hashlib.sha256(data).hexdigest(), len(data)))
                         .encode())
        lines = server.wait_sessions(3)
        self.assertTrue(all(l["user"] == "alice" for l in lines), lines)
        # One connection, one handshake, carried all three.
        self.assertEqual(sum("user alice: up" in l for l in server.lines), 1)

    def test_one_command_mode_takes_cipher(self):
        server = self.start_server()
        client = ft.Ferryd(self, None, listeners=1, args=(
            "--tunnel", "127.0.0.1:%d" % server.port, "--server-key", self.spub,
            "--key", self.akey, "--cipher", "aes-256-gcm", "--listen", "127.0.0.1:0"))
        r = self.curl("socks5h://127.0.0.1:%d" % client.port, self.origin.url("/one"))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, ft.HTTPOrigin.body("/one"))
        server.wait_line(r"key BLAKE2b:\S+, aes-256-gcm, user alice: up")
        r = subprocess.run(ft.ferryd_argv("--tunnel", "127.0.0.1:%d" % server.port,
                                          "--server-key", self.spub, "--key", self.akey,
                                          "--cipher", "aes-128-cbc", "-t"),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30 * ft.SLOW)
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"cipher 'aes-128-cbc' is not chacha20-poly1305 or aes-256-gcm", r.stderr)

    def downgraded(self, cipher, mask, reason):
        server = self.start_server()
        fwd = ft.Forwarder(self, server.port, mask)
        client = self.start_client(fwd.port, cipher)
        t0 = time.monotonic()
        r = self.curl("socks5h://127.0.0.1:%d" % client.port, self.origin.url())
        self.assertNotEqual(r.returncode, 0)
        self.assertGreater(time.monotonic() - t0, NEGOTIATE - 0.3)
        server.wait_line(r"refused, silently: " + reason)
        self.assertEqual(fwd.from_server, 0)
        self.assertEqual(server.sessions(), [])

    def test_a_first_message_downgraded_to_chacha_fails_the_handshake(self):
        self.downgraded("aes-256-gcm", 0x10, r"first message: authentication failed")

    def test_a_first_message_upgraded_to_aes_gcm_fails_the_handshake(self):
        self.downgraded("chacha20-poly1305", 0x10, r"first message: authentication failed")

    def test_an_undefined_suite_code_gets_nothing(self):
        self.downgraded("chacha20-poly1305", 0x70, r"first message: unknown cipher suite 7")


if __name__ == "__main__":
    ft.main()

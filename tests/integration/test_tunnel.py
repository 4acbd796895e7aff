"""The encrypted hop (issue 15, doc/tunnel-protocol.md): a client ferryd on loopback whose route
goes through a `ferry` parent, the server ferryd's `listen ... tunnel` listener, keys made by the
built ferry-keygen. Driven with curl (socks5h, socks5, socks4a) and raw SOCKS5 clients: the
server's access lines name the key's user and its request rules apply to it; bulk transfers
byte-exact both ways with half-close; many streams at once over one tunnel connection. The
server answers nothing to garbage, an unauthorized key, a wrong server key or a replayed first
message (captured by a forwarder between the two ferries), and closes only at its negotiate
timeout. The one-command mode (--tunnel, --server-key, known_hosts) and SIGHUP re-reading the
authorized-keys file. UDP ASSOCIATE through the hop (PySocks): datagrams byte-exact, counted
on both access lines; a DNS query; names resolved by the server only; its rules and its own
route through a SOCKS5 parent; the stream's end closing the server's socket; captured sealed
datagrams sent again (duplicated, reordered, stale, tampered) dropped and counted. Loopback
only; the replay test needs root (AF_PACKET capture, IP_HDRINCL injection). A cut tunnel, or a
stream reset, resets the SOCKS client's TCP connection; records out of a stream's turn, sent by
a minimal client written from the document (NoisePeer, python3-cryptography), end the
connection.
"""

import base64
import hashlib
import hmac
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import struct
import unittest

import ferrytest as ft
from ferrytest import CURL_ENV, KEYGEN

import socks  # python3-socks (PySocks): bootstrap's TEST_PACKAGES

NEGOTIATE = 2.0  # the server's timeout negotiate: when a refused peer is closed


def socks5_open(port, host, dport, atyp_name=False):
    """A raw SOCKS5 CONNECT through the client ferryd; returns (socket, REP)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=ft.IO_TIMEOUT)
    s.sendall(b"\x05\x01\x00")
    if s.recv(2) != b"\x05\x00":
        raise AssertionError("no method")
    if atyp_name:
        req = b"\x05\x01\x00\x03" + bytes([len(host)]) + host.encode()
    else:
        req = b"\x05\x01\x00\x01" + socket.inet_aton(host)
    s.sendall(req + dport.to_bytes(2, "big"))
    head = recv_exact(s, 4)
    if head[3] == 1:
        recv_exact(s, 6)
    elif head[3] == 4:
        recv_exact(s, 18)
    return s, head[1]


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        b = s.recv(n - len(buf))
        if not b:
            raise AssertionError("EOF after %d of %d bytes" % (len(buf), n))
        buf += b
    return buf


def recv_all(s):
    chunks = []
    while True:
        b = s.recv(1 << 20)
        if not b:
            return b"".join(chunks)
        chunks.append(b)


class NoisePeer:
    """A minimal tunnel client written from doc/tunnel-protocol.md alone (the IK handshake of
    section 2 as initiator, the records of section 3), to send what a ferryd never sends."""

    def __init__(self, testcase, port, key_file, server_pub):
        from cryptography.hazmat.primitives.asymmetric.x25519 import (X25519PrivateKey,
                                                                      X25519PublicKey)
        from cryptography.hazmat.primitives import serialization
        self.aead = __import__("cryptography.hazmat.primitives.ciphers.aead",
                               fromlist=["ChaCha20Poly1305"]).ChaCha20Poly1305
        raw = lambda k: k.public_bytes(serialization.Encoding.Raw,
                                       serialization.PublicFormat.Raw)
        with open(key_file) as f:
            line = [l for l in f.read().split("\n") if l.strip() and not l.startswith("#")][0]
        s = X25519PrivateKey.from_private_bytes(base64.b64decode(line.strip()))
        rs = base64.b64decode(server_pub)
        e = X25519PrivateKey.generate()
        self.h = b"Noise_IK_25519_ChaChaPoly_BLAKE2b".ljust(64, b"\0")
        self.ck, self.k, self.n = self.h, None, 0
        self.mix_hash(b"ferry-tunnel/1")
        self.mix_hash(rs)
        # -> e, es, s, ss with the hello: TAI64N of now, flags 0
        now = time.time()
        hello = ((1 << 62) + 10 + int(now)).to_bytes(8, "big") + \
            int((now % 1) * 1e9).to_bytes(4, "big") + b"\0\0"
        msg = raw(e.public_key())
        self.mix_hash(msg)
        self.mix_key(e.exchange(X25519PublicKey.from_public_bytes(rs)))
        msg += self.encrypt_and_hash(raw(s.public_key()))
        self.mix_key(s.exchange(X25519PublicKey.from_public_bytes(rs)))
        msg += self.encrypt_and_hash(hello)
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=ft.IO_TIMEOUT)
        testcase.addCleanup(self.sock.close)
        self.sock.sendall(len(msg).to_bytes(2, "big") + msg)
        # <- e, ee, se
        msg2 = recv_exact(self.sock, int.from_bytes(recv_exact(self.sock, 2), "big"))
        re = X25519PublicKey.from_public_bytes(msg2[:32])
        self.mix_hash(msg2[:32])
        self.mix_key(e.exchange(re))
        self.mix_key(s.exchange(re))
        self.aead(self.k).decrypt(self.nonce(self.n), msg2[32:], self.h)
        k1, k2 = self.hkdf(self.ck, b"")
        self.tx, self.rx = [self.aead(k1[:32]), 0], [self.aead(k2[:32]), 0]

    @staticmethod
    def hkdf(ck, ikm):
        mac = lambda k, d: hmac.new(k, d, hashlib.blake2b).digest()
        temp = mac(ck, ikm)
        o1 = mac(temp, b"\x01")
        return o1, mac(temp, o1 + b"\x02")

    @staticmethod
    def nonce(n):
        return b"\0" * 4 + n.to_bytes(8, "little")

    def mix_hash(self, data):
        self.h = hashlib.blake2b(self.h + data).digest()

    def mix_key(self, ikm):
        self.ck, temp = self.hkdf(self.ck, ikm)
        self.k, self.n = temp[:32], 0

    def encrypt_and_hash(self, pt):
        c = self.aead(self.k).encrypt(self.nonce(self.n), pt, self.h)
        self.n += 1
        self.mix_hash(c)
        return c

    def seal(self, rtype, stream, payload=b""):
        cs = self.tx
        head = bytes([rtype]) + stream.to_bytes(4, "big") + len(payload).to_bytes(2, "big")
        out = cs[0].encrypt(self.nonce(cs[1]), head, b"")
        if payload:
            out += cs[0].encrypt(self.nonce(cs[1] + 1), payload, b"")
        cs[1] += 2 if payload else 1
        return out

    def send(self, rtype, stream, payload=b""):
        self.sock.sendall(self.seal(rtype, stream, payload))

    def recv(self):
        """The next record as (type, stream, payload); None at the end of the connection."""
        cs = self.rx
        try:
            head = cs[0].decrypt(self.nonce(cs[1]), recv_exact(self.sock, 23), b"")
            length = int.from_bytes(head[5:7], "big")
            payload = b""
            if length:
                payload = cs[0].decrypt(self.nonce(cs[1] + 1),
                                        recv_exact(self.sock, length + 16), b"")
        except (AssertionError, ConnectionResetError):
            return None
        cs[1] += 2 if length else 1
        return head[0], int.from_bytes(head[1:5], "big"), payload

    def open_stream(self, stream, port):
        """OPEN a CONNECT to 127.0.0.1:port; the REPLY's REP."""
        self.send(0x02, stream, b"\x05\x01\x00\x01" + socket.inet_aton("127.0.0.1") +
                  port.to_bytes(2, "big"))
        while True:
            r = self.recv()
            if r is None or (r[0] == 0x03 and r[1] == stream):
                return None if r is None else r[2][1]


class TunnelTest(unittest.TestCase):
    def setUp(self):
        if not os.access(KEYGEN, os.X_OK):
            raise AssertionError("ferry-keygen not built: %s" % KEYGEN)
        ft.tunnel_keys(self, "ferrytunnel-", ("alice", "bob"), authorized=("alice",))
        self.origin = ft.HTTPOrigin(self)
        self.blocked = ft.HTTPOrigin(self)

    def write_authkeys(self, text):
        with open(self.authkeys, "w") as f:
            f.write(text)
        os.chmod(self.authkeys, 0o600)

    def start_server(self, extra=(), dns=None):
        return ft.start_ferryd(self, dns=dns, extra=[
            "tunnel key %s" % self.skey,
            "tunnel authorized-keys %s" % self.authkeys,
            "timeout negotiate %gs" % NEGOTIATE,
            "request block user alice port %d" % self.blocked.port,
            "request pass to 127.0.0.0/8 private",
        ] + list(extra), listen=("127.0.0.1:0 tunnel",))

    def start_client(self, port, key=None, server_key=None, extra=(), dns=None):
        return ft.start_ferryd(self, dns=dns, extra=[
            "parent home ferry 127.0.0.1:%d server-key %s key %s timeout 3s"
            % (port, server_key or self.spub, key or self.akey),
            "route via home",
        ] + list(extra))

    def start_ferry_then_socks5(self):
        """A client whose one route is the ferry parent home, then a plain SOCKS5 ferryd far
        behind it: (far, server, client)."""
        far = ft.start_ferryd(self)
        server = self.start_server()
        client = ft.start_ferryd(self, extra=[
            "parent home ferry 127.0.0.1:%d server-key %s key %s timeout 3s"
            % (server.port, self.spub, self.akey),
            "parent far socks5 127.0.0.1:%d" % far.port,
            "route via home>far",
        ])
        return far, server, client

    def curl(self, proxy, url):
        return subprocess.run(["curl", "-sS", "--max-time", "%d" % (10 * ft.SLOW), "-x", proxy,
                               url],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=CURL_ENV,
                              timeout=30 * ft.SLOW)

    def assert_silent_close(self, send, port):
        """Connect to the tunnel listener, send bytes: nothing comes back, and the server
        closes only once its negotiate timeout has passed."""
        s = socket.create_connection(("127.0.0.1", port), timeout=NEGOTIATE * 5 * ft.SLOW)
        t0 = time.monotonic()
        s.sendall(send)
        got = recv_all(s)
        took = time.monotonic() - t0
        s.close()
        self.assertEqual(got, b"")
        self.assertGreater(took, NEGOTIATE - 0.3)

    # --- through the tunnel ------------------------------------------------------------------

    def test_curl_socks5h_socks5_socks4a_reach_the_origin_as_the_keys_user(self):
        server = self.start_server()
        client = self.start_client(server.port)
        for scheme, host in (("socks5h", "localhost"), ("socks5", "127.0.0.1"),
                             ("socks4a", "localhost")):
            r = self.curl("%s://127.0.0.1:%d" % (scheme, client.port),
                          self.origin.url("/%s" % scheme, host=host))
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stdout, ft.HTTPOrigin.body("/%s" % scheme))
        lines = server.wait_sessions(3)
        self.assertTrue(all(l["user"] == "alice" and l["reply"] == "succeeded" for l in lines),
                        lines)
        client.wait_sessions(3, pred=lambda l: l.get("via") == "home")
        # One tunnel connection carried all three.
        self.assertEqual(sum("user alice: up" in l for l in server.lines), 1)

    def test_a_ferry_parent_by_name_is_looked_up_by_the_workers_resolver(self):
        """The tunnel's own connection to a parent named by a host name asks ferryd's DNS
        resolver (c-ares), not a blocking getaddrinfo: the name exists only in the test's DNS
        server."""
        server = self.start_server()
        dns = ft.DNSServer(self)
        dns.add("tunnel-server.test", a=["127.0.0.1"])
        client = ft.start_ferryd(self, dns=dns, extra=[
            "parent home ferry tunnel-server.test:%d server-key %s key %s timeout 3s"
            % (server.port, self.spub, self.akey), "route via home"])
        for path in ("/by-name", "/again"):
            r = self.curl("socks5h://127.0.0.1:%d" % client.port, self.origin.url(path))
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stdout, ft.HTTPOrigin.body(path))
        self.assertGreaterEqual(dns.count("tunnel-server.test"), 1)
        self.assertEqual(len(server.wait_sessions(2)), 2)

    def test_connect_through_a_ferry_parent_then_a_socks5_parent(self):
        """The ferry's REPLY reaches the chain by callback; the next parent's greeting, method
        and reply then go through the stream as data. Several requests at once, the first
        while the tunnel connection is still being made (its request goes through the
        socketpair), the rest on the connection once up."""
        far, server, client = self.start_ferry_then_socks5()
        procs = [subprocess.Popen(["curl", "-sS", "--max-time", "%d" % (10 * ft.SLOW), "-x",
                                   "socks5h://127.0.0.1:%d" % client.port,
                                   self.origin.url("/two-hops-%d" % i)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=CURL_ENV)
                 for i in range(6)]
        for i, p in enumerate(procs):
            out, err = p.communicate(timeout=30 * ft.SLOW)
            self.assertEqual(p.returncode, 0, err)
            self.assertEqual(out, ft.HTTPOrigin.body("/two-hops-%d" % i))
        lines = client.wait_sessions(6)
        self.assertTrue(all(l["via"] == "home>far" and l["reply"] == "succeeded"
                            for l in lines), lines)
        # The server was asked for the far parent; far for the origin, from the server.
        self.assertTrue(all(l["user"] == "alice" for l in server.wait_sessions(6)))
        self.assertEqual(len(far.wait_sessions(6)), 6)

    def test_a_request_rule_for_the_keys_user_refuses_with_rep_2(self):
        server = self.start_server()
        client = self.start_client(server.port)
        s, rep = socks5_open(client.port, "127.0.0.1", self.blocked.port)
        s.close()
        self.assertEqual(rep, ft.REP_NOT_ALLOWED)
        line = server.wait_sessions(1)[0]
        self.assertEqual(line["user"], "alice")
        self.assertEqual(line["rule"], "request:1")
        r = self.curl("socks5h://127.0.0.1:%d" % client.port, self.blocked.url())
        self.assertNotEqual(r.returncode, 0)

    def test_bulk_both_ways_byte_exact_and_half_close(self):
        # 20 MB; 2 MB under valgrind, where every byte costs fifty times as much.
        data = os.urandom((2 if ft.UNDER_VALGRIND else 20) * 1024 * 1024)
        bulk = ft.BulkOrigin(self, data)
        server = self.start_server()
        client = self.start_client(server.port)
        s, rep = socks5_open(client.port, "127.0.0.1", bulk.port)
        self.assertEqual(rep, 0)
        s.sendall(b"GET %d\n" % len(data))
        got = recv_all(s)
        s.close()
        self.assertEqual(hashlib.sha256(got).hexdigest(), hashlib.sha256(data).hexdigest())
        # Upload, then shut down our sending side: the origin's answer still comes back.
        s, rep = socks5_open(client.port, "127.0.0.1", bulk.port)
        self.assertEqual(rep, 0)
        s.sendall(b"PUT\n")
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        answer = recv_all(s)
        s.close()
        self.assertEqual(answer, ("%s %d\n" % (hashlib.sha256(data).hexdigest(), len(data)))
                         .encode())

    def test_bytes_sent_with_the_request_and_a_half_close_arrive_in_order(self):
        """A client that does not wait: greeting, request, payload and its half-close in one
        go. Both sessions read bytes with the request (and the server's stream may get DATA
        before its session replies); they go first when the stream takes over the relay."""
        echo = ft.EchoOrigin(self)
        server = self.start_server()
        client = self.start_client(server.port)
        for size in (1, 5000, 200000):
            payload = os.urandom(size)
            s = socket.create_connection(("127.0.0.1", client.port), timeout=ft.IO_TIMEOUT)
            s.sendall(b"\x05\x01\x00" + b"\x05\x01\x00\x01" + socket.inet_aton("127.0.0.1") +
                      echo.port.to_bytes(2, "big") + payload)
            s.shutdown(socket.SHUT_WR)
            self.assertEqual(recv_exact(s, 2), b"\x05\x00")
            self.assertEqual(recv_exact(s, 10)[:2], b"\x05\x00")
            self.assertEqual(recv_all(s), payload)
            s.close()
        for ferryd in (client, server):
            lines = ferryd.wait_sessions(3)
            self.assertEqual(sorted(int(l["up"]) for l in lines), [1, 5000, 200000])
            self.assertEqual(sorted(int(l["down"]) for l in lines), [1, 5000, 200000])

    def throttled_download(self, client, early):
        """600 KiB from a BulkOrigin through the client, at a 256 KiB/s limit somewhere on the
        way: the bytes whole, and well over a second (a second's burst allowed). early: the
        origin's GET line goes in the same write as the SOCKS5 request, before its reply."""
        data = os.urandom(600 * 1024)
        bulk = ft.BulkOrigin(self, data)
        get = b"GET %d\n" % len(data)
        t0 = time.monotonic()
        if early:
            s = socket.create_connection(("127.0.0.1", client.port), timeout=ft.IO_TIMEOUT)
            s.sendall(b"\x05\x01\x00")
            self.assertEqual(recv_exact(s, 2), b"\x05\x00")
            s.sendall(b"\x05\x01\x00\x01" + socket.inet_aton("127.0.0.1") +
                      bulk.port.to_bytes(2, "big") + get)
            self.assertEqual(recv_exact(s, 10)[:2], b"\x05\x00")
        else:
            s, rep = socks5_open(client.port, "127.0.0.1", bulk.port)
            self.assertEqual(rep, 0)
            s.sendall(get)
        got = recv_all(s)
        took = time.monotonic() - t0
        s.close()
        self.assertEqual(hashlib.sha256(got).digest(), hashlib.sha256(data).digest())
        self.assertGreater(took, 1.2)
        return len(data)

    def test_a_bandwidth_limit_for_the_keys_user_applies_through_the_tunnel(self):
        """A throttled session keeps relay.c (its socketpair): the limit holds, and the bytes
        are whole."""
        server = self.start_server(extra=["limit bandwidth-per-user 256K"])
        client = self.start_client(server.port)
        n = self.throttled_download(client, early=False)
        line = server.wait_sessions(1)[0]
        self.assertEqual((line["user"], int(line["down"])), ("alice", n))

    def test_a_bandwidth_limit_on_the_client_side_relays_through_a_late_socketpair(self):
        """The client's own limit: its session's stream has no socket until the relay, which
        relay.c does through a socketpair made then (tunnel_stream_pair); the bytes the client
        sent with its request go first."""
        server = self.start_server()
        client = self.start_client(server.port, extra=["limit bandwidth-per-client 256K"])
        n = self.throttled_download(client, early=True)
        line = client.wait_sessions(1)[0]
        self.assertEqual((line["via"], int(line["down"]), int(line["up"])),
                         ("home", n, len(b"GET %d\n" % n)))
        self.assertEqual(int(server.wait_sessions(1)[0]["down"]), n)

    def test_streams_held_open_while_more_open_then_all_answer(self):
        """One client worker: 100 streams opened one after another and held, each answering
        before the next opens (the streams' tables grow on both sides meanwhile), then every
        one of them answers again, and they all close cleanly. A held stream costs one
        descriptor on each side (the SOCKS client's socket, the target's): no socketpair."""
        echo = ft.EchoOrigin(self)
        server = self.start_server()
        client = self.start_client(server.port)
        n = 20 if ft.UNDER_VALGRIND else 100
        socks = []
        base = (ft.open_fds(server.proc.pid), ft.open_fds(client.proc.pid))
        for i in range(n):
            s, rep = socks5_open(client.port, "127.0.0.1", echo.port)
            self.assertEqual(rep, 0)
            socks.append(s)
            s.sendall(b"%d" % i)
            self.assertEqual(recv_exact(s, len(b"%d" % i)), b"%d" % i)
        held = (ft.open_fds(server.proc.pid), ft.open_fds(client.proc.pid))
        # n, and the tunnel connection's socket (and a spare or two).
        self.assertLessEqual(held[0] - base[0], n + 3, (base, held))
        self.assertLessEqual(held[1] - base[1], n + 3, (base, held))
        self.assertGreaterEqual(held[0] - base[0], n, (base, held))
        for i, s in enumerate(socks):
            s.sendall(b"again %d" % i)
        for i, s in enumerate(socks):
            self.assertEqual(recv_exact(s, len(b"again %d" % i)), b"again %d" % i)
            s.shutdown(socket.SHUT_WR)
            self.assertEqual(recv_all(s), b"")
            s.close()
        lines = server.wait_sessions(n)
        self.assertEqual([l["end"] for l in lines], ["eof"] * n)

    def test_a_stream_nobody_reads_does_not_stall_the_others(self):
        """Per-stream windows (doc 4.2): a download whose SOCKS client never reads fills its
        window and stops; another stream on the same tunnel connection still echoes."""
        data = os.urandom(8 * 1024 * 1024)
        bulk = ft.BulkOrigin(self, data)
        echo = ft.EchoOrigin(self)
        server = self.start_server(extra=["workers 1"])
        client = self.start_client(server.port, extra=["workers 1"])
        stuck, rep = socks5_open(client.port, "127.0.0.1", bulk.port)
        self.assertEqual(rep, 0)
        self.addCleanup(stuck.close)
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stuck.sendall(b"GET %d\n" % len(data))
        time.sleep(1)  # the window and every buffer on the way fill up
        for i in range(5):
            s, rep = socks5_open(client.port, "127.0.0.1", echo.port)
            self.assertEqual(rep, 0)
            payload = b"beside a stuck stream %d\n" % i
            self.assertEqual(ft.echo_roundtrip(s, payload), payload)
            s.close()
        # Exactly one tunnel connection carried them all.
        self.assertEqual(sum("user alice: up" in l for l in server.lines), 1)

    def test_many_streams_at_once_over_one_connection_per_worker(self):
        """Streams are authenticated sessions: the per-IP caps before authentication do not
        count them (all of them come from the tunnel's one peer). Two client workers make their
        connections at once, and the server's replay check accepts both."""
        echo = ft.EchoOrigin(self)
        server = self.start_server(extra=["limit negotiating-per-client 2",
                                          "limit sessions-per-client 2"])
        client = self.start_client(server.port, extra=["workers 2"])
        n = 12 if ft.UNDER_VALGRIND else 60
        results = [None] * n

        def one(i):
            try:
                s, rep = socks5_open(client.port, "127.0.0.1", echo.port)
                payload = os.urandom(1000 + i * 997)
                s.sendall(payload)
                s.shutdown(socket.SHUT_WR)
                results[i] = recv_all(s) == payload and rep == 0
                s.close()
            except (OSError, AssertionError) as e:
                results[i] = repr(e)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60 * ft.SLOW)
        self.assertEqual(results, [True] * n)
        server.wait_sessions(n)
        self.assertIn(sum("user alice: up" in l for l in server.lines), (1, 2))
        self.assertFalse(any("refused" in l for l in server.lines), server.lines)

    @unittest.skipIf(ft.UNDER_VALGRIND, "3,850 streams")
    def test_a_client_opens_another_connection_before_the_servers_stream_limit(self):
        """4096 streams at most on one connection at the server; the client moves to a second
        connection at 3840, so the two counts (the server's may lag: streams the client has
        let go) never meet. 3,850 streams held at once through one client worker: all
        succeed, over two tunnel connections."""
        n = 3850
        try:
            import resource
            if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < n + 500:
                ft.set_nofile(0, n + 500)
        except (ValueError, OSError) as e:
            self.skipTest("cannot hold %d sockets here: %s" % (n, e))
        # Nobody accepts: the origin's connections wait in its backlog, no descriptor here.
        origin = socket.socket()
        origin.bind(("127.0.0.1", 0))
        origin.listen(4096)
        self.addCleanup(origin.close)
        server = self.start_server(extra=["max-sessions 10000"])
        client = self.start_client(server.port, extra=[
            "max-sessions 10000", "limit sessions-per-client off"])
        socks = []
        self.addCleanup(lambda: [s.close() for s in socks])
        for _ in range(n):
            s, rep = socks5_open(client.port, "127.0.0.1", origin.getsockname()[1])
            socks.append(s)
            self.assertEqual(rep, 0, len(socks))
        deadline = time.monotonic() + 5 * ft.SLOW
        while sum("user alice: up" in l for l in server.lines) < 2 and \
                time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(sum("user alice: up" in l for l in server.lines), 2)
        self.assertFalse(any("streams open" in l for l in server.lines))
        # The origin's backlog resets every target, then every stream ends: a quick stop.
        origin.close()
        for s in socks:
            s.close()
        client.wait_sessions(n, timeout=30)

    def open_held_stream(self, client):
        """A CONNECT through the tunnel to a listener of ours, bytes moved both ways (so both
        sessions relay); returns (the SOCKS client's socket, the origin's)."""
        hold = socket.socket()
        hold.bind(("127.0.0.1", 0))
        hold.listen(4)
        self.addCleanup(hold.close)
        s, rep = socks5_open(client.port, "127.0.0.1", hold.getsockname()[1])
        self.addCleanup(s.close)
        self.assertEqual(rep, 0)
        hold.settimeout(ft.IO_TIMEOUT)
        conn, _ = hold.accept()
        conn.settimeout(ft.IO_TIMEOUT)
        self.addCleanup(conn.close)
        s.sendall(b"ping")
        self.assertEqual(recv_exact(conn, 4), b"ping")
        conn.sendall(b"pong")
        self.assertEqual(recv_exact(s, 4), b"pong")
        return s, conn

    def assert_reset(self, s):
        with self.assertRaises(ConnectionResetError):
            while s.recv(4096):
                pass

    def test_a_cut_tunnel_resets_the_local_client_and_the_target(self):
        """doc 8: a connection cut (no CLOSE) aborts its streams; the SOCKS client on the
        client side and the target on the server side see a TCP reset, not an end of file."""
        server = self.start_server()
        fwd = ft.Forwarder(self, server.port)
        client = self.start_client(fwd.port)
        s, conn = self.open_held_stream(client)
        fwd.cut()
        self.assert_reset(s)
        self.assert_reset(conn)
        for ferryd in (client, server):
            ferryd.wait_line(r"cut: end of file without CLOSE; 1 stream aborted")
            self.assertEqual(ferryd.wait_sessions(1)[0]["end"], "relay-error")

    def test_a_server_session_timing_out_resets_the_socks_client_through_the_stream(self):
        """The server's session ends first (timeout idle): its target is closed as by any
        session, the stream is RESET, and the SOCKS client at the other end sees a TCP reset
        (an abort, not an end); the tunnel connection stays up."""
        server = self.start_server(extra=["timeout idle 1s"])
        client = self.start_client(server.port)
        s, conn = self.open_held_stream(client)
        self.assert_reset(s)
        self.assertEqual(recv_all(conn), b"")
        self.assertEqual(server.wait_sessions(1)[0]["end"], "idle-timeout")
        self.assertEqual(client.wait_sessions(1)[0]["end"], "relay-error")
        # The connection carries the next stream.
        s, conn = self.open_held_stream(client)
        self.assertEqual(sum("user alice: up" in l for l in server.lines), 1)

    def test_records_out_of_a_streams_turn_end_the_connection(self):
        """doc 3/4, from a client written from the document: DATA after the stream's EOF, DATA
        for a stream never opened, CLOSE with a stream open. The first two are protocol errors
        that end the connection at once; the last is a clean CLOSE logged as not clean. A
        well-behaved stream first, so the peer itself is checked."""
        echo = ft.EchoOrigin(self)
        server = self.start_server()
        peer = NoisePeer(self, server.port, self.akey, self.spub)
        self.assertEqual(peer.open_stream(1, echo.port), 0)
        peer.send(0x01, 1, b"hello")
        r = peer.recv()
        self.assertEqual(r, (0x01, 1, b"hello"))
        # In one write, so that the stream is still there when DATA comes.
        peer.sock.sendall(peer.seal(0x04, 1) + peer.seal(0x01, 1, b"late"))
        while peer.recv() is not None:
            pass
        server.wait_line(r"stream 1: DATA after EOF; 1 stream aborted")

        peer = NoisePeer(self, server.port, self.akey, self.spub)
        peer.send(0x01, 5, b"x")
        self.assertIsNone(peer.recv())
        server.wait_line(r"stream 5: a stream never opened")

        peer = NoisePeer(self, server.port, self.akey, self.spub)
        self.assertEqual(peer.open_stream(1, echo.port), 0)
        peer.send(0x0a, 0)
        server.wait_line(r"closed by the peer with 1 stream open \(not a clean end")

    def test_resolve_and_bind_through_the_tunnel(self):
        dns = ft.DNSServer(self)
        dns.add("far.tunnel.test", a=["192.0.2.33"])
        server = ft.start_ferryd(self, dns=dns, listen=("127.0.0.1:0 tunnel",), extra=[
            "tunnel key %s" % self.skey, "tunnel authorized-keys %s" % self.authkeys,
            "request pass to 127.0.0.0/8 private", "request pass to 192.0.2.0/24"])
        client = self.start_client(server.port)
        # RESOLVE (Tor's 0xF0): answered by the server's resolver.
        s = socket.create_connection(("127.0.0.1", client.port), timeout=ft.IO_TIMEOUT)
        s.sendall(b"\x05\x01\x00")
        self.assertEqual(s.recv(2), b"\x05\x00")
        name = b"far.tunnel.test"
        s.sendall(b"\x05\xf0\x00\x03" + bytes([len(name)]) + name + b"\x00\x00")
        self.assertEqual(recv_exact(s, 10), b"\x05\x00\x00\x01" + socket.inet_aton("192.0.2.33")
                         + b"\x00\x00")
        s.close()
        self.assertGreaterEqual(dns.count("far.tunnel.test"), 1)  # the server asked (A, AAAA)
        # BIND: the server listens on the tunnel listener's address; both replies and the
        # bytes after them come through.
        s = socket.create_connection(("127.0.0.1", client.port), timeout=ft.IO_TIMEOUT)
        s.sendall(b"\x05\x01\x00")
        self.assertEqual(s.recv(2), b"\x05\x00")
        s.sendall(b"\x05\x02\x00\x01" + socket.inet_aton("127.0.0.1") + b"\x00\x00")
        first = recv_exact(s, 10)
        self.assertEqual(first[:4], b"\x05\x00\x00\x01")
        self.assertEqual(socket.inet_ntoa(first[4:8]), "127.0.0.1")
        peer = socket.create_connection(("127.0.0.1", int.from_bytes(first[8:10], "big")),
                                        timeout=ft.IO_TIMEOUT)
        second = recv_exact(s, 10)
        self.assertEqual(second[:2], b"\x05\x00")
        self.assertEqual(second[8:10], peer.getsockname()[1].to_bytes(2, "big"))
        peer.sendall(b"from the peer")
        self.assertEqual(recv_exact(s, 13), b"from the peer")
        s.sendall(b"to the peer")
        self.assertEqual(recv_exact(peer, 11), b"to the peer")
        s.close()
        peer.close()
        lines = server.wait_sessions(2)
        self.assertEqual(sorted(l["cmd"] for l in lines), ["bind", "resolve"])
        self.assertTrue(all(l["user"] == "alice" for l in lines))

    # --- UDP through the tunnel (doc 4.3) ---------------------------------------------------

    def udp_assoc(self, client):
        """A PySocks UDP socket associated through the client ferryd (names resolved far)."""
        u = socks.socksocket(socket.AF_INET, socket.SOCK_DGRAM)
        u.set_proxy(socks.SOCKS5, "127.0.0.1", client.port, rdns=True)
        u.settimeout(ft.IO_TIMEOUT)
        u.bind(("127.0.0.1", 0))
        self.addCleanup(u.close)
        return u

    def udp_lines(self, server, client):
        """The association's access line on both sides, once it ended."""
        sl = server.wait_sessions(1, timeout=10 * ft.SLOW, pred=ft.is_udp)[0]
        cl = client.wait_sessions(1, timeout=10 * ft.SLOW, pred=ft.is_udp)[0]
        return sl, cl

    def test_udp_echo_through_the_tunnel_byte_exact_and_counted_on_both_sides(self):
        echo = ft.UDPEcho(self)
        server = self.start_server()
        client = self.start_client(server.port)
        u = self.udp_assoc(client)
        for size in (1, 1400, 3000):
            data = os.urandom(size)
            u.sendto(data, ("127.0.0.1", echo.port))
            got, frm = u.recvfrom(65535)
            self.assertEqual(got, data)
            self.assertEqual(frm, ("127.0.0.1", echo.port))
        u.close()
        sl, cl = self.udp_lines(server, client)
        self.assertEqual(ft.udp_packets(sl), (3, 3), sl)
        self.assertEqual(ft.udp_packets(cl), (3, 3), cl)
        self.assertEqual(sl["user"], "alice")
        self.assertEqual(cl["via"], "home")
        for line in (sl, cl):
            d = ft.drops(line)
            self.assertEqual(sum(d.values()), 0, line)
            # Both are sealed associations: their lines count the sealed drops too.
            self.assertEqual((d["auth"], d["replay"], d["old"]), (0, 0, 0), line)
        # The bytes counted are the payloads, the same on both sides.
        self.assertEqual(sl["up"], str(1 + 1400 + 3000))
        self.assertEqual(cl["down"], str(1 + 1400 + 3000))

    def test_udp_echo_over_an_ipv6_tunnel(self):
        if not ft.ipv6_available():
            self.skipTest("no IPv6 loopback")
        echo = ft.UDPEcho(self)
        server = ft.start_ferryd(self, listen=("[::1]:0 tunnel",), extra=[
            "tunnel key %s" % self.skey, "tunnel authorized-keys %s" % self.authkeys,
            "request pass to 127.0.0.0/8 private"])
        client = ft.start_ferryd(self, extra=[
            "parent home ferry [::1]:%d server-key %s key %s timeout 3s"
            % (server.port, self.spub, self.akey), "route via home"])
        u = self.udp_assoc(client)
        data = os.urandom(1400)
        u.sendto(data, ("127.0.0.1", echo.port))
        self.assertEqual(u.recvfrom(4096), (data, ("127.0.0.1", echo.port)))
        u.close()
        sl, cl = self.udp_lines(server, client)
        self.assertTrue(sl["addr"].startswith("[::1]:"), sl)  # the tunnel's address
        self.assertEqual(ft.udp_packets(sl), (1, 1), sl)
        self.assertEqual(ft.udp_packets(cl), (1, 1), cl)

    def test_udp_dns_query_and_a_name_resolved_by_the_server_only(self):
        far_dns = ft.DNSServer(self)
        far_dns.add("echo.tunnel.test", a=["127.0.0.1"])
        far_dns.add("dns.tunnel.test", a=["192.0.2.53"])
        near_dns = ft.DNSServer(self)  # the client's resolver: must never be asked
        near_dns.add("echo.tunnel.test", a=["192.0.2.99"])
        echo = ft.UDPEcho(self)
        server = self.start_server(dns=far_dns)
        client = self.start_client(server.port, dns=near_dns)
        u = self.udp_assoc(client)
        # A DNS query to a DNS server (our test one, on loopback) answered through the hop.
        qname = b"".join(bytes([len(l)]) + l.encode() for l in "dns.tunnel.test".split("."))
        query = (struct.pack("!HHHHHH", 0x5151, 0x0100, 1, 0, 0, 0) + qname + b"\0"
                 + struct.pack("!HH", ft.QTYPE_A, 1))
        u.sendto(query, (far_dns.host, far_dns.port))
        answer, frm = u.recvfrom(4096)
        self.assertEqual(frm, (far_dns.host, far_dns.port))
        qid, flags, _, ancount = struct.unpack("!HHHH", answer[:8])
        self.assertEqual((qid, flags & 0xF, ancount), (0x5151, ft.RCODE_NOERROR, 1))
        self.assertEqual(answer[-4:], socket.inet_aton("192.0.2.53"))
        # A datagram to a name: the server resolves it (its resolver says 127.0.0.1, the
        # client's would have said 192.0.2.99), the echo answers.
        u.sendto(b"by name", ("echo.tunnel.test", echo.port))
        got, frm = u.recvfrom(4096)
        self.assertEqual((got, frm), (b"by name", ("127.0.0.1", echo.port)))
        self.assertGreaterEqual(far_dns.count("echo.tunnel.test"), 1)
        self.assertEqual(near_dns.count(), 0)
        u.close()
        sl, cl = self.udp_lines(server, client)
        self.assertEqual(ft.udp_packets(sl), (2, 2), sl)
        self.assertEqual(ft.udp_packets(cl), (2, 2), cl)

    def test_udp_the_servers_rules_refuse_a_datagram(self):
        echo = ft.UDPEcho(self)
        server = self.start_server()
        client = self.start_client(server.port)
        u = self.udp_assoc(client)
        # alice may not reach the blocked port: the server drops the datagram and counts it.
        u.sendto(b"refused", ("127.0.0.1", self.blocked.port))
        u.sendto(b"allowed", ("127.0.0.1", echo.port))
        got, _ = u.recvfrom(4096)
        self.assertEqual(got, b"allowed")
        u.close()
        sl, cl = self.udp_lines(server, client)
        self.assertEqual(ft.drops(sl)["blocked"], 1, sl)
        self.assertEqual(ft.udp_packets(sl), (1, 1), sl)
        self.assertEqual(ft.drops(cl)["blocked"], 0, cl)
        self.assertEqual(ft.udp_packets(cl), (2, 1), cl)

    def test_udp_the_servers_own_route_through_a_socks5_parent(self):
        """The server's association goes on, in the clear, to its own SOCKS5 parent's relay;
        between the two ferries it stays sealed both ways."""
        echo = ft.UDPEcho(self)
        far = ft.start_ferryd(self)
        server = self.start_server(extra=["parent far socks5 127.0.0.1:%d" % far.port,
                                          "route via far"])
        client = self.start_client(server.port)
        u = self.udp_assoc(client)
        for data in (b"one", os.urandom(1400)):
            u.sendto(data, ("127.0.0.1", echo.port))
            self.assertEqual(u.recvfrom(4096), (data, ("127.0.0.1", echo.port)))
        u.close()
        sl, cl = self.udp_lines(server, client)
        fl = far.wait_sessions(1, timeout=10 * ft.SLOW, pred=ft.is_udp)[0]
        self.assertEqual(sl["via"], "far", sl)
        for line in (sl, cl, fl):
            self.assertEqual(ft.udp_packets(line), (2, 2), line)
            self.assertEqual(sum(ft.drops(line).values()), 0, line)
        self.assertIn("auth", ft.drops(sl))
        self.assertNotIn("auth", ft.drops(fl))  # plain SOCKS5 there

    def test_udp_through_a_ferry_parent_with_parents_after_it_is_refused(self):
        """The datagrams would go to the last parent's relay straight, past the tunnel."""
        far, server, client = self.start_ferry_then_socks5()
        s = socket.create_connection(("127.0.0.1", client.port), timeout=ft.IO_TIMEOUT)
        s.sendall(b"\x05\x01\x00")
        self.assertEqual(s.recv(2), b"\x05\x00")
        s.sendall(b"\x05\x03\x00\x01\x00\x00\x00\x00\x00\x00")
        self.assertEqual(recv_exact(s, 2), b"\x05" + bytes([ft.REP_COMMAND_NOT_SUPPORTED]))
        s.close()
        client.wait_line(r"UDP ASSOCIATE only with it as the last hop")

    def test_udp_the_streams_end_ends_the_association_on_the_server(self):
        echo = ft.UDPEcho(self)
        server = self.start_server()
        client = self.start_client(server.port)
        u = self.udp_assoc(client)
        u.sendto(b"ping", ("127.0.0.1", echo.port))
        self.assertEqual(u.recvfrom(4096)[0], b"ping")
        t0 = time.monotonic()
        u.close()  # the local control connection ends: the stream ends, the server's side too
        sl, cl = self.udp_lines(server, client)
        self.assertLess(time.monotonic() - t0, 5 * ft.SLOW)
        self.assertEqual(sl["end"], "client-closed", sl)  # its socketpair: the stream's EOF
        # The server's UDP socket is closed: a datagram to it is refused by the kernel.
        host, _, port = sl["addr"].rpartition(":")
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(probe.close)
        probe.settimeout(2)
        probe.connect((host, int(port)))
        probe.send(b"anyone?")
        with self.assertRaises(ConnectionRefusedError):
            probe.recv(100)

    def test_udp_replayed_reordered_stale_and_tampered_datagrams_are_dropped_and_counted(self):
        """Sealed datagrams captured on lo (AF_PACKET) and sent again, unchanged, from the
        client ferry's own address and port: duplicates, out of order, and one behind the
        window of 2048, are dropped and counted by reason; one with a flipped bit fails
        authentication. None of them reaches the target."""
        if os.geteuid() != 0:
            self.skipTest("needs root for AF_PACKET on lo")
        echo = ft.UDPEcho(self)
        server = self.start_server()
        client = self.start_client(server.port)
        u = self.udp_assoc(client)
        cap = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))  # ETH_P_ALL
        self.addCleanup(cap.close)
        cap.bind(("lo", 0))
        cap.setblocking(False)
        frames = []  # the sealed client -> server frames of the three datagrams
        flow = None
        for i in range(3):
            data = b"sealed-%d-" % i + os.urandom(40)
            u.sendto(data, ("127.0.0.1", echo.port))
            self.assertEqual(u.recvfrom(4096)[0], data)
            sealed_len = 10 + len(data) + 28  # the SOCKS5 header (IPv4) + data, sealed
            while True:
                try:
                    frame, meta = cap.recvfrom(65535)
                except BlockingIOError:
                    break
                if meta[2] != socket.PACKET_HOST or frame[12:14] != b"\x08\x00":
                    continue
                ihl = (frame[14] & 0xF) * 4
                if frame[23] != 17:
                    continue
                udp = frame[14 + ihl:]
                sport, dport, ulen = struct.unpack("!HHH", udp[:6])
                if ulen - 8 != sealed_len:
                    continue
                if flow is None:
                    flow = (sport, dport)  # the first sealed one goes up
                if (sport, dport) == flow:
                    frames.append(frame)
                    break
        self.assertEqual(len(frames), 3)
        self.assertNotIn(echo.port, flow)
        # Sent again as they were, IP header and all (IP_HDRINCL): the client's own source
        # address and port.
        inject = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        self.addCleanup(inject.close)

        def send(frame, flip=None):
            packet = bytearray(frame[14:])
            ihl = (packet[0] & 0xF) * 4
            packet[ihl + 6:ihl + 8] = b"\0\0"  # no UDP checksum (lo's may be partial)
            if flip is not None:
                packet[ihl + 8 + flip] ^= 0x04
            inject.sendto(bytes(packet), (socket.inet_ntoa(packet[16:20]), 0))

        before = echo.count
        # Duplicates, and reordered: 2, 0, 1, 2.
        for k in (2, 0, 1, 2):
            send(frames[k])
        # A flipped bit in the ciphertext.
        send(frames[1], flip=20)
        # The association still works, and nothing injected reached the echo.
        u.sendto(b"after", ("127.0.0.1", echo.port))
        self.assertEqual(u.recvfrom(4096)[0], b"after")
        self.assertEqual(echo.count, before + 1)
        # Move the window past 2048 counters, then the first datagram again: stale.
        n = 2100
        for i in range(n):
            u.sendto(b"w", ("127.0.0.1", echo.port))
            if i % 50 == 49:
                time.sleep(0.005 * ft.SLOW)
        self.assertTrue(ft.wait_until(lambda: echo.count >= before + 1 + 2050,
                                      timeout=20 * ft.SLOW), echo.count)
        u.settimeout(0.5 * ft.SLOW)  # the echoes of the flood (some lost on loopback)
        try:
            while True:
                u.recvfrom(4096)
        except socket.timeout:
            pass
        u.settimeout(ft.IO_TIMEOUT)
        send(frames[0])
        u.sendto(b"last", ("127.0.0.1", echo.port))
        self.assertEqual(u.recvfrom(4096)[0], b"last")
        u.close()
        sl, cl = self.udp_lines(server, client)
        d = ft.drops(sl)
        self.assertEqual((d["replay"], d["auth"], d["old"]), (4, 1, 1), sl)
        self.assertEqual(sum(ft.drops(cl).values()), 0, cl)

    # --- what the server does not answer -----------------------------------------------------

    def test_garbage_gets_nothing_and_is_closed_at_the_negotiate_timeout(self):
        server = self.start_server()
        self.assert_silent_close(b"\x05\x01\x00" + os.urandom(300), server.port)
        self.assert_silent_close(b"\x00\x6e" + os.urandom(110), server.port)
        server.wait_line(r"refused, silently: first message: ")

    def test_connections_that_prove_no_key_count_as_negotiating(self):
        """Until it proves a key a tunnel connection is a client negotiating: past
        negotiating-per-client the next one from the IP is closed at once; the streams of a
        working tunnel are not counted there."""
        server = self.start_server(extra=["limit negotiating-per-client 2"])
        client = self.start_client(server.port)
        # A working tunnel first, with a stream held open.
        s, rep = socks5_open(client.port, "127.0.0.1", self.origin.port)
        self.assertEqual(rep, 0)
        self.addCleanup(s.close)
        silent = []
        for _ in range(2):
            t = socket.create_connection(("127.0.0.1", server.port), timeout=NEGOTIATE * 5)
            t.sendall(b"\x00")  # one byte of a length: never a whole first message
            silent.append(t)
            self.addCleanup(t.close)
        time.sleep(0.2)
        third = socket.create_connection(("127.0.0.1", server.port), timeout=NEGOTIATE * 5)
        t0 = time.monotonic()
        got = recv_all(third)
        third.close()
        self.assertEqual(got, b"")
        self.assertLess(time.monotonic() - t0, NEGOTIATE - 0.5)  # at once, not at the timeout
        server.wait_line(r"closed 1 new connection at accept .*limit negotiating-per-client")
        # The two silent ones end at the negotiate timeout, as their own refusal.
        for t in silent:
            self.assertEqual(recv_all(t), b"")
        server.wait_line(r"refused, silently: first message: not whole \(1 bytes\)")
        # The working tunnel was never in the way, and a new stream still goes through.
        r = self.curl("socks5h://127.0.0.1:%d" % client.port, self.origin.url("/after"))
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_an_unauthorized_key_gets_nothing(self):
        server = self.start_server()
        fwd = ft.Forwarder(self, server.port)
        client = self.start_client(fwd.port, key=self.bkey)
        r = self.curl("socks5h://127.0.0.1:%d" % client.port, self.origin.url())
        self.assertNotEqual(r.returncode, 0)
        server.wait_line(r"refused, silently: key BLAKE2b:\S+ is not authorized")
        self.assertEqual(fwd.from_server, 0)
        self.assertEqual(len(fwd.first), 112)
        # And from a raw peer: its msg1 again, nothing back until the timeout.
        self.assert_silent_close(fwd.first, server.port)
        self.assertFalse(any("user=" in l for l in server.lines))

    def test_a_wrong_server_key_gets_nothing_and_the_client_says_so(self):
        server = self.start_server()
        fwd = ft.Forwarder(self, server.port)
        client = self.start_client(fwd.port, server_key=self.bpub)
        r = self.curl("socks5h://127.0.0.1:%d" % client.port, self.origin.url())
        self.assertNotEqual(r.returncode, 0)
        server.wait_line(r"refused, silently: first message: authentication failed")
        client.wait_line(r"tunnel to parent home: .*\(a wrong server-key, or our key is not "
                         r"authorized there")
        self.assertEqual(fwd.from_server, 0)

    def test_a_replayed_first_message_gets_nothing(self):
        server = self.start_server()
        fwd = ft.Forwarder(self, server.port)
        client = self.start_client(fwd.port)
        r = self.curl("socks5h://127.0.0.1:%d" % client.port, self.origin.url())
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len(fwd.first), 112)
        start = len(server.lines)
        self.assert_silent_close(fwd.first, server.port)
        server.wait_line(r"user alice\): hello timestamp not newer", start=start)

    def test_a_private_key_others_may_read_is_refused(self):
        os.chmod(self.skey, 0o644)
        config = ft.make_config(listen=("127.0.0.1:0 tunnel",), extra=[
            "tunnel key %s" % self.skey, "tunnel authorized-keys %s" % self.authkeys])
        f = ft.Ferryd(self, config, wait=False)
        f.expected_rc = 1
        f.proc.wait(30)
        f.reader.join(5)
        self.assertEqual(f.proc.returncode, 1)
        self.assertTrue(any(self.skey in l and "UNPROTECTED PRIVATE KEY FILE" in l
                            for l in f.lines), f.lines)

    # --- reload, one command -----------------------------------------------------------------

    def test_sighup_rereads_authorized_keys(self):
        server = self.start_server()
        self.write_authkeys("%s bob\n" % self.bpub)
        start = len(server.lines)
        server.proc.send_signal(signal.SIGHUP)
        server.wait_line(r"reloaded", start=start)
        client = self.start_client(server.port)
        r = self.curl("socks5h://127.0.0.1:%d" % client.port, self.origin.url())
        self.assertNotEqual(r.returncode, 0)
        server.wait_line(r"is not authorized", start=start)
        bob = self.start_client(server.port, key=self.bkey)
        r = self.curl("socks5h://127.0.0.1:%d" % bob.port, self.origin.url())
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(server.wait_sessions(1)[0]["user"], "bob")

    @unittest.skipIf(ft.UNDER_VALGRIND, "the upgrade starts the binary itself, without the wrapper")
    def test_an_upgrade_keeps_the_listener_a_tunnel_listener(self):
        server = self.start_server()
        port = server.port
        start = len(server.lines)
        server.proc.send_signal(signal.SIGUSR2)
        m = server.wait_line(r"upgrade: process (\d+) serves", timeout=30, start=start)
        pid = int(m.group(1))

        def stop():
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                return
            for _ in range(100):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    return
                time.sleep(0.1)
            os.kill(pid, signal.SIGKILL)
        self.addCleanup(stop)
        self.assertEqual(server.proc.wait(10 * ft.SLOW), 0)
        # Still silent to a SOCKS5 greeting, and still the tunnel.
        self.assert_silent_close(b"\x05\x01\x00", port)
        client = self.start_client(port)
        r = self.curl("socks5h://127.0.0.1:%d" % client.port, self.origin.url("/up"))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, ft.HTTPOrigin.body("/up"))

    def test_one_command_mode_and_known_hosts(self):
        server = self.start_server()
        home = os.path.join(self.dir, "home")
        os.makedirs(os.path.join(home, ".config", "ferry"))
        shutil.copy(self.akey, os.path.join(home, ".config", "ferry", "key"))
        os.chmod(os.path.join(home, ".config", "ferry", "key"), 0o600)
        env = {"HOME": home}
        target = "127.0.0.1:%d" % server.port
        known = os.path.join(home, ".config", "ferry", "known_hosts")
        # First use: the key given and remembered.
        one = ft.Ferryd(self, None, listeners=1, env=env, args=(
            "--tunnel", target, "--server-key", self.spub, "--accept-new-server-key",
            "--listen", "127.0.0.1:0"))
        with open(known) as f:
            self.assertEqual(f.read(), "%s %s\n" % (target, self.spub))
        r = self.curl("socks5h://127.0.0.1:%d" % one.port, self.origin.url("/one"))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, ft.HTTPOrigin.body("/one"))
        one.stop()
        # Then without the key: from known_hosts.
        two = ft.Ferryd(self, None, listeners=1, env=env, args=(
            "--tunnel", target, "--listen", "127.0.0.1:0"))
        r = self.curl("socks5://127.0.0.1:%d" % two.port, self.origin.url("/two"))
        self.assertEqual(r.returncode, 0, r.stderr)
        two.stop()
        # A different key for the same host is refused with a clear message.
        r = subprocess.run(ft.ferryd_argv("--tunnel", target, "--server-key", self.bpub,
                                          "--listen", "127.0.0.1:0", "-t"),
                           env=dict(os.environ, HOME=home), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=30 * ft.SLOW)
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"not the one remembered", r.stderr)
        # No key anywhere: told what to give.
        os.unlink(known)
        r = subprocess.run(ft.ferryd_argv("--tunnel", target, "--listen", "127.0.0.1:0", "-t"),
                           env=dict(os.environ, HOME=home), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=30 * ft.SLOW)
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"--server-key", r.stderr)


if __name__ == "__main__":
    unittest.main()

"""Attacks on the encrypted hop (issue 15, doc/tunnel-protocol.md 2.4, 2.5 and 3): a man in the
middle written here (Relay: a TCP relay on loopback between the client ferryd, whose ferry parent
points at it, and the server's tunnel listener) changes the byte stream at chosen offsets. Each
attack must fail safely and be logged by the side(s) that see it, with no crash, and both
daemons must still carry a fresh connection afterwards:

- a bit flipped in msg1: the server sends nothing and closes at its negotiate timeout; the
  same for a msg1 shorter than its length field says;
- a bit flipped in msg2: the client refuses it, says so, and sends nothing more;
- a bit flipped in a transport record, either way: the connection ends at once, its stream is
  aborted, the reason is logged on the side that opened the record (the other sees a cut);
- the relay cuts the connection in the middle of a bulk transfer: the SOCKS client gets fewer
  bytes than the origin sent, and both ferries log the cut;
- msg1 captured and replayed on a new connection (with the records that followed it): the
  server answers nothing and the request is not repeated;
- a record of one connection spliced into another, a record sent again in its own connection,
  a record left out (the next one then): each fails authentication.

A peer that stalls before a whole msg1 is logged by the server as its own refusal ("first
message: not whole"), and an upload cut in the middle never reaches the origin as a clean end of
file (the server resets the target: doc 3, the streams of a cut connection are aborted).

Loopback only; the relay and every wait are bounded in time.
"""

import os
import re
import socket
import struct
import subprocess
import threading
import time
import unittest

import ferrytest as ft
from ferrytest import CURL_ENV, KEYGEN

NEGOTIATE = 2.0  # the server's timeout negotiate: when a refused peer is closed

# The wire (doc 2.2 and 3): msg1 and msg2 with their 2-byte lengths, a record's sealed header.
MSG1 = 2 + 110
MSG2 = 2 + 50
HEADER = 23
TAG = 16

UP, DOWN = 0, 1  # client -> server, server -> client


def socks5_connect(port, host, dport):
    """A raw SOCKS5 CONNECT to an IPv4 address through ferryd: (socket, REP), REP None when
    ferryd closed the connection before a whole reply."""
    s = socket.create_connection(("127.0.0.1", port), timeout=ft.IO_TIMEOUT)
    s.sendall(b"\x05\x01\x00")
    if ft.recv_exact(s, 2) != b"\x05\x00":
        raise AssertionError("no method")
    s.sendall(b"\x05\x01\x00\x01" + socket.inet_aton(host) + dport.to_bytes(2, "big"))
    head = b""
    try:
        while len(head) < 10:
            b = s.recv(10 - len(head))
            if not b:
                break
            head += b
    except ConnectionResetError:
        pass
    if len(head) < 2:
        return s, None
    if head[1] == 0 and len(head) < 10:
        raise AssertionError("short reply %r" % head)
    return s, head[1]


def read_until_end(s):
    """Everything until the connection ends: (bytes, "eof" or "reset")."""
    chunks = []
    try:
        while True:
            b = s.recv(1 << 20)
            if not b:
                return b"".join(chunks), "eof"
            chunks.append(b)
    except ConnectionResetError:
        return b"".join(chunks), "reset"


class RelayConn:
    """One connection through the relay: a thread per direction copies bytes, applying the
    rules armed for that direction at absolute offsets of its byte stream (what the sender
    sent, counted from 0): flip (XOR a mask into one byte), inject (insert bytes before one),
    drop (leave out a number of bytes) and cut (forward the bytes before it, then end both TCP
    connections with a FIN each and throw away whatever either side still sends). The first
    CAPTURE bytes of each direction are kept as they arrived."""

    CAPTURE = 1 << 16

    def __init__(self, relay, index, csock, ssock, rules):
        self.relay = relay
        self.index = index
        self.socks = (csock, ssock)
        # The server names the connection by the relay's address on its side.
        self.name = "127.0.0.1:%d" % ssock.getsockname()[1]
        self.count = [0, 0]
        self.data = [bytearray(), bytearray()]
        self.rules = [list(rules[UP]), list(rules[DOWN])]
        self.ended = [None, None]  # how each direction's reading ended: "eof", "reset", "stop"
        self.ended_at = [None, None]
        self.cut = False
        self.abort = False
        self.t0 = time.monotonic()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._pump, args=(d,), daemon=True)
                        for d in (UP, DOWN)]
        for s in self.socks:
            s.settimeout(0.2)

    def start(self):
        for t in self.threads:
            t.start()
        threading.Thread(target=self._finish, daemon=True).start()

    def arm(self, direction, action, ahead=0, arg=None):
        """A rule at ahead bytes past what the direction has carried so far."""
        with self.lock:
            self.rules[direction].append((self.count[direction] + ahead, action, arg))

    def _apply(self, direction, start, chunk):
        """The bytes to send for chunk (which starts at offset start) and whether to cut after
        them; rules that fall in the chunk are used up (a drop that goes on past the chunk
        leaves a rule for the rest)."""
        out = bytearray(chunk)
        end = start + len(chunk)
        edits = []  # (position, bytes removed there, bytes inserted there)
        cut_at = None
        keep = []
        for rule in self.rules[direction]:
            off, action, arg = rule
            if not start <= off < end:
                keep.append(rule)
                continue
            if action == "flip":
                out[off - start] ^= arg or 0x01
            elif action == "inject":
                edits.append((off - start, 0, arg))
            elif action == "drop":
                n = min(arg, end - off)
                edits.append((off - start, n, b""))
                if n < arg:
                    keep.append((end, "drop", arg - n))
            elif action == "cut":
                cut_at = off - start if cut_at is None else min(cut_at, off - start)
        self.rules[direction] = keep
        if cut_at is not None:
            out = out[:cut_at]
            edits = [e for e in edits if e[0] <= cut_at]
        for pos, n, data in sorted(edits, key=lambda e: e[0], reverse=True):
            out[pos:pos + n] = data
        return bytes(out), cut_at is not None

    def _pump(self, d):
        src, dst = self.socks[d], self.socks[1 - d]
        while True:
            if self.abort or time.monotonic() > self.relay.deadline:
                self.ended[d] = "stop"
                self.abort = True
                break
            try:
                chunk = src.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                self.ended[d] = "reset"
                self.abort = True  # the other side is reset too (_finish)
                break
            if not chunk:
                self.ended[d] = "eof"
                if not self.cut:
                    try:
                        dst.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                break
            with self.lock:
                start = self.count[d]
                self.count[d] += len(chunk)
                room = self.CAPTURE - len(self.data[d])
                if room > 0:
                    self.data[d] += chunk[:room]
                if self.cut:
                    continue  # thrown away
                out, cut = self._apply(d, start, chunk)
                if cut:
                    self.cut = True
            try:
                dst.sendall(out)
            except OSError:
                pass
            if cut:
                for s in self.socks:
                    try:
                        s.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
        self.ended_at[d] = time.monotonic()

    def _finish(self):
        for t in self.threads:
            t.join()
        for s in self.socks:
            if self.abort:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()

    def wait_done(self, timeout=10.0):
        deadline = time.monotonic() + timeout * ft.SLOW
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in self.threads):
            raise AssertionError("relay connection %d still open after %.0fs (%r)"
                                 % (self.index, timeout, self.count))

    def server_closed_after(self):
        """Seconds from the accept to the server's end of the connection."""
        return self.ended_at[DOWN] - self.t0


class Relay:
    """The man in the middle: listens on loopback, connects each client to the server, and
    applies to each new connection the rules armed with arm_next (then forgotten). Bounded:
    every connection ends at the relay's deadline, and the test's cleanup stops it all."""

    def __init__(self, testcase, port, lifetime=120.0):
        self.port_to = port
        self.deadline = time.monotonic() + lifetime * ft.SLOW
        self.lock = threading.Lock()
        self.conns = []
        self.next_rules = ([], [])
        self.stopped = False
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.lsock.settimeout(0.2)
        self.port = self.lsock.getsockname()[1]
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()
        testcase.addCleanup(self.stop)

    def arm_next(self, direction, action, offset, arg=None):
        with self.lock:
            self.next_rules[direction].append((offset, action, arg))

    def _accept(self):
        while not self.stopped and time.monotonic() < self.deadline:
            try:
                c, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                u = socket.create_connection(("127.0.0.1", self.port_to), timeout=5)
            except OSError:
                c.close()
                continue
            with self.lock:
                conn = RelayConn(self, len(self.conns), c, u, self.next_rules)
                self.next_rules = ([], [])
                self.conns.append(conn)
            conn.start()

    def conn(self, index, timeout=10.0):
        ft.wait_until(lambda: len(self.conns) > index, timeout)
        with self.lock:
            if len(self.conns) <= index:
                raise AssertionError("no relay connection %d" % index)
            return self.conns[index]

    def stop(self):
        self.stopped = True
        self.thread.join(5)
        self.lsock.close()
        for c in self.conns:
            c.abort = True
        for c in self.conns:
            for t in c.threads:
                t.join(5)


class TunnelAttackTest(unittest.TestCase):
    def setUp(self):
        if not os.access(KEYGEN, os.X_OK):
            raise AssertionError("ferry-keygen not built: %s" % KEYGEN)
        ft.tunnel_keys(self, "ferryattack-", ("alice", "bob"))
        self.origin = ft.HTTPOrigin(self)
        self.server = ft.start_ferryd(self, extra=[
            "tunnel key %s" % self.skey,
            "tunnel authorized-keys %s" % self.authkeys,
            "timeout negotiate %gs" % NEGOTIATE,
            "request pass to 127.0.0.0/8 private",
        ], listen=("127.0.0.1:0 tunnel",))
        self.relay = Relay(self, self.server.port)
        self.client = self.start_client()

    def start_client(self, key=None, name="home"):
        return ft.start_ferryd(self, extra=[
            "parent %s ferry 127.0.0.1:%d server-key %s key %s timeout 3s retry 1s"
            % (name, self.relay.port, self.spub, key or self.akey),
            "route via %s" % name,
        ])

    def curl(self, client, path):
        return subprocess.run(["curl", "-sS", "--max-time", "%d" % (10 * ft.SLOW), "-x",
                               "socks5h://127.0.0.1:%d" % client.port, self.origin.url(path)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=CURL_ENV,
                              timeout=30 * ft.SLOW)

    def assert_serving(self, client=None, path="/after"):
        """Both daemons alive and carrying a fresh request (a new tunnel connection when the
        attack ended the old one)."""
        client = client or self.client
        self.assertIsNone(self.server.proc.poll(), "the server ferryd exited")
        self.assertIsNone(client.proc.poll(), "the client ferryd exited")
        r = self.curl(client, path)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, ft.HTTPOrigin.body(path))

    def ups(self):
        return sum(": up" in l and "tunnel from" in l for l in self.server.lines)

    def open_echo_stream(self, echo):
        """A stream through the tunnel to echo, one round trip done; the relay connection it
        went through, with everything sent so far carried."""
        s, rep = socks5_connect(self.client.port, "127.0.0.1", echo.port)
        self.addCleanup(s.close)
        self.assertEqual(rep, 0)
        self.assertEqual(ft.echo_roundtrip(s, b"before the attack"), b"before the attack")
        conn = self.relay.conn(len(self.relay.conns) - 1)
        # Settled: nothing in flight (the relay has what each side sent).
        last = None
        while last != tuple(conn.count):
            last = tuple(conn.count)
            time.sleep(0.1)
        return s, conn

    # --- handshake messages ------------------------------------------------------------------

    def test_a_bit_flipped_in_msg1_gets_silence_and_a_close_at_the_negotiate_timeout(self):
        # In the ephemeral key, in the sealed static key, in the sealed hello's tag.
        for n, offset in enumerate((2 + 5, 2 + 32 + 20, MSG1 - 1)):
            start_s, start_c = len(self.server.lines), len(self.client.lines)
            self.relay.arm_next(UP, "flip", offset, 0x10)
            s, rep = socks5_connect(self.client.port, "127.0.0.1", self.origin.port)
            s.close()
            self.assertNotEqual(rep, 0, "a request went through a tampered msg1")
            conn = self.relay.conn(n)
            conn.wait_done(NEGOTIATE * 5)
            self.assertEqual(conn.count[DOWN], 0, "the server answered a tampered msg1")
            self.assertEqual(conn.ended[DOWN], "eof")
            self.assertGreater(conn.server_closed_after(), NEGOTIATE - 0.3)
            self.assertEqual(conn.count[UP], MSG1)
            self.server.wait_line(r"tunnel from %s: refused, silently: first message: "
                                  r"authentication failed" % re.escape(conn.name), start=start_s)
            self.client.wait_line(r"tunnel to parent home: .*\(a wrong server-key, or our key is "
                                  r"not authorized there.*; 1 stream aborted", start=start_c)
        self.assertEqual(self.ups(), 0)
        self.assertFalse(any("session" in l and "client=" in l for l in self.server.lines))
        self.assert_serving()
        self.assertEqual(self.ups(), 1)

    def test_a_bit_flipped_in_msg2_is_refused_by_the_client_which_sends_nothing_more(self):
        # In the server's ephemeral key, in the sealed welcome's tag.
        for n, offset in enumerate((2 + 7, MSG2 - 3)):
            start_s, start_c = len(self.server.lines), len(self.client.lines)
            self.relay.arm_next(DOWN, "flip", offset, 0x80)
            s, rep = socks5_connect(self.client.port, "127.0.0.1", self.origin.port)
            s.close()
            self.assertNotEqual(rep, 0)
            self.client.wait_line(r"tunnel to parent home: the server did not prove server-key "
                                  r"BLAKE2b:\S+ \(authentication failed\): wrong server, or "
                                  r"wrong key; 1 stream aborted", start=start_c)
            conn = self.relay.conn(n)
            conn.wait_done()
            # msg1 and nothing after it: no record, no CLOSE.
            self.assertEqual(conn.count[UP], MSG1)
            self.assertEqual(conn.ended[UP], "eof")
            self.assertEqual(conn.count[DOWN], MSG2)
            # The server had answered, so it sees a connection cut without a CLOSE.
            self.server.wait_line(r"tunnel from %s: cut: end of file without CLOSE; 0 streams "
                                  r"aborted" % re.escape(conn.name), start=start_s)
        self.assertFalse(any("session" in l and "client=" in l for l in self.server.lines))
        self.assert_serving()

    def stall_msg1(self):
        """msg1's length field says one byte more than comes: the server waits for it, sends
        nothing, and closes at its negotiate timeout; the client says it got no answer."""
        start_s, start_c = len(self.server.lines), len(self.client.lines)
        self.relay.arm_next(UP, "flip", 1, 0x01)  # 110 -> 111
        s, rep = socks5_connect(self.client.port, "127.0.0.1", self.origin.port)
        s.close()
        self.assertNotEqual(rep, 0)
        conn = self.relay.conn(0)
        conn.wait_done(NEGOTIATE * 5)
        self.assertEqual((conn.count, conn.ended[DOWN]), ([MSG1, 0], "eof"))
        self.assertGreater(conn.server_closed_after(), NEGOTIATE - 0.3)
        self.client.wait_line(r"tunnel to parent home: .*\(a wrong server-key, or our key is not "
                              r"authorized there.*; 1 stream aborted", start=start_c)
        return conn, start_s

    def test_a_msg1_shorter_than_its_length_gets_silence_until_the_negotiate_timeout(self):
        self.stall_msg1()
        self.assert_serving()

    def test_the_server_logs_a_stalled_msg1_as_its_own_refusal(self):
        conn, start_s = self.stall_msg1()
        line = self.server.wait_line(r"tunnel from %s: .*" % re.escape(conn.name),
                                     start=start_s).group(0)
        self.assertIn("first message", line)
        self.assertNotIn("server-key", line)

    # --- records -----------------------------------------------------------------------------

    def check_record_flip(self, direction, ahead):
        echo = ft.EchoOrigin(self)
        s, conn = self.open_echo_stream(echo)
        start_s, start_c = len(self.server.lines), len(self.client.lines)
        conn.arm(direction, "flip", ahead, 0x01)
        s.sendall(b"after the flip")
        got, how = read_until_end(s)
        ft.log("the SOCKS client saw %s after %d bytes" % (how, len(got)))
        # The stream is aborted: the echo of the bytes after the flip never comes back.
        self.assertEqual(got, b"")
        conn.wait_done()
        server = r"tunnel from %s: " % re.escape(conn.name)
        client = r"tunnel to parent home: "
        failed = r"record failed authentication; 1 stream aborted"
        # The other side sees the connection end without CLOSE (a reset when its last
        # records were still unread there).
        cut = r"(cut: end of file without CLOSE|%s); 1 stream aborted" % os.strerror(104)
        if direction == UP:
            self.server.wait_line(server + failed, start=start_s)
            self.client.wait_line(client + cut, start=start_c)
            # The origin never got the bytes after the flip.
            ft.wait_until(lambda: len(echo.received) == 1)
            self.assertEqual(echo.received, [b"before the attack"])
        else:
            self.client.wait_line(client + failed, start=start_c)
            self.server.wait_line(server + cut, start=start_s)
        self.assert_serving()

    def test_a_bit_flipped_in_a_record_to_the_server_ends_the_connection(self):
        self.check_record_flip(UP, HEADER + 4)  # in the DATA record's payload

    def test_a_bit_flipped_in_a_record_to_the_client_ends_the_connection(self):
        self.check_record_flip(DOWN, 3)  # in the DATA record's sealed header

    def test_a_cut_in_the_middle_of_a_bulk_transfer_is_never_a_complete_transfer(self):
        size = (2 if ft.UNDER_VALGRIND else 16) * 1024 * 1024
        data = os.urandom(size)
        bulk = ft.BulkOrigin(self, data)
        s, rep = socks5_connect(self.client.port, "127.0.0.1", bulk.port)
        self.addCleanup(s.close)
        self.assertEqual(rep, 0)
        conn = self.relay.conn(0)
        start_s, start_c = len(self.server.lines), len(self.client.lines)
        # A quarter of the way into the data, in the middle of a record.
        conn.arm(DOWN, "cut", size // 4 + 1000)
        s.sendall(b"GET %d\n" % size)
        got, how = read_until_end(s)
        ft.log("the SOCKS client saw %s after %d of %d bytes" % (how, len(got), size))
        # A prefix of the data, then a reset (the stream relays the SOCKS client's own socket,
        # which an aborted stream resets): never an end of file that could pass for the end.
        self.assertEqual(how, "reset")
        self.assertLess(len(got), size)
        self.assertLess(len(got), size // 4 + 1000)
        self.assertEqual(got, data[:len(got)])
        conn.wait_done()
        self.assertTrue(conn.cut)
        self.client.wait_line(r"tunnel to parent home: cut: end of file without CLOSE; "
                              r"1 stream aborted", start=start_c)
        self.server.wait_line(r"tunnel from %s: cut: end of file without CLOSE; 1 stream "
                              r"aborted" % re.escape(conn.name), start=start_s)
        self.assert_serving()

    def check_record_fails_at_the_server(self, s, conn, echo, start_s, start_c, sent):
        """After the relay's tampering of the records that carried sent: the server refuses the
        next record it opens, the stream ends without the echo, the origin got only what came
        before, both sides log it, and a fresh connection works."""
        got, how = read_until_end(s)
        ft.log("the SOCKS client saw %s after %d bytes" % (how, len(got)))
        self.assertEqual(got, b"")
        conn.wait_done()
        self.server.wait_line(r"tunnel from %s: record failed authentication; 1 stream aborted"
                              % re.escape(conn.name), start=start_s)
        self.client.wait_line(r"tunnel to parent home: (cut: end of file without CLOSE|%s); 1 "
                              r"stream aborted" % os.strerror(104), start=start_c)
        ft.wait_until(lambda: len(echo.received) == 1)
        self.assertEqual(echo.received, [b"before the attack"])
        self.assertNotIn(sent, echo.received[0])
        self.assert_serving()

    def test_a_record_sent_again_in_its_own_connection_fails_authentication(self):
        echo = ft.EchoOrigin(self)
        s, conn = self.open_echo_stream(echo)
        # The last record the client sent: the DATA of "before the attack" (17 bytes).
        last = bytes(conn.data[UP][-(HEADER + 17 + TAG):])
        start_s, start_c = len(self.server.lines), len(self.client.lines)
        conn.arm(UP, "inject", 0, last)
        s.sendall(b"after the copy")
        self.check_record_fails_at_the_server(s, conn, echo, start_s, start_c, b"after the copy")

    def test_a_record_left_out_makes_the_next_one_fail_authentication(self):
        echo = ft.EchoOrigin(self)
        s, conn = self.open_echo_stream(echo)
        start_s, start_c = len(self.server.lines), len(self.client.lines)
        conn.arm(UP, "drop", 0, HEADER + 7 + TAG)
        s.sendall(b"dropped")
        # The server never saw that record; it cannot tell until the next one.
        ft.wait_until(lambda: conn.rules[UP] == [], 5)
        self.assertEqual(conn.rules[UP], [])
        time.sleep(0.2)
        self.assertFalse(any("failed" in l for l in self.server.lines[start_s:]))
        s.sendall(b"the next record")
        self.check_record_fails_at_the_server(s, conn, echo, start_s, start_c, b"dropped")

    def cut_upload(self):
        """The relay cuts the connection a quarter into an upload (PUT: the origin answers
        with what it got once it reads an end of file); both ferries log the cut. Returns the
        origin and the size sent."""
        size = (2 if ft.UNDER_VALGRIND else 16) * 1024 * 1024
        data = os.urandom(size)
        bulk = ft.BulkOrigin(self, data)
        s, rep = socks5_connect(self.client.port, "127.0.0.1", bulk.port)
        self.addCleanup(s.close)
        self.assertEqual(rep, 0)
        conn = self.relay.conn(0)
        start_s, start_c = len(self.server.lines), len(self.client.lines)
        conn.arm(UP, "cut", size // 4)
        try:
            s.sendall(b"PUT\n" + data)
            s.shutdown(socket.SHUT_WR)
        except OSError as e:
            ft.log("the SOCKS client's upload ended with %s" % e)
        got, how = read_until_end(s)
        ft.log("the SOCKS client saw %s after %d bytes" % (how, len(got)))
        self.assertEqual(got, b"")  # no answer from the origin
        conn.wait_done()
        self.client.wait_line(r"tunnel to parent home: cut: end of file without CLOSE; "
                              r"1 stream aborted", start=start_c)
        self.server.wait_line(r"tunnel from %s: cut: end of file without CLOSE; 1 stream "
                              r"aborted" % re.escape(conn.name), start=start_s)
        line = self.server.wait_sessions(1)[0]
        self.assertLess(int(line["up"]), size // 4)
        ft.wait_until(lambda: bulk.results, 5)
        ft.log("the origin: %r of %d bytes sent" % (bulk.results, size))
        return bulk, size

    def test_a_cut_in_the_middle_of_an_upload_is_logged_on_both_sides(self):
        self.cut_upload()
        self.assert_serving()

    def test_a_cut_upload_never_looks_complete_to_the_origin(self):
        bulk, size = self.cut_upload()
        # doc 3: the streams of a cut connection are aborted (reset, not shut down), so the
        # origin must not take the part it got for the whole upload: it sees the reset.
        self.assertTrue(ft.wait_until(lambda: bulk.results, 5))
        self.assertEqual([r[0] for r in bulk.results], ["PUT reset"], bulk.results)
        self.assertLess(bulk.results[0][1], size)

    # --- replay and splice -------------------------------------------------------------------

    def test_msg1_replayed_on_a_new_connection_gets_silence_and_repeats_nothing(self):
        r = self.curl(self.client, "/once")
        self.assertEqual(r.returncode, 0, r.stderr)
        conn = self.relay.conn(0)
        ft.wait_until(lambda: conn.count[UP] > MSG1 + HEADER)
        captured = bytes(conn.data[UP])
        self.assertEqual(len(self.origin.peers), 1)
        self.server.wait_sessions(1)
        start = len(self.server.lines)
        # The captured msg1, then (once the server has read it) the records that followed it.
        s = socket.create_connection(("127.0.0.1", self.server.port),
                                     timeout=NEGOTIATE * 5 * ft.SLOW)
        t0 = time.monotonic()
        s.sendall(captured[:MSG1])
        self.server.wait_line(r"refused, silently: key BLAKE2b:\S+ \(user alice\): hello "
                              r"timestamp not newer than the last \(a replay\?\)", start=start)
        try:
            s.sendall(captured[MSG1:])
        except OSError:
            pass
        got, how = read_until_end(s)
        took = time.monotonic() - t0
        s.close()
        # Nothing, and the end only at the negotiate timeout (a reset: the server closes
        # with the records after msg1 unread).
        ft.log("the replaying peer saw %s after %.1fs" % (how, took))
        self.assertEqual(got, b"")
        self.assertGreater(took, NEGOTIATE - 0.3)
        # The request was not made again.
        self.assertEqual(len(self.origin.peers), 1)
        self.assertEqual(len(self.server.sessions()), 1)
        self.assert_serving()

    def test_a_record_spliced_from_another_connection_fails_authentication(self):
        echo = ft.EchoOrigin(self)
        s, a = self.open_echo_stream(echo)
        # Alice's first record (the OPEN of a CONNECT to an IPv4 address: 10 bytes).
        record = bytes(a.data[UP][MSG1:MSG1 + HEADER + 10 + TAG])
        self.assertEqual(len(record), HEADER + 10 + TAG)
        bob = self.start_client(key=self.bkey)
        t, rep = socks5_connect(bob.port, "127.0.0.1", echo.port)
        self.addCleanup(t.close)
        self.assertEqual(rep, 0)
        self.assertEqual(ft.echo_roundtrip(t, b"bob's bytes"), b"bob's bytes")
        b = self.relay.conn(1)
        start_s, start_b = len(self.server.lines), len(bob.lines)
        b.arm(UP, "inject", 0, record)
        t.sendall(b"more of bob's bytes")
        got, how = read_until_end(t)
        self.assertEqual(got, b"")
        b.wait_done()
        self.server.wait_line(r"tunnel from %s: record failed authentication; 1 stream aborted"
                              % re.escape(b.name), start=start_s)
        bob.wait_line(r"tunnel to parent home: (cut: end of file without CLOSE|%s); 1 stream "
                      r"aborted" % os.strerror(104), start=start_b)
        # Alice's connection is untouched.
        self.assertEqual(ft.echo_roundtrip(s, b"alice again"), b"alice again")
        self.assertFalse(any(a.name in l and "aborted" in l for l in self.server.lines))
        self.assert_serving(bob)
        self.assert_serving(self.client, "/alice")


if __name__ == "__main__":
    ft.main()

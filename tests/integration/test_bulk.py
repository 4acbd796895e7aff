"""50 MB each way through ferryd with both relay paths (splice and buffered), sha256 checked."""

import hashlib
import os
import socket
import statistics
import threading
import time
import unittest

import ferrytest as ft

SIZE = 50 * 1024 * 1024
DATA = os.urandom(SIZE)
DIGEST = hashlib.sha256(DATA).hexdigest()


class BulkTest(unittest.TestCase):
    mode = None

    def setUp(self):
        if self.mode is None:
            self.skipTest("base class")
        self.origin = ft.BulkOrigin(self, DATA)
        self.ferry = ft.start_ferryd(self, extra=["relay %s" % self.mode])

    def open(self, ferry=None):
        ferry = ferry or self.ferry
        s, rep, _, _ = ft.socks5_open(ferry.addr(), "127.0.0.1", self.origin.port, timeout=60)
        self.assertEqual(rep, ft.REP_SUCCEEDED)
        return s

    def test_download_50mb_sha256_matches(self):
        start = time.monotonic()
        with self.open() as s:
            s.sendall(b"GET %d\n" % SIZE)
            h = hashlib.sha256()
            total = 0
            while True:
                chunk = s.recv(1 << 20)
                if not chunk:
                    break
                h.update(chunk)
                total += len(chunk)
        ft.log("%s download: %.2fs" % (self.mode, time.monotonic() - start))
        self.assertEqual(total, SIZE)
        self.assertEqual(h.hexdigest(), DIGEST)
        sess = self.ferry.wait_sessions(1, timeout=10)[-1]
        self.assertEqual(sess.get("reply"), "succeeded", sess)
        self.assertEqual(int(sess["down"]), SIZE, sess)
        self.assertEqual(int(sess["up"]), len(b"GET %d\n" % SIZE), sess)

    def test_upload_50mb_sha256_matches(self):
        start = time.monotonic()
        with self.open() as s:
            s.sendall(b"PUT\n")
            view = memoryview(DATA)
            for off in range(0, SIZE, 1 << 20):
                s.sendall(view[off:off + (1 << 20)])
            # Half-close: the origin sees EOF and still answers.
            s.shutdown(socket.SHUT_WR)
            answer = ft.recv_until_eof(s, 4096)
        ft.log("%s upload: %.2fs" % (self.mode, time.monotonic() - start))
        self.assertEqual(answer, ("%s %d\n" % (DIGEST, SIZE)).encode())
        sess = self.ferry.wait_sessions(1, timeout=10)[-1]
        self.assertEqual(sess.get("reply"), "succeeded", sess)
        self.assertEqual(int(sess["up"]), SIZE + 4, sess)
        self.assertEqual(int(sess["down"]), len(answer), sess)


class SpliceBulkTest(BulkTest):
    mode = "splice"


class BufferedBulkTest(BulkTest):
    mode = "buffered"


class AutoBulkTest(BulkTest):
    """relay auto starts with recv/send; a bulk direction tries splice and takes the path the
    worker measured to be faster."""
    mode = "auto"

    def download_watching_pipes(self, ferry):
        """Download SIZE bytes through ferry; returns the most pipes it held meanwhile."""
        most = 0
        with self.open(ferry) as s:
            s.sendall(b"GET %d\n" % SIZE)
            total = 0
            while True:
                chunk = s.recv(1 << 20)
                if not chunk:
                    break
                total += len(chunk)
                most = max(most, ft.relay_pipes(ferry.proc.pid))
        self.assertEqual(total, SIZE)
        return most

    def test_a_bulk_upload_measures_copy_against_splice_and_the_verdict_is_kept(self):
        ferry = ft.start_ferryd(self, extra=["relay auto", "workers 1"], args=("-v",))
        pid = ferry.proc.pid
        repeat = 5  # 250 MiB: the trial takes 6 phases of 32 MiB
        expect = hashlib.sha256()
        for _ in range(repeat):
            expect.update(DATA)
        with self.open(ferry) as s:
            s.sendall(b"PUT\n")
            view = memoryview(DATA)
            for _ in range(repeat):
                for off in range(0, SIZE, 1 << 20):
                    s.sendall(view[off:off + (1 << 20)])
            s.shutdown(socket.SHUT_WR)
            answer = ft.recv_until_eof(s, 4096)
        # Every byte crossed six switches between copying and splicing in order.
        self.assertEqual(answer, ("%s %d\n" % (expect.hexdigest(), repeat * SIZE)).encode())
        verdict = ferry.wait_line(r"relay auto: bulk transfers moved (\d+) MB/s copied and "
                               r"(\d+) MB/s spliced: (copying|splicing) them")
        ft.log(verdict.group(0))
        splicing = verdict.group(3) == "splicing"
        # The next bulk transfer of the worker takes the verdict's path without a new trial.
        self.assertTrue(ft.wait_until(lambda: ft.relay_pipes(pid) == 0, 5),
                        "the trial's spare pipes stayed")
        most = self.download_watching_pipes(ferry)
        if splicing:
            self.assertGreater(most, 0, "splicing was chosen, yet no pipe")
        else:
            self.assertEqual(most, 0, "copying was chosen, yet a pipe")
        verdicts = [l for l in ferry.lines if "relay auto: bulk transfers moved" in l]
        self.assertEqual(len(verdicts), 1, verdicts)

    def test_small_messages_stay_buffered_and_a_download_tries_splice(self):
        pid = self.ferry.proc.pid
        echo = ft.EchoOrigin(self)
        s, rep, _, _ = ft.socks5_open(self.ferry.addr(), echo.host, echo.port)
        with s:
            self.assertEqual(rep, ft.REP_SUCCEEDED)
            for i in range(100):
                msg = b"%03d" % i * 64
                self.assertEqual(ft.echo_roundtrip(s, msg), msg)
                self.assertEqual(ft.relay_pipes(pid), 0, "a pipe for 192-byte messages")
        most = self.download_watching_pipes(self.ferry)
        self.assertGreater(most, 0, "a 50 MB download never went through a pipe")


del BulkTest


class IdleSessionsHoldNothingTest(unittest.TestCase):
    """Pipes and buffers are taken only while data moves: established sessions that have
    moved data and now idle hold no pipe (spares go back a second after their last use)."""

    def test_idle_spliced_sessions_hold_no_pipes(self):
        echo = ft.EchoOrigin(self)
        ferry = ft.start_ferryd(self, extra=["relay splice"])
        pid = ferry.proc.pid
        socks = []
        blob = os.urandom(1 << 20)
        for _ in range(10):
            s, rep, _, _ = ft.socks5_open(ferry.addr(), echo.host, echo.port, timeout=30)
            self.addCleanup(s.close)
            self.assertEqual(rep, ft.REP_SUCCEEDED)
            socks.append(s)
        for s in socks:
            self.assertEqual(ft.echo_roundtrip(s, blob), blob)
        self.assertTrue(ft.wait_until(lambda: ft.relay_pipes(pid) == 0, 5),
                        "%d pipe fds left with 10 idle sessions" % ft.relay_pipes(pid))
        # ... while every session is still open (none has written its access line).
        self.assertEqual(len(ferry.sessions()), 0)
        for s in socks:
            self.assertEqual(ft.echo_roundtrip(s, b"still here"), b"still here")

    def test_spares_of_a_burst_go_while_one_session_keeps_busy(self):
        # Ten sessions at once leave a pile of spare pipes; one session that goes on moving
        # data must not keep that pile alive: each second frees what the second did not need.
        echo = ft.EchoOrigin(self)
        ferry = ft.start_ferryd(self, extra=["relay splice"])
        pid = ferry.proc.pid
        blob = os.urandom(4 << 20)
        socks = []
        for _ in range(10):
            s, rep, _, _ = ft.socks5_open(ferry.addr(), echo.host, echo.port, timeout=60)
            self.addCleanup(s.close)
            self.assertEqual(rep, ft.REP_SUCCEEDED)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 << 10)
            socks.append(s)
        # Every client sends and reads nothing yet: each direction stalls holding a pipe.
        senders = [threading.Thread(target=s.sendall, args=(blob,)) for s in socks]
        for t in senders:
            t.start()
        # Up to two pipes a session; 12 fds (6 pipes) are plenty to tell a pile from the 4
        # fds left at the end.
        self.assertTrue(ft.wait_until(lambda: ft.relay_pipes(pid) >= 12, 10),
                        "only %d pipe fds with 10 stalled sessions" % ft.relay_pipes(pid))
        results = []
        readers = [threading.Thread(target=lambda s=s: results.append(
            ft.recv_exact(s, len(blob)) == blob)) for s in socks]
        for t in readers:
            t.start()
        for t in senders + readers:
            t.join(60 * ft.SLOW)
        self.assertEqual(results, [True] * 10)
        burst = ft.relay_pipes(pid)
        busy, small = socks[0], os.urandom(64 << 10)
        deadline = time.monotonic() + 4 * ft.SLOW
        while time.monotonic() < deadline:
            self.assertEqual(ft.echo_roundtrip(busy, small), small)
            if ft.relay_pipes(pid) <= 4:  # the busy session's two pipes and their spares
                break
        ft.log("pipe fds after the burst %d, with one session busy %d"
               % (burst, ft.relay_pipes(pid)))
        self.assertLessEqual(ft.relay_pipes(pid), 4)


GAP = 0.002


class SmallWritesTest(unittest.TestCase):
    """Two small writes in a row go on at once in both directions: ferryd's sockets have
    TCP_NODELAY (the client's from its listener, the target's set after connect). With Nagle
    the second byte would wait for the peer's delayed ACK, about 40 ms, in every round."""

    ROUNDS = 100

    def test_write_write_read_rounds_do_not_wait_for_delayed_acks(self):
        def handler(conn):
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for _ in range(self.ROUNDS):
                self.assertEqual(ft.recv_exact(conn, 2), b"ab")
                conn.sendall(b"A")
                time.sleep(GAP)  # so that ferryd reads, and sends, each byte alone
                conn.sendall(b"B")

        origin = ft.TCPOrigin(self, handler)
        for mode in ("buffered", "auto"):
            with self.subTest(relay=mode):
                ferry = ft.start_ferryd(self, extra=["relay %s" % mode])
                s, rep, _, _ = ft.socks5_open(ferry.addr(), origin.host, origin.port)
                with s:
                    self.assertEqual(rep, ft.REP_SUCCEEDED)
                    rounds = []
                    for _ in range(self.ROUNDS):
                        start = time.monotonic()
                        s.sendall(b"a")
                        time.sleep(GAP)
                        s.sendall(b"b")
                        self.assertEqual(ft.recv_exact(s, 2), b"AB")
                        rounds.append(time.monotonic() - start)
                median = statistics.median(rounds)
                # A round is the two 2 ms gaps and little else; with Nagle on either socket
                # each round also waits for a delayed ACK (40 ms). The median ignores the
                # rounds a busy machine delays.
                ft.log("%d rounds through relay %s: median %.1f ms"
                       % (self.ROUNDS, mode, median * 1000))
                self.assertLess(median, 0.020 * ft.SLOW, "median round %.1f ms" % (median * 1000))
                ferry.stop()
        self.assertEqual(origin.errors, [])


if __name__ == "__main__":
    ft.main()

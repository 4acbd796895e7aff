"""50 MB each way through ferryd with both relay paths (splice and buffered), sha256 checked."""

import hashlib
import os
import socket
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

    def open(self):
        s, rep, _, _ = ft.socks5_open(self.ferry.addr(), "127.0.0.1", self.origin.port,
                                      timeout=60)
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


del BulkTest

if __name__ == "__main__":
    ft.main()

"""The tunnel protocol against an independent implementation (issue 15): tests/interop/
tunnel_peer.go, both ends of doc/tunnel-protocol.md written from the document alone on
flynn/noise (Debian's golang-github-flynn-noise-dev), built offline with Debian's golang-go.

As a client against ferryd's tunnel listener: the handshake under each cipher, a stream's
OPEN, REPLY, DATA both ways past the first window, EOF and CLOSE; the server's access line
names the key's user. A Go client whose key is not authorized gets nothing back and is closed
at the negotiate timeout. As a server against ferryd's ferry parent: a SOCKS5 client's bytes
come back through it, under each cipher. Skipped, saying why, when go or the package is
missing. Loopback only.
"""

import os
import shutil
import socket
import subprocess
import time
import unittest

import ferrytest as ft
from ferrytest import keygen

SOURCE = os.path.join(ft.SRCDIR, "tests", "interop", "tunnel_peer.go")
GOPATH = "/usr/share/gocode"
NOISE = os.path.join(GOPATH, "src", "github.com", "flynn", "noise")
XCRYPTO = os.path.join(GOPATH, "src", "golang.org", "x", "crypto", "curve25519")
# The build tree's directory for the binary and Go's cache: a rebuild only when the source
# changed, and Go's cache makes the first one take seconds, not a minute.
OUTDIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(ft.FERRYD))), "tests",
                      "interop")
BINARY = os.path.join(OUTDIR, "tunnel_peer")
NEGOTIATE = 2.0
EXIT_SILENT = 3


def missing():
    """Why the Go peer cannot be built here, or None."""
    if shutil.which("go") is None:
        return "go not installed (Debian package golang-go)"
    if not os.path.isdir(NOISE):
        return "flynn/noise not installed (Debian package golang-github-flynn-noise-dev)"
    if not os.path.isdir(XCRYPTO):
        return "golang.org/x/crypto not installed (Debian package golang-golang-x-crypto-dev)"
    return None


def build():
    """The Go peer, built offline (GOPATH mode, no module proxy); its path."""
    if (os.path.exists(BINARY) and os.path.getmtime(BINARY) >= os.path.getmtime(SOURCE)):
        return BINARY
    os.makedirs(OUTDIR, exist_ok=True)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": OUTDIR,
           "GOPATH": GOPATH, "GO111MODULE": "off", "GOPROXY": "off", "GOFLAGS": "",
           "GOENV": "off", "GOCACHE": os.path.join(OUTDIR, "gocache"), "CGO_ENABLED": "0"}
    t0 = time.monotonic()
    r = subprocess.run(["go", "build", "-o", BINARY + ".tmp", SOURCE], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
    if r.returncode != 0:
        raise AssertionError("go build failed:\n%s" % r.stdout.decode(errors="replace"))
    os.replace(BINARY + ".tmp", BINARY)
    ft.log("go build of the peer: %.1f s" % (time.monotonic() - t0))
    return BINARY


class InteropTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        why = missing()
        if why is not None:
            raise unittest.SkipTest(why)
        cls.peer = build()

    def setUp(self):
        ft.tunnel_keys(self, "ferryinterop-", ("gopher",))

    def start_server(self):
        return ft.start_ferryd(self, extra=[
            "tunnel key %s" % self.skey,
            "tunnel authorized-keys %s" % self.authkeys,
            "timeout negotiate %gs" % NEGOTIATE,
            "request pass to 127.0.0.0/8 private",
        ], listen=("127.0.0.1:0 tunnel",))

    def go_client(self, port, key, target, cipher="chacha20-poly1305", size=300000):
        return subprocess.run([self.peer, "-server", "127.0.0.1:%d" % port,
                               "-server-key", self.spub, "-key", key,
                               "-target", "127.0.0.1:%d" % target, "-bytes", str(size),
                               "-cipher", cipher, "-timeout", "%ds" % (20 * ft.SLOW)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              timeout=40 * ft.SLOW)

    def client_echo(self, cipher):
        echo = ft.EchoOrigin(self)
        server = self.start_server()
        # 300,000 bytes: more than a stream's window (262,144) each way, so WINDOW works too.
        r = self.go_client(server.port, self.gkey, echo.port, cipher)
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        self.assertEqual(r.stdout.decode().strip(),
                         "ok 300000 bytes echoed, cipher %s" % cipher)
        line = server.wait_sessions(1)[0]
        self.assertEqual((line["user"], line["cmd"], line["reply"], line["up"], line["down"]),
                         ("gopher", "connect", "succeeded", "300000", "300000"), line)
        self.assertEqual([len(b) for b in echo.received], [300000])
        server.wait_line(r"tunnel from 127\.0\.0\.1:\d+: key BLAKE2b:\S+, %s, user gopher: up"
                         % cipher)
        # The Go client ended with CLOSE: a clean end, not a cut.
        server.wait_line(r"tunnel from 127\.0\.0\.1:\d+: closed by the peer")

    def test_go_client_chacha20_poly1305_echo_as_the_keys_user(self):
        self.client_echo("chacha20-poly1305")

    @unittest.skipUnless(ft.aes_ni(), "no AES-NI: ferryd refuses AES-256-GCM here")
    def test_go_client_aes_256_gcm_echo_as_the_keys_user(self):
        self.client_echo("aes-256-gcm")

    def test_go_client_with_an_unauthorized_key_gets_nothing(self):
        echo = ft.EchoOrigin(self)
        server = self.start_server()
        other = os.path.join(self.dir, "other.key")
        keygen(other)
        t0 = time.monotonic()
        r = self.go_client(server.port, other, echo.port)
        took = time.monotonic() - t0
        self.assertEqual(r.returncode, EXIT_SILENT, (r.stdout, r.stderr))
        self.assertGreater(took, NEGOTIATE - 0.3)
        server.wait_line(r"refused, silently: key BLAKE2b:\S+ is not authorized")
        self.assertEqual(server.sessions(), [])
        self.assertEqual(echo.received, [])

    # --- ferryd's client against the Go server ----------------------------------------------

    def go_server(self, cipher):
        """The Go responder accepting gopher's key; a ferryd whose route goes through it."""
        proc = subprocess.Popen([self.peer, "-serve", "127.0.0.1:0", "-key", self.skey,
                                 "-client-key", self.gpub, "-timeout", "%ds" % (20 * ft.SLOW)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

        def stop():
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
            proc.stdout.close()
            proc.stderr.close()
        self.addCleanup(stop)
        first = proc.stdout.readline().decode().split()
        if first[:1] != ["listening"]:
            proc.kill()
            raise AssertionError("the Go server did not start: %s"
                                 % proc.stderr.read().decode())
        client = ft.start_ferryd(self, extra=[
            "parent gohome ferry 127.0.0.1:%s server-key %s key %s cipher %s timeout 5s"
            % (first[1], self.spub, self.gkey, cipher),
            "route via gohome",
        ])
        return proc, client

    def server_echo(self, cipher):
        proc, client = self.go_server(cipher)
        payload = os.urandom(300000)
        s = ft.connect("127.0.0.1", client.port)
        s.sendall(ft.socks5_greeting())
        self.assertEqual(ft.read_method(s), ft.METHOD_NOAUTH)
        # The Go server echoes itself and connects nowhere; a loopback address all the same,
        # so that nothing could leave the machine if it did.
        s.sendall(ft.socks5_request(ft.CMD_CONNECT, "127.0.0.7", 4242))
        self.assertEqual(ft.read_socks5_reply(s)[0], ft.REP_SUCCEEDED)
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        self.assertEqual(ft.recv_until_eof(s), payload)
        s.close()
        client.wait_sessions(1, pred=lambda l: l.get("via") == "gohome")
        client.wait_line(r"tunnel to parent gohome: up, %s" % cipher)
        client.stop()  # its CLOSE ends the Go server
        out, err = proc.communicate(timeout=10 * ft.SLOW)
        self.assertEqual(proc.returncode, 0, err.decode())
        self.assertEqual(out.decode().splitlines(), [
            "handshake ok, cipher %s" % cipher,
            "stream 1: OPEN 05 01 00 01 7f 00 00 07 10 92",
            "CLOSE after 1 streams, 300000 bytes echoed",
        ])

    def test_ferry_parent_through_the_go_server_chacha20_poly1305(self):
        self.server_echo("chacha20-poly1305")

    @unittest.skipUnless(ft.aes_ni(), "no AES-NI: ferryd refuses AES-256-GCM here")
    def test_ferry_parent_through_the_go_server_aes_256_gcm(self):
        self.server_echo("aes-256-gcm")


if __name__ == "__main__":
    ft.main()

"""HTTP requests in absolute form forwarded to the origin (GET http://host/path): real clients
(curl, wget, python's urllib and requests, git over smart HTTP, headless Chromium when
installed), bodies with Content-Length and chunked, hop-by-hop fields dropped, keep-alive to
other hosts on one client connection, pipelining, response framings, a streamed 50 MB body,
Basic proxy credentials, and failures as HTTP statuses."""

import hashlib
import http.server
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.request

import ferrytest as ft

CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
NAME = "www.ferry.test"
OTHER = "other.ferry.test"
HOP_BY_HOP = ("connection", "proxy-connection", "keep-alive", "te", "trailer", "upgrade",
              "proxy-authorization", "proxy-authenticate", "x-named-by-connection")


def pattern(n):
    """n bytes of a fixed pattern (not all one byte, so a misplaced block shows)."""
    block = bytes((i * 7 + i // 251) & 0xff for i in range(65536))
    return (block * (n // len(block) + 1))[:n]


class ForwardOrigin:
    """An HTTP/1.1 origin that records what it was sent. GET /hello..., POST|PUT /echo (the
    body's sha256 and length), GET /chunked?N (N pattern bytes, chunked), /close (a body ended
    by closing), /nocontent (204), /continue (a 100 first), /slow (answers after 3 s),
    /garbage (not HTTP)."""

    def __init__(self, testcase, name="a"):
        origin = self
        self.name = name
        self.requests = []  # (method, path, [(field, value)], body length)
        self.versions = []  # the request line's version, one per request

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()
                self.request.settimeout(ft.IO_TIMEOUT)

            def read_body(self):
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    data = bytearray()
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return bytes(data)
                        data += self.rfile.read(size)
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length", "0")))

            def reply(self, status, body, fields=()):
                self.send_response(status)
                for k, v in fields:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def handle_any(self):
                body = self.read_body() if self.command in ("POST", "PUT") else b""
                origin.requests.append((self.command, self.path, list(self.headers.items()),
                                        len(body)))
                origin.versions.append(self.request_version)
                p = self.path
                if p.startswith("/echo"):
                    self.reply(200, ("%s %d" % (hashlib.sha256(body).hexdigest(),
                                                len(body))).encode())
                elif p.startswith("/chunked?"):
                    n = int(p.split("?")[1])
                    data = pattern(n)
                    self.send_response(200)
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for i in range(0, n, 1 << 16):
                        piece = data[i:i + (1 << 16)]
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                    self.wfile.write(b"0\r\nX-Trailer: done\r\n\r\n")
                elif p == "/close":
                    self.send_response(200)
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(b"until the end")
                    self.close_connection = True
                elif p == "/nocontent":
                    self.send_response(204)
                    self.end_headers()
                elif p == "/continue":
                    self.send_response_only(100)
                    self.end_headers()
                    self.reply(200, b"after 100")
                elif p == "/slow":
                    time.sleep(3)
                    self.reply(200, b"late")
                elif p == "/garbage":
                    self.wfile.write(b"NOT HTTP AT ALL\r\n\r\n")
                    self.close_connection = True
                else:
                    self.reply(200, ("%s %s %s" % (origin.name, self.command, p)).encode(),
                                [("Keep-Alive", "timeout=5"), ("Connection", "Keep-Alive")])

            do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = handle_any

            def log_message(self, fmt, *args):
                pass

        cls = type("Fwd", (http.server.ThreadingHTTPServer,), {"request_queue_size": 64})
        self.server = cls(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        t = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                             daemon=True)
        t.start()

        def stop():
            self.server.shutdown()
            self.server.server_close()
            t.join(5)

        testcase.addCleanup(stop)

    def url(self, path, host="127.0.0.1"):
        return "http://%s:%d%s" % (host, self.port, path)

    def fields(self, i=-1):
        return {k.lower(): v for k, v in self.requests[i][2]}


def read_response(s, buf=b"", head_request=False):
    """One response from s (Content-Length, chunked or until EOF): (head, body, rest)."""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            raise AssertionError("EOF inside a response head: %r" % buf)
        buf += chunk
    head, _, buf = buf.partition(b"\r\n\r\n")
    head = head.decode("latin-1")
    fields = {l.split(":", 1)[0].lower(): l.split(":", 1)[1].strip()
              for l in head.split("\r\n")[1:]}
    status = int(head.split()[1])
    if head_request or status in (204, 304) or status < 200:
        return head, b"", buf
    if "content-length" in fields:
        n = int(fields["content-length"])
        while len(buf) < n:
            chunk = s.recv(65536)
            if not chunk:
                raise AssertionError("EOF inside a body")
            buf += chunk
        return head, buf[:n], buf[n:]
    if fields.get("transfer-encoding") == "chunked":
        body = bytearray()
        while True:
            while b"\r\n" not in buf:
                buf += s.recv(65536)
            line, _, buf = buf.partition(b"\r\n")
            size = int(line.split(b";")[0], 16)
            if size == 0:
                while b"\r\n\r\n" not in b"\r\n" + buf:
                    buf += s.recv(65536)
                _, _, buf = (b"\r\n" + buf).partition(b"\r\n\r\n")
                return head, bytes(body), buf
            while len(buf) < size + 2:
                buf += s.recv(65536)
            body += buf[:size]
            buf = buf[size + 2:]
    return head, buf + ft.recv_until_eof(s), b""


class HTTPForwardTest(unittest.TestCase):
    def setUp(self):
        self.origin = ForwardOrigin(self, "a")
        self.dns = ft.DNSServer(self)
        self.dns.add(NAME, a=["127.0.0.1"], ttl=60)
        self.dns.add(OTHER, a=["127.0.0.1"], ttl=60)

    def ferry(self, extra=(), **kw):
        return ft.start_ferryd(self, dns=self.dns, extra=list(extra), **kw)

    def proxy_url(self, ferry, user=None):
        host, port = ferry.addr()
        return "http://%s%s:%d" % (user + "@" if user else "", host, port)

    def curl(self, ferry, *args, user=None):
        argv = ["curl", "-sS", "--max-time", "%g" % (30 * ft.SLOW), "-x", self.proxy_url(ferry)]
        if user is not None:
            argv += ["--proxy-user", user]
        return subprocess.run(argv + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              timeout=60 * ft.SLOW, env=CLEAN_ENV)

    def test_curl_get_by_name_in_origin_form_with_host_via_and_one_access_line(self):
        ferry = self.ferry()
        r = self.curl(ferry, self.origin.url("/hello?x=1", NAME))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, b"a GET /hello?x=1")
        method, path, _, _ = self.origin.requests[-1]
        self.assertEqual((method, path), ("GET", "/hello?x=1"))
        f = self.origin.fields()
        self.assertEqual(f["host"], "%s:%d" % (NAME, self.origin.port))
        self.assertIn("ferry", f["via"])
        self.assertEqual(f["connection"], "close")  # ferry's own, to the origin
        self.assertNotIn("proxy-connection", f)
        s = ferry.wait_sessions(1)[-1]
        self.assertEqual(s.get("cmd"), "http-forward", s)
        self.assertEqual(s.get("method"), "GET", s)
        self.assertEqual(s.get("status"), "200", s)
        self.assertEqual(s.get("target"), "%s:%d" % (NAME, self.origin.port), s)
        self.assertEqual(s.get("reply"), "succeeded", s)
        self.assertGreater(int(s.get("down")), len(r.stdout))

    def test_hop_by_hop_fields_and_those_connection_names_are_dropped(self):
        ferry = self.ferry()
        with ft.connect(*ferry.addr()) as s:
            s.sendall(("GET %s HTTP/1.1\r\nHost: wrong.example\r\n"
                       "Connection: keep-alive, X-Named-By-Connection\r\n"
                       "X-Named-By-Connection: secret\r\nKeep-Alive: timeout=9\r\n"
                       "TE: trailers\r\nTrailer: X-T\r\nUpgrade: websocket\r\n"
                       "Proxy-Connection: keep-alive\r\nX-End-To-End: kept\r\n\r\n"
                       % self.origin.url("/h")).encode())
            head, body, _ = read_response(s)
        self.assertTrue(head.startswith("HTTP/1.1 200 "), head)
        self.assertEqual(body, b"a GET /h")
        # The origin's own hop-by-hop fields do not reach the client either.
        self.assertNotIn("Keep-Alive:", head)
        self.assertIn("Via: 1.1 ferry", head)
        f = self.origin.fields()
        self.assertEqual(f["x-end-to-end"], "kept")
        self.assertEqual(f["host"], "127.0.0.1:%d" % self.origin.port)
        for name in HOP_BY_HOP:
            if name != "connection":
                self.assertNotIn(name, f, f)

    def test_curl_post_with_length_and_chunked_upload_reach_the_origin_whole(self):
        ferry = self.ferry()
        data = os.urandom(3 * 1024 * 1024 + 17)
        with tempfile.NamedTemporaryFile() as tmp:
            tmp.write(data)
            tmp.flush()
            expect = ("%s %d" % (hashlib.sha256(data).hexdigest(), len(data))).encode()
            r = self.curl(ferry, "--data-binary", "@" + tmp.name, self.origin.url("/echo"))
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stdout, expect)
            self.assertEqual(self.origin.fields().get("content-length"), str(len(data)))
            r = self.curl(ferry, "-H", "Transfer-Encoding: chunked", "--data-binary",
                          "@" + tmp.name, self.origin.url("/echo"))
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stdout, expect)
            self.assertEqual(self.origin.fields().get("transfer-encoding"), "chunked")
            r = self.curl(ferry, "-X", "PUT", "--data-binary", "small", self.origin.url("/echo"))
            self.assertEqual(r.stdout, ("%s 5" % hashlib.sha256(b"small").hexdigest()).encode())
        methods = [s.get("method") for s in ferry.wait_sessions(3)]
        self.assertEqual(methods, ["POST", "POST", "PUT"])

    def test_wget_urllib_and_requests_with_http_proxy(self):
        ferry = self.ferry()
        env = dict(CLEAN_ENV, http_proxy=self.proxy_url(ferry))
        r = subprocess.run(["wget", "-q", "-O", "-", "--tries=1",
                            "--timeout=%g" % (10 * ft.SLOW), self.origin.url("/wget", NAME)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                           timeout=30 * ft.SLOW)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, b"a GET /wget")

        opener = urllib.request.build_opener(urllib.request.ProxyHandler(
            {"http": self.proxy_url(ferry)}))
        with opener.open(self.origin.url("/urllib", NAME), timeout=10 * ft.SLOW) as resp:
            self.assertEqual(resp.read(), b"a GET /urllib")
        req = urllib.request.Request(self.origin.url("/echo"), data=b"x" * 1000, method="POST")
        with opener.open(req, timeout=10 * ft.SLOW) as resp:
            self.assertTrue(resp.read().endswith(b" 1000"))

        code = ("import requests, sys\n"
                "p = {'http': sys.argv[1]}\n"
                "with requests.Session() as s:\n"
                "    for path in ('/r1', '/r2'):\n"
                "        r = s.get(sys.argv[2] + path, proxies=p, timeout=%g)\n"
                "        sys.stdout.write(r.text + '|')\n"
                "    r = s.post(sys.argv[2] + '/echo', data=iter([b'ab', b'cd']), proxies=p)\n"
                "    sys.stdout.write(r.text)\n" % (10 * ft.SLOW))
        r = subprocess.run(["/usr/bin/python3", "-c", code, self.proxy_url(ferry),
                            "http://%s:%d" % (NAME, self.origin.port)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=CLEAN_ENV,
                           timeout=30 * ft.SLOW)
        if b"No module named 'requests'" in r.stderr:
            self.skipTest("python3-requests is not installed")
        self.assertEqual(r.returncode, 0, r.stderr)
        # A generator body goes chunked.
        self.assertEqual(r.stdout.decode(), "a GET /r1|a GET /r2|%s 4"
                         % hashlib.sha256(b"abcd").hexdigest())
        self.assertEqual(self.origin.fields().get("transfer-encoding"), "chunked")

    def test_basic_credentials_right_wrong_and_missing(self):
        users = ft.make_users_file(self, {"alice": "correct horse"})
        # Under valgrind one Argon2id check takes seconds: the negotiation deadline scales.
        ferry = self.ferry(auth="password", users=users,
                           extra=["timeout negotiate %ds" % int(10 * ft.SLOW)])
        r = self.curl(ferry, self.origin.url("/auth"), user="alice:correct horse")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, b"a GET /auth")
        self.assertNotIn("proxy-authorization", self.origin.fields())
        for user in ("alice:wrong", None):
            r = self.curl(ferry, "-o", "/dev/null", "-w", "%{http_code}", self.origin.url("/x"),
                          user=user)
            self.assertEqual(r.stdout, b"407", (user, r.stderr))
        with ft.connect(*ferry.addr()) as s:
            s.sendall(("GET %s HTTP/1.1\r\n\r\n" % self.origin.url("/x")).encode())
            head, _, _ = read_response(s)
        self.assertTrue(head.startswith("HTTP/1.1 407 "), head)
        self.assertIn('Proxy-Authenticate: Basic realm="ferry"', head)
        self.assertEqual([p for _, p, _, _ in self.origin.requests], ["/auth"])
        lines = ferry.wait_sessions(4)
        self.assertEqual(lines[0].get("user"), "alice", lines[0])

    def test_pipelined_requests_to_two_origins_over_one_connection(self):
        other = ForwardOrigin(self, "b")
        ferry = self.ferry()
        reqs = (("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % self.origin.url("/one", NAME))
                + ("POST %s HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc" % other.url("/echo", OTHER))
                + ("HEAD %s HTTP/1.1\r\n\r\n" % self.origin.url("/three"))
                + ("GET %s HTTP/1.1\r\nConnection: close\r\n\r\n" % other.url("/four")))
        with ft.connect(*ferry.addr()) as s:
            s.sendall(reqs.encode())
            h1, b1, rest = read_response(s)
            h2, b2, rest = read_response(s, rest)
            h3, b3, rest = read_response(s, rest, head_request=True)
            h4, b4, rest = read_response(s, rest)
            self.assertEqual(rest + ft.recv_until_eof(s), b"")  # closed after the fourth
        self.assertEqual(b1, b"a GET /one")
        self.assertEqual(b2, ("%s 3" % hashlib.sha256(b"abc").hexdigest()).encode())
        self.assertIn("Content-Length: 13", h3)
        self.assertEqual(b3, b"")
        self.assertEqual(b4, b"b GET /four")
        self.assertIn("Connection: close", h4)
        lines = ferry.wait_sessions(4)
        self.assertEqual([(l.get("method"), l.get("target")) for l in lines],
                         [("GET", "%s:%d" % (NAME, self.origin.port)),
                          ("POST", "%s:%d" % (OTHER, other.port)),
                          ("HEAD", "127.0.0.1:%d" % self.origin.port),
                          ("GET", "127.0.0.1:%d" % other.port)])
        self.assertEqual(len({l.get("client") for l in lines}), 1)
        # A new origin connection per request.
        self.assertEqual(len(self.origin.requests), 2)
        self.assertEqual(len(other.requests), 2)

    def test_curl_keeps_the_connection_across_hosts(self):
        other = ForwardOrigin(self, "b")
        ferry = self.ferry()
        r = self.curl(ferry, "-w", "|%{num_connects}\n", self.origin.url("/k1"),
                      other.url("/k2", OTHER))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, b"a GET /k1|1\nb GET /k2|0\n")
        lines = ferry.wait_sessions(2)
        self.assertEqual(lines[0].get("client"), lines[1].get("client"))

    def test_response_framings_close_delimited_204_and_interim_100(self):
        ferry = self.ferry()
        with ft.connect(*ferry.addr()) as s:
            s.sendall(("GET %s HTTP/1.1\r\n\r\n" % self.origin.url("/nocontent")).encode())
            h, b, rest = read_response(s)
            self.assertTrue(h.startswith("HTTP/1.1 204 "), h)
            s.sendall(("GET %s HTTP/1.1\r\n\r\n" % self.origin.url("/continue")).encode())
            h, b, rest = read_response(s, rest)
            self.assertTrue(h.startswith("HTTP/1.1 100 "), h)
            h, b, rest = read_response(s, rest)
            self.assertEqual(b, b"after 100")
            s.sendall(("GET %s HTTP/1.1\r\n\r\n" % self.origin.url("/close")).encode())
            h, b, rest = read_response(s, rest)
            self.assertIn("Connection: close", h)
            self.assertEqual(b, b"until the end")
        statuses = [l.get("status") for l in ferry.wait_sessions(3)]
        self.assertEqual(statuses, ["204", "200", "200"])
        # An HTTP/1.0 client: the connection closes after the response.
        with ft.connect(*ferry.addr()) as s:
            s.sendall(("GET %s HTTP/1.0\r\n\r\n" % self.origin.url("/ten")).encode())
            data = ft.recv_until_eof(s)
        self.assertTrue(data.endswith(b"a GET /ten"), data)
        # ... and the origin was asked in HTTP/1.0 too (so it never answers chunked).
        self.assertEqual(self.origin.versions[-1], "HTTP/1.0")
        self.assertEqual(self.origin.versions[0], "HTTP/1.1")

    def test_streamed_chunked_response_is_byte_exact(self):
        ferry = self.ferry()
        n = (5 if ft.UNDER_VALGRIND else 50) * 1024 * 1024 + 3
        r = subprocess.run(["curl", "-sS", "--max-time", "%g" % (60 * ft.SLOW), "-x",
                            self.proxy_url(ferry), self.origin.url("/chunked?%d" % n)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=CLEAN_ENV,
                           timeout=120 * ft.SLOW)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len(r.stdout), n)
        self.assertEqual(hashlib.sha256(r.stdout).digest(), hashlib.sha256(pattern(n)).digest())
        s = ferry.wait_sessions(1)[-1]
        self.assertGreater(int(s.get("down")), n)

    def test_bandwidth_limit_paces_a_forwarded_download_without_spinning(self):
        ferry = self.ferry(extra=["limit bandwidth-per-client 1M"])
        n = 3 * 1024 * 1024
        cpu = ft.cpu_seconds(ferry.proc.pid)
        start = time.monotonic()
        r = self.curl(ferry, "-o", "/dev/null", "-w", "%{size_download}",
                      self.origin.url("/chunked?%d" % n))
        took = time.monotonic() - start
        self.assertEqual(r.stdout, str(n).encode(), r.stderr)
        # 3 MiB at 1 MiB/s (a burst of a tenth ahead): over two seconds, and a timer, not a loop.
        self.assertGreater(took, 2.0)
        cpu = ft.cpu_seconds(ferry.proc.pid) - cpu
        if not ft.UNDER_VALGRIND:
            self.assertLess(cpu, 1.0)

    def test_failures_answer_with_statuses(self):
        ferry = self.ferry(extra=["timeout idle 1", "request block to 127.0.0.2",
                                  "request pass"])
        cases = [
            (b"GET https://%s/ HTTP/1.1\r\n\r\n" % NAME.encode(), "501", b"CONNECT"),
            (b"GET /origin-form HTTP/1.1\r\nHost: x\r\n\r\n", "400", b""),
            (b"GET http://h/ HTTP/1.1\r\nX: " + b"a" * 9000 + b"\r\n\r\n", "431", b""),
            (b"GET http://h/ HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked"
             b"\r\n\r\n", "400", b""),
            (b"GET http://127.0.0.2/ HTTP/1.1\r\n\r\n", "403", b""),
            (b"GET http://127.0.0.1:%d/ HTTP/1.1\r\n\r\n" % ft.closed_port(), "502", b""),
            (b"GET http://nx.ferry.test/ HTTP/1.1\r\n\r\n", "502", b""),
            (("GET %s HTTP/1.1\r\n\r\n" % self.origin.url("/garbage")).encode(), "502", b""),
            (("GET %s HTTP/1.1\r\n\r\n" % self.origin.url("/slow")).encode(), "504", b""),
            (("POST %s HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n"
              % self.origin.url("/echo")).encode(), "400", b""),
        ]
        for msg, status, text in cases:
            with ft.connect(*ferry.addr()) as s:
                s.sendall(msg)
                data = ft.recv_until_eof(s)
            self.assertTrue(data.startswith(b"HTTP/1.1 %s " % status.encode()), (msg[:60], data))
            self.assertIn(text, data)
        lines = ferry.wait_sessions(7)
        refused = [l for l in lines if l.get("target", "").startswith("127.0.0.2")]
        self.assertEqual(refused[0].get("rule"), "request:1", refused)

    def test_git_clone_over_http_through_the_proxy(self):
        if shutil.which("git") is None:
            self.skipTest("git is not installed")
        root = tempfile.mkdtemp(prefix="ferry-git-")
        # http.server runs CGI scripts as nobody when started as root: it must read the tree.
        os.chmod(root, 0o755)
        self.addCleanup(shutil.rmtree, root, True)
        env = dict(CLEAN_ENV, GIT_CONFIG_NOSYSTEM="1", HOME=root,
                   GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@x", GIT_COMMITTER_NAME="t",
                   GIT_COMMITTER_EMAIL="t@x")
        work = os.path.join(root, "work")
        repo = os.path.join(root, "srv", "repo.git")

        def git(*args, cwd=None):
            r = subprocess.run(["git"] + list(args), cwd=cwd, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=60 * ft.SLOW)
            self.assertEqual(r.returncode, 0, r.stderr)
            return r.stdout

        git("init", "-q", work)
        blob = os.urandom(200000)
        with open(os.path.join(work, "data.bin"), "wb") as f:
            f.write(blob)
        git("add", "data.bin", cwd=work)
        git("commit", "-q", "-m", "one", cwd=work)
        git("clone", "-q", "--bare", work, repo)
        # git http-backend as a CGI script of python's http.server (HTTP/1.0, close-delimited).
        cgi = os.path.join(root, "srv", "cgi-bin")
        os.makedirs(cgi)
        script = os.path.join(cgi, "git")
        with open(script, "w") as f:
            f.write("#!/bin/sh\nGIT_PROJECT_ROOT=%s GIT_HTTP_EXPORT_ALL=1 exec git "
                    "-c safe.directory='*' http-backend\n" % os.path.join(root, "srv"))
        os.chmod(script, 0o755)
        handler = lambda *a, **kw: http.server.CGIHTTPRequestHandler(  # noqa: E731
            *a, directory=os.path.join(root, "srv"), **kw)
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        srv.daemon_threads = True
        t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                             daemon=True)
        t.start()
        self.addCleanup(lambda: (srv.shutdown(), srv.server_close(), t.join(5)))
        ferry = self.ferry()
        clone = os.path.join(root, "clone")
        git("-c", "http.proxy=" + self.proxy_url(ferry), "clone", "-q",
            "http://%s:%d/cgi-bin/git/repo.git" % (NAME, srv.server_address[1]), clone)
        with open(os.path.join(clone, "data.bin"), "rb") as f:
            self.assertEqual(f.read(), blob)
        methods = {l.get("method") for l in ferry.wait_sessions(2)}
        self.assertEqual(methods, {"GET", "POST"})

    def test_headless_chromium_with_proxy_server(self):
        chromium = shutil.which("chromium")
        if chromium is None:
            self.skipTest("chromium is not installed (optional: bootstrap's OPTIONAL_TEST_PACKAGES)")
        ferry = self.ferry()
        profile = tempfile.mkdtemp(prefix="ferry-chromium-")
        self.addCleanup(shutil.rmtree, profile, True)
        # The name is resolved by ferry (the proxy), never by Chromium.
        r = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                            "--no-first-run", "--user-data-dir=" + profile,
                            "--disable-background-networking", "--disable-component-update",
                            "--disable-sync", "--no-default-browser-check",
                            "--proxy-server=" + self.proxy_url(ferry),
                            "--proxy-bypass-list=<-loopback>", "--dump-dom",
                            self.origin.url("/chromium", NAME)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=CLEAN_ENV,
                           timeout=120 * ft.SLOW)
        self.assertIn(b"a GET /chromium", r.stdout, r.stderr[-2000:])
        self.assertTrue(any(l.get("method") == "GET" and l.get("target", "").startswith(NAME)
                            for l in ferry.wait_sessions(1)))


if __name__ == "__main__":
    ft.main()

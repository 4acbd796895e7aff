"""Shared helpers for ferry's integration tests.

Everything a test needs on loopback lives here: starting the built ferryd with a generated
config, HTTP/echo/bulk origins, a small DNS server, raw SOCKS4/5 client helpers and users files
made with ferry-passwd. Every socket has a timeout and every process or server started here is
stopped by the test's cleanups, so a broken daemon makes a test fail, never hang.
"""

import hashlib
import http.server
import ipaddress
import os
import re
import select
import shlex
import shutil
import signal
import socket
import socketserver
import struct
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS_DIR = os.environ.get("FERRY_TESTS_DIR", HERE)
_DEFAULT_BUILD = os.path.join(os.path.dirname(os.path.dirname(HERE)), "build")
FERRYD = os.environ.get("FERRYD", os.path.join(_DEFAULT_BUILD, "src", "ferryd"))
FERRY_PASSWD = os.environ.get("FERRY_PASSWD", os.path.join(_DEFAULT_BUILD, "src", "ferry-passwd"))
SRCDIR = os.path.dirname(os.path.dirname(os.path.abspath(TESTS_DIR)))

# A command put before ferryd wherever the tests start it, split as a shell would, for example
# FERRYD_WRAPPER='valgrind --error-exitcode=99 --log-file=vg/%p.log' (make check-valgrind).
FERRYD_WRAPPER = shlex.split(os.environ.get("FERRYD_WRAPPER", ""))
UNDER_VALGRIND = "valgrind" in os.environ.get("FERRYD_WRAPPER", "")

# How many times longer ferryd may take for anything: valgrind runs it 20 to 50 times slower
# (one thread at a time). The helpers' waits are multiplied by it; FERRY_SLOW overrides it.
SLOW = float(os.environ.get("FERRY_SLOW", "10" if UNDER_VALGRIND else "1"))

# Default timeout for every socket operation in the tests.
IO_TIMEOUT = 10.0 * SLOW


def ferryd_argv(*args):
    """The command line that runs ferryd with args (behind FERRYD_WRAPPER)."""
    return FERRYD_WRAPPER + [FERRYD] + list(args)

# SOCKS5 reply codes (RFC 1928 section 6).
REP_SUCCEEDED = 0x00
REP_GENERAL_FAILURE = 0x01
REP_NOT_ALLOWED = 0x02
REP_NETWORK_UNREACHABLE = 0x03
REP_HOST_UNREACHABLE = 0x04
REP_CONNECTION_REFUSED = 0x05
REP_TTL_EXPIRED = 0x06
REP_COMMAND_NOT_SUPPORTED = 0x07
REP_ADDRESS_TYPE_NOT_SUPPORTED = 0x08

CMD_CONNECT = 0x01
CMD_BIND = 0x02
CMD_UDP_ASSOCIATE = 0x03

METHOD_NOAUTH = 0x00
METHOD_USERPASS = 0x02
METHOD_NONE = 0xFF

SOCKS4_GRANTED = 90
SOCKS4_REJECTED = 91


def log(msg):
    """A line in the test's .log file."""
    sys.stderr.write("# %s\n" % msg)
    sys.stderr.flush()


def ipv6_available():
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    except OSError:
        return False
    try:
        s.bind(("::1", 0))
        return True
    except OSError:
        return False
    finally:
        s.close()


def free_port(host="127.0.0.1"):
    """A TCP port that nothing listens on right now (bound and released)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def closed_port(host="127.0.0.1"):
    """A port where a connect to host is refused (checked)."""
    for _ in range(20):
        port = free_port(host)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            try:
                s.connect((host, port))
            except ConnectionRefusedError:
                return port
            except OSError:
                continue
    raise RuntimeError("no closed port found on %s" % host)


def wait_listener_closed(addr, timeout):
    """Poll addr until connects are refused; returns the monotonic time they were.
    A connect that landed in the backlog as the listener closed is reset instead:
    that is not a refusal yet, so try again. Fails (AssertionError) after timeout."""
    deadline = time.monotonic() + timeout * SLOW
    while True:
        try:
            socket.create_connection(addr, timeout=1).close()
        except ConnectionRefusedError:
            return time.monotonic()
        except (ConnectionResetError, ConnectionAbortedError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError("listener at %s:%d still accepting" % addr[:2])
        time.sleep(0.02)


def wait_until(pred, timeout=5.0):
    """Poll pred until it is true or timeout passes; returns its last value."""
    deadline = time.monotonic() + timeout * SLOW
    while True:
        v = pred()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(0.01)


def host_for_url(host):
    return "[%s]" % host if ":" in host else host


# --- ferryd ---------------------------------------------------------------------------------

LISTEN_RE = re.compile(r"listening on (\[[0-9A-Fa-f:.]+\]|[0-9.]+):(\d+)")
SESSION_RE = re.compile(r"\bsession\b(.*)$")
FIELD_RE = re.compile(r"(\w+)=(\S+)")


def parse_session_line(line):
    """The key=value fields of an access line, or None for other lines."""
    m = SESSION_RE.search(line)
    if not m or "client=" not in line:
        return None
    return dict(FIELD_RE.findall(m.group(1)))


class Ferryd:
    """The built ferryd, started with a generated config in a temporary directory."""

    def __init__(self, testcase, config, listeners=None, args=(), wait=True, start_timeout=10.0,
                 env=None, prefix=(), pass_fds=()):
        """config None: no file (no -f), only args. prefix: a command ferryd runs under
        (systemd-socket-activate ...), before FERRYD_WRAPPER."""
        self.tmpdir = tempfile.mkdtemp(prefix="ferrytest-")
        self.conf_path = os.path.join(self.tmpdir, "ferryd.conf")
        if config is None:
            self.conf_path = None
            config = ""
        else:
            with open(self.conf_path, "w") as f:
                f.write(config)
        if listeners is None:
            listeners = sum(1 for l in config.splitlines() if l.strip().startswith("listen "))
        self.expected_listeners = listeners
        self.expected_rc = 0  # the exit status stop() accepts (a test may expect a failure)
        self.lines = []
        self.cond = threading.Condition()
        self.addrs = []
        if not os.access(FERRYD, os.X_OK):
            raise AssertionError("ferryd not built: %s" % FERRYD)
        conf_args = ("-f", self.conf_path) if self.conf_path is not None else ()
        self.proc = subprocess.Popen(
            list(prefix) + ferryd_argv(*(conf_args + tuple(args))),
            pass_fds=pass_fds,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=None if env is None else dict(os.environ, **env),
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        log("ferryd[%d] started for %s" % (self.proc.pid, testcase.id()))
        testcase.addCleanup(self.stop)
        if wait:
            self.wait_listening(start_timeout)

    def _read(self):
        for raw in iter(self.proc.stderr.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            sys.stderr.write("ferryd[%d]: %s\n" % (self.proc.pid, line))
            with self.cond:
                self.lines.append(line)
                m = LISTEN_RE.search(line)
                if m:
                    self.addrs.append((m.group(1).strip("[]"), int(m.group(2))))
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def wait_listening(self, timeout=10.0):
        deadline = time.monotonic() + timeout * SLOW
        with self.cond:
            while len(self.addrs) < self.expected_listeners:
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self.reader.is_alive()):
                    raise AssertionError(
                        "ferryd did not report %d listeners (rc=%s); stderr:\n%s"
                        % (self.expected_listeners, self.proc.poll(), "\n".join(self.lines))
                    )
                self.cond.wait(min(left, 0.1))

    @property
    def host(self):
        return self.addrs[0][0]

    @property
    def port(self):
        return self.addrs[0][1]

    def addr(self, family=None):
        """(host, port) of the first listener, optionally of one address family."""
        for host, port in self.addrs:
            if family is None or (":" in host) == (family == socket.AF_INET6):
                return host, port
        raise AssertionError("no listener of family %s in %s" % (family, self.addrs))

    def wait_line(self, regex, timeout=5.0, start=0):
        """The first stderr line from index start on matching regex; fails after timeout."""
        pat = re.compile(regex)
        deadline = time.monotonic() + timeout * SLOW
        with self.cond:
            while True:
                for line in self.lines[start:]:
                    m = pat.search(line)
                    if m:
                        return m
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        "no ferryd line matching %r in %.1fs; stderr:\n%s"
                        % (regex, timeout, "\n".join(self.lines))
                    )
                self.cond.wait(min(left, 0.1))

    def sessions(self):
        with self.cond:
            return [s for s in map(parse_session_line, self.lines) if s is not None]

    def wait_sessions(self, n, timeout=5.0, pred=None):
        """Wait for at least n access lines (matching pred); returns them."""
        deadline = time.monotonic() + timeout * SLOW
        while True:
            found = [s for s in self.sessions() if pred is None or pred(s)]
            if len(found) >= n:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(
                    "expected %d access lines, found %d; stderr:\n%s"
                    % (n, len(found), "\n".join(self.lines))
                )
            time.sleep(0.02)

    def stop(self, timeout=5.0):
        """SIGTERM, then SIGKILL after timeout. Fails unless ferryd exited 0 without a
        sanitizer report (a test that expects another ending stops the process itself)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout * SLOW)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                self.reader.join(5)
                raise AssertionError("ferryd ignored SIGTERM for %.0fs" % (timeout * SLOW))
        self.reader.join(5)
        if self.proc.stderr:
            self.proc.stderr.close()
        rc = self.proc.returncode
        with self.cond:
            text = "\n".join(self.lines)
        if rc != self.expected_rc or "runtime error:" in text or "Sanitizer" in text:
            hint = ""
            if UNDER_VALGRIND:
                hint = " (valgrind's report is in the log file of process %d)" % self.proc.pid
            raise AssertionError("ferryd exited with status %s%s; stderr:\n%s"
                                 % (rc, hint, text))
        return rc


def make_config(listen=("127.0.0.1:0",), dns=None, extra=(), auth=None, users=None):
    """A ferryd.conf text. dns is a DNSServer (or None: point at a closed loopback port)."""
    lines = ["# generated by ferrytest.py"]
    for l in listen:
        lines.append("listen %s" % l)
    lines.append("log stderr")
    lines.append("log-level info")
    # One worker unless a test asks for more: caches and lazily opened sockets are per worker,
    # and tests count queries and file descriptors. test_workers.py runs several.
    if not any(e.startswith("workers ") for e in extra):
        lines.append("workers 1")
    if dns is not None:
        lines.append("resolver %s" % dns.spec)
    else:
        # Never the machine's resolver: nothing answers here.
        lines.append("resolver 127.0.0.1:%d" % closed_port())
    if auth:
        lines.append("auth %s" % auth)
    # With a password method ferryd trusts no client by default (a local forwarder makes every
    # client loopback); the tests reach their origins on loopback, so they say so.
    methods = (auth or "").split() + [w for e in extra if e.startswith("auth ")
                                      for w in e.split()[1:]]
    if "password" in methods and not any(e.startswith("trusted-clients") for e in extra):
        lines.append("trusted-clients 127.0.0.0/8 ::1")
    if users:
        lines.append("users %s" % users)
    lines.extend(extra)
    return "\n".join(lines) + "\n"


def start_ferryd(testcase, listen=("127.0.0.1:0",), dns=None, extra=(), auth=None, users=None,
                 **kw):
    return Ferryd(testcase, make_config(listen, dns, extra, auth, users), **kw)


def make_users_file(testcase, users, directory=None):
    """A users file written by ferry-passwd; users maps names to passwords. testcase may be
    None (from setUpClass)."""
    if directory is None:
        directory = tempfile.mkdtemp(prefix="ferryusers-")
    path = os.path.join(directory, "users")
    if not os.access(FERRY_PASSWD, os.X_OK):
        raise AssertionError("ferry-passwd not built: %s" % FERRY_PASSWD)
    for name, password in users.items():
        r = subprocess.run(
            [FERRY_PASSWD, path, name],
            input=(password + "\n").encode(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            timeout=60,
        )
        if r.returncode != 0:
            raise AssertionError("ferry-passwd %s failed (%d): %r" % (name, r.returncode, r.stderr))
    with open(path) as f:
        text = f.read()
    for name in users:
        if not re.search(r"(?m)^%s:\$argon2id\$" % re.escape(name), text):
            raise AssertionError("no argon2id entry for %s in %r" % (name, text))
    return path


# --- origins --------------------------------------------------------------------------------

class _TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False
    request_queue_size = 128


class _TCPServer6(_TCPServer):
    address_family = socket.AF_INET6


def _start_server(testcase, host, handler):
    cls = _TCPServer6 if ":" in host else _TCPServer
    srv = cls((host, 0), handler)
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()

    def stop():
        srv.shutdown()
        srv.server_close()
        t.join(5)

    testcase.addCleanup(stop)
    return srv


class TCPOrigin:
    """A TCP server running handler(sock) per connection (sock has a timeout)."""

    def __init__(self, testcase, handler, host="127.0.0.1"):
        origin = self
        self.peers = []
        self.errors = []

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                self.request.settimeout(IO_TIMEOUT)
                origin.peers.append(self.request.getpeername()[:2])
                try:
                    handler(self.request)
                except Exception as e:  # the test sees it in origin.errors
                    origin.errors.append(e)

        self.server = _start_server(testcase, host, Handler)
        self.host = host
        self.port = self.server.server_address[1]


class HTTPOrigin:
    """An HTTP server: GET /PATH answers "origin PATH\\n" plus the client's address in a header."""

    def __init__(self, testcase, host="127.0.0.1"):
        origin = self
        self.peers = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def setup(self):
                super().setup()
                self.request.settimeout(IO_TIMEOUT)

            def do_GET(self):
                origin.peers.append(self.client_address[:2])
                body = origin.body(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("X-Peer", "%s:%d" % self.client_address[:2])
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, fmt, *args):
                pass

        cls = type("HTTP", (http.server.ThreadingHTTPServer,), {"request_queue_size": 128})
        if ":" in host:
            cls = type("HTTP6", (cls,), {"address_family": socket.AF_INET6})
        self.server = cls((host, 0), Handler)
        self.server.daemon_threads = True
        self.host = host
        self.port = self.server.server_address[1]
        t = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                             daemon=True)
        t.start()

        def stop():
            self.server.shutdown()
            self.server.server_close()
            t.join(5)

        testcase.addCleanup(stop)

    @staticmethod
    def body(path):
        return ("origin %s\n" % path).encode()

    def url(self, path="/", host=None):
        return "http://%s:%d%s" % (host_for_url(host or self.host), self.port, path)


class EchoOrigin:
    """A TCP echo server: echoes until EOF, then half-closes. Records peers and bytes seen."""

    def __init__(self, testcase, host="127.0.0.1"):
        origin = self
        self.peers = []
        self.received = []

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                s = self.request
                s.settimeout(IO_TIMEOUT)
                origin.peers.append(s.getpeername()[:2])
                got = bytearray()
                try:
                    while True:
                        data = s.recv(65536)
                        if not data:
                            break
                        got += data
                        s.sendall(data)
                except OSError:
                    pass
                # Recorded before the client can see our EOF.
                origin.received.append(bytes(got))
                try:
                    s.shutdown(socket.SHUT_WR)
                except OSError:
                    pass

        self.server = _start_server(testcase, host, Handler)
        self.host = host
        self.port = self.server.server_address[1]


class BulkOrigin:
    """Serves b"GET N\\n" with N bytes of data, and b"PUT\\n" + data-until-EOF with its sha256."""

    def __init__(self, testcase, data, host="127.0.0.1"):
        origin = self
        self.data = data
        self.results = []

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                s = self.request
                s.settimeout(30)
                f = s.makefile("rb")
                line = f.readline(64)
                if line.startswith(b"GET "):
                    n = int(line.split()[1])
                    try:
                        s.sendall(memoryview(origin.data)[:n])
                        s.shutdown(socket.SHUT_WR)
                    except OSError:  # the far end went away: a test that cuts transfers
                        origin.results.append(("GET cut", n))
                        return
                    origin.results.append(("GET", n))
                elif line.startswith(b"PUT"):
                    h = hashlib.sha256()
                    total = 0
                    # Whatever the buffered reader already holds, then the socket.
                    while True:
                        try:
                            chunk = f.read1(1 << 20)
                        except ConnectionResetError:  # cut: never taken for the whole
                            origin.results.append(("PUT reset", total))
                            return
                        if not chunk:
                            break
                        h.update(chunk)
                        total += len(chunk)
                    origin.results.append(("PUT", total))
                    s.sendall(("%s %d\n" % (h.hexdigest(), total)).encode())
                    s.shutdown(socket.SHUT_WR)
                f.close()

        self.server = _start_server(testcase, host, Handler)
        self.host = host
        self.port = self.server.server_address[1]


# --- DNS ------------------------------------------------------------------------------------

QTYPE_A = 1
QTYPE_AAAA = 28
QTYPE_PTR = 12
RCODE_NOERROR = 0
RCODE_SERVFAIL = 2
RCODE_NXDOMAIN = 3


class DNSServer:
    """A UDP DNS server on loopback that answers A/AAAA for configured names.

    Names not configured get NXDOMAIN. A name can instead be set to "servfail" or "silent"
    (the query is counted but never answered). Every query is recorded as (name, qtype).
    """

    def __init__(self, testcase, host="127.0.0.1"):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.host = host
        self.port = self.sock.getsockname()[1]
        self.spec = "%s:%d" % (host_for_url(host), self.port)
        self.records = {}
        self.ptrs = {}
        self.actions = {}
        self.delays = {}
        self.timers = []
        self.queries = []
        self.lock = threading.Lock()
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()
        testcase.addCleanup(self.stop)

    def add(self, name, a=(), aaaa=(), ttl=300):
        with self.lock:
            self.records[name.lower().rstrip(".")] = (list(a), list(aaaa), ttl)

    def add_ptr(self, ip, name, ttl=300):
        """Answer PTR queries for the address ip (its in-addr.arpa/ip6.arpa name) with name."""
        with self.lock:
            self.ptrs[ipaddress.ip_address(ip).reverse_pointer] = (name, ttl)

    def set_action(self, name, action, delay=0.0):
        """action: "servfail", "silent", "nxdomain", or "delay" (answer normally after delay
        seconds)."""
        assert action in ("servfail", "silent", "nxdomain", "delay")
        with self.lock:
            self.actions[name.lower().rstrip(".")] = action
            self.delays[name.lower().rstrip(".")] = delay

    def count(self, name=None):
        with self.lock:
            if name is None:
                return len(self.queries)
            name = name.lower().rstrip(".")
            return sum(1 for n, _ in self.queries if n == name)

    def stop(self):
        self.running = False
        self.thread.join(5)
        for t in self.timers:
            t.cancel()
        self.sock.close()

    def _serve(self):
        while self.running:
            try:
                r, _, _ = select.select([self.sock], [], [], 0.05)
                if not r:
                    continue
                msg, peer = self.sock.recvfrom(4096)
            except (OSError, ValueError):
                return
            try:
                reply, delay = self.handle(msg)
            except Exception as e:  # a malformed query: log it, answer nothing
                log("dns: bad query %r: %s" % (msg, e))
                continue
            if reply is None:
                continue
            if delay > 0:
                t = threading.Timer(delay, self._send, (reply, peer))
                t.daemon = True
                self.timers.append(t)
                t.start()
            else:
                self._send(reply, peer)

    def _send(self, reply, peer):
        try:
            self.sock.sendto(reply, peer)
        except OSError:
            pass

    def handle(self, msg):
        """(reply or None, delay in seconds) for one query."""
        qid, flags, qdcount = struct.unpack("!HHH", msg[:6])
        if qdcount != 1:
            return None, 0
        pos = 12
        labels = []
        while True:
            n = msg[pos]
            pos += 1
            if n == 0:
                break
            labels.append(msg[pos:pos + n].decode("ascii", "replace"))
            pos += n
        qtype, qclass = struct.unpack("!HH", msg[pos:pos + 4])
        question = msg[12:pos + 4]
        name = ".".join(labels).lower()
        with self.lock:
            self.queries.append((name, qtype))
            action = self.actions.get(name)
            delay = self.delays.get(name, 0.0) if action == "delay" else 0.0
            record = self.records.get(name)
            ptr = self.ptrs.get(name)
        if action == "silent":
            return None, 0
        answers = []
        rcode = RCODE_NOERROR
        if action == "servfail":
            rcode = RCODE_SERVFAIL
        elif action == "nxdomain" or (record is None and ptr is None):
            rcode = RCODE_NXDOMAIN
        elif ptr is not None:
            if qtype == QTYPE_PTR and qclass == 1:
                target, ttl = ptr
                rdata = b"".join(bytes([len(l)]) + l.encode() for l in target.split(".")) + b"\0"
                answers.append(struct.pack("!HHHIH", 0xC00C, QTYPE_PTR, 1, ttl, len(rdata)) + rdata)
        else:
            a, aaaa, ttl = record
            if qtype == QTYPE_A and qclass == 1:
                for ip in a:
                    answers.append(struct.pack("!HHHIH", 0xC00C, QTYPE_A, 1, ttl, 4)
                                   + socket.inet_pton(socket.AF_INET, ip))
            elif qtype == QTYPE_AAAA and qclass == 1:
                for ip in aaaa:
                    answers.append(struct.pack("!HHHIH", 0xC00C, QTYPE_AAAA, 1, ttl, 16)
                                   + socket.inet_pton(socket.AF_INET6, ip))
        rflags = 0x8000 | (flags & 0x7800) | 0x0400 | (flags & 0x0100) | 0x0080 | rcode
        header = struct.pack("!HHHHHH", qid, rflags, 1, len(answers), 0, 0)
        return header + question + b"".join(answers), delay


def dns_query(server, name, qtype=QTYPE_A, timeout=2.0):
    """Send one query to server (a DNSServer); returns (rcode, [addresses], [ttls]) or None."""
    qname = b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0"
    q = struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + qname + struct.pack("!HH", qtype, 1)
    family = socket.AF_INET6 if ":" in server.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(q, (server.host, server.port))
        try:
            resp = s.recv(4096)
        except socket.timeout:
            return None
    _, flags, _, ancount = struct.unpack("!HHHH", resp[:8])
    pos = 12 + len(qname) + 4
    addrs, ttls = [], []
    for _ in range(ancount):
        _, rtype, _, ttl, rdlen = struct.unpack("!HHHIH", resp[pos:pos + 12])
        rdata = resp[pos + 12:pos + 12 + rdlen]
        addrs.append(socket.inet_ntop(socket.AF_INET if rtype == QTYPE_A else socket.AF_INET6,
                                      rdata))
        ttls.append(ttl)
        pos += 12 + rdlen
    return flags & 0xF, addrs, ttls


# --- raw SOCKS clients ----------------------------------------------------------------------

def connect(host, port, timeout=IO_TIMEOUT, source=None):
    """A TCP connection to host:port, from the address source when given (e.g. 127.0.0.2)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        if source is not None:
            s.bind((source, 0))
        s.connect((host, port))
    except OSError:
        s.close()
        raise
    return s


def reset(s):
    """Close with an RST instead of a FIN (SO_LINGER with a zero timeout)."""
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def recv_exact(s, n):
    """Exactly n bytes; AssertionError on EOF (with what arrived)."""
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise AssertionError("EOF after %d of %d bytes: %r" % (len(buf), n, bytes(buf)))
        buf += chunk
    return bytes(buf)


def recv_until_eof(s, limit=1 << 30):
    buf = bytearray()
    while len(buf) < limit:
        chunk = s.recv(1 << 20)
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


def wait_closed(s, timeout):
    """Read until EOF or reset within timeout. Returns (closed, data, seconds waited)."""
    start = time.monotonic()
    data = bytearray()
    s.settimeout(timeout)
    try:
        while True:
            left = timeout - (time.monotonic() - start)
            if left <= 0:
                return False, bytes(data), time.monotonic() - start
            s.settimeout(left)
            chunk = s.recv(4096)
            if not chunk:
                return True, bytes(data), time.monotonic() - start
            data += chunk
    except (ConnectionResetError, BrokenPipeError):
        return True, bytes(data), time.monotonic() - start
    except socket.timeout:
        return False, bytes(data), time.monotonic() - start


def encode_dest5(host, port):
    """ATYP DST.ADDR DST.PORT for an IPv4/IPv6 literal or a name (bytes or str)."""
    if isinstance(host, str):
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            ip = None
        if ip is not None and ip.version == 4:
            return b"\x01" + ip.packed + struct.pack("!H", port)
        if ip is not None and ip.version == 6:
            return b"\x04" + ip.packed + struct.pack("!H", port)
        host = host.encode()
    return b"\x03" + bytes([len(host)]) + host + struct.pack("!H", port)


def socks5_greeting(methods=(METHOD_NOAUTH,)):
    return bytes([5, len(methods)]) + bytes(methods)


def socks5_userpass(user, password):
    u = user.encode() if isinstance(user, str) else user
    p = password.encode() if isinstance(password, str) else password
    return bytes([1, len(u)]) + u + bytes([len(p)]) + p


def socks5_request(cmd, host, port):
    return bytes([5, cmd, 0]) + encode_dest5(host, port)


def read_method(s):
    ver, method = recv_exact(s, 2)
    if ver != 5:
        raise AssertionError("method reply version %d" % ver)
    return method


def read_socks5_reply(s):
    """(REP, BND.ADDR as a string, BND.PORT); AssertionError when malformed."""
    head = recv_exact(s, 4)
    if head[0] != 5 or head[2] != 0:
        raise AssertionError("bad reply header %r" % head)
    atyp = head[3]
    if atyp == 1:
        addr = socket.inet_ntop(socket.AF_INET, recv_exact(s, 4))
    elif atyp == 4:
        addr = socket.inet_ntop(socket.AF_INET6, recv_exact(s, 16))
    elif atyp == 3:
        addr = recv_exact(s, recv_exact(s, 1)[0]).decode()
    else:
        raise AssertionError("bad reply ATYP %d" % atyp)
    (port,) = struct.unpack("!H", recv_exact(s, 2))
    return head[1], addr, port


def socks5_open(proxy, host, port, user=None, password=None, cmd=CMD_CONNECT,
                timeout=IO_TIMEOUT, source=None):
    """Greeting, optional RFC 1929 auth, request. Returns (sock, rep, bnd_addr, bnd_port)."""
    s = connect(proxy[0], proxy[1], timeout, source)
    try:
        if user is None:
            s.sendall(socks5_greeting((METHOD_NOAUTH,)))
            m = read_method(s)
            if m != METHOD_NOAUTH:
                raise AssertionError("server chose method %#x" % m)
        else:
            s.sendall(socks5_greeting((METHOD_USERPASS,)))
            m = read_method(s)
            if m != METHOD_USERPASS:
                raise AssertionError("server chose method %#x" % m)
            s.sendall(socks5_userpass(user, password))
            ver, status = recv_exact(s, 2)
            if status != 0:
                raise AssertionError("auth status %#x" % status)
        s.sendall(socks5_request(cmd, host, port))
        rep, baddr, bport = read_socks5_reply(s)
    except BaseException:
        s.close()
        raise
    return s, rep, baddr, bport


def socks4_request(host, port, userid=b"", cmd=CMD_CONNECT):
    """SOCKS4 for an IPv4 literal, SOCKS4a (DSTIP 0.0.0.1) for a name."""
    if isinstance(userid, str):
        userid = userid.encode()
    try:
        ip = ipaddress.IPv4Address(host)
        return struct.pack("!BBH", 4, cmd, port) + ip.packed + userid + b"\0"
    except ValueError:
        return (struct.pack("!BBH", 4, cmd, port) + b"\0\0\0\x01" + userid + b"\0"
                + host.encode() + b"\0")


def read_socks4_reply(s):
    """(CD, port, ip) of an 8-byte SOCKS4 reply."""
    r = recv_exact(s, 8)
    if r[0] != 0:
        raise AssertionError("SOCKS4 reply VN %d" % r[0])
    (port,) = struct.unpack("!H", r[2:4])
    return r[1], port, socket.inet_ntop(socket.AF_INET, r[4:8])


def echo_roundtrip(s, payload):
    """Send payload and read back as many bytes."""
    s.sendall(payload)
    return recv_exact(s, len(payload))


def run(argv, timeout=30, input=None):
    """subprocess.run with captured output and a timeout."""
    return subprocess.run(argv, input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=timeout * SLOW)


def distorted_by_valgrind(what):
    """True under valgrind, which runs ferryd one thread at a time, 20 to 50 times slower, with
    an allocator of its own: the caller then skips its assertion about what (a timing or a
    memory figure, never a functional check), and the test's log says so."""
    if UNDER_VALGRIND:
        log("not checked under valgrind: %s" % what)
    return UNDER_VALGRIND


def main():
    """unittest.main with verbose output; exit status is what automake reads."""
    unittest.main(verbosity=2)


# --- fault injection and soak helpers ---------------------------------------------------------

def _fd_targets(pid):
    """{fd number: what it points to} of process pid (/proc/PID/fd), without valgrind's own."""
    out = {}
    for name in os.listdir("/proc/%d/fd" % pid):
        try:
            out[int(name)] = os.readlink("/proc/%d/fd/%s" % (pid, name))
        except FileNotFoundError:
            pass
    if UNDER_VALGRIND:
        # valgrind keeps its descriptors (the client's executable, its /tmp/valgrind_proc_*
        # files, its log, the pipe of its thread lock, ...) in one run just below the limit it
        # started with, and tells the client that the limit is below them. (It also leaves the
        # log file open on fd 3 for the client, which stays for the process's life.)
        ours = [fd for fd, what in out.items()
                if os.path.basename(what).startswith("valgrind_proc_")]
        if ours:
            bottom = min(ours)
            while bottom - 1 in out:
                bottom -= 1
            out = {fd: what for fd, what in out.items() if fd < bottom}
    return out


def open_fds(pid):
    """How many file descriptors process pid has open, not counting pipes beyond stdin,
    stdout and stderr: ferryd keeps spare splice pipes for a second after use (relay_pool),
    so their number comes and goes; wait_fds waits for them to be given back."""
    return sum(1 for fd, what in _fd_targets(pid).items() if fd < 3 or not what.startswith("pipe:"))


def relay_pipes(pid):
    """Pipe descriptors of process pid beyond 0, 1 and 2 (splice pipes, in use or spare)."""
    return sum(1 for fd, what in _fd_targets(pid).items() if fd >= 3 and what.startswith("pipe:"))


def cpu_seconds(pid):
    """User plus system CPU time process pid has used so far, in seconds (/proc/PID/stat)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # After "pid (comm)": state is field 3, utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid):
    """VmRSS of process pid in KiB."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for %d" % pid)


def set_nofile(pid, soft, hard=None):
    """Set RLIMIT_NOFILE of a running process (prlimit(2)); pid 0 is this process."""
    import resource
    if hard is None:
        hard = max(soft, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))


def wait_fds(pid, expected, timeout=5.0):
    """Wait until pid has exactly expected fds open (as open_fds counts them) and no splice
    pipe (spares are given back a second or two after the last use); returns the count of
    fds, pipes included, so that a pipe that stays is a failure."""
    wait_until(lambda: open_fds(pid) == expected and relay_pipes(pid) == 0, timeout)
    return open_fds(pid) + relay_pipes(pid)


class PendingTarget:
    """A TCP address where a connect never completes: a listener with backlog 0 whose one-slot
    accept queue is filled and never drained, so the kernel drops further SYNs and connects
    stay in SYN-SENT. Checked with a probe when made."""

    def __init__(self, testcase, host="127.0.0.1"):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.sock.listen(0)
        self.host = host
        self.port = self.sock.getsockname()[1]
        self.fillers = []
        testcase.addCleanup(self.close)
        # The first connect fills the queue; a second makes sure it is full.
        for _ in range(2):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.connect_ex((host, self.port))
            self.fillers.append(s)
            time.sleep(0.05)
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        probe.setblocking(False)
        try:
            probe.connect_ex((host, self.port))
            _, w, _ = select.select([], [probe], [], 0.3)
            if w:
                raise AssertionError("connect to the full listener completed")
        finally:
            probe.close()

    def close(self):
        for s in self.fillers:
            s.close()
        self.sock.close()


class FaultyDNSServer(DNSServer):
    """A DNSServer that can also answer badly for a name (set_fault):
      "garbage"   random bytes of a plausible size, with the query's ID
      "short"     only 6 bytes of a header
      "truncated" a NOERROR answer announcing at least one record, cut 7 bytes into it (TC
                  bit clear)
      "tc"        an empty answer with the TC bit set (a resolver retries over TCP, which this
                  server does not serve)
      "badid"     a well-formed answer with the wrong query ID
    Other names behave as in DNSServer."""

    FAULTS = ("garbage", "short", "truncated", "tc", "badid")

    def __init__(self, testcase, host="127.0.0.1"):
        self.faults = {}
        super().__init__(testcase, host)

    def set_fault(self, name, fault, a=("127.0.0.1",)):
        assert fault in self.FAULTS
        name = name.lower().rstrip(".")
        self.add(name, a=list(a))
        with self.lock:
            self.faults[name] = fault

    def handle(self, msg):
        reply, delay = super().handle(msg)
        if reply is None:
            return reply, delay
        # The question name, as DNSServer.handle read it.
        pos, labels = 12, []
        while msg[pos]:
            labels.append(msg[pos + 1:pos + 1 + msg[pos]].decode("ascii", "replace"))
            pos += 1 + msg[pos]
        with self.lock:
            fault = self.faults.get(".".join(labels).lower())
        if fault is None:
            return reply, delay
        if fault == "garbage":
            return msg[:2] + os.urandom(max(len(reply) - 2, 40)), delay
        if fault == "short":
            return reply[:6], delay
        if fault == "truncated":
            # At least one answer announced, and the data stops 7 bytes into it.
            qend = pos + 1 + 4
            ancount = max(struct.unpack("!H", reply[6:8])[0], 1)
            record = reply[qend:qend + 7]
            if len(record) < 7:
                record = b"\xc0\x0c\x00\x01\x00\x01\x00"
            return reply[:6] + struct.pack("!H", ancount) + reply[8:qend] + record, delay
        if fault == "tc":
            qend = pos + 1 + 4
            flags = struct.unpack("!H", reply[2:4])[0] | 0x0200
            return reply[:2] + struct.pack("!HHHHH", flags, 1, 0, 0, 0) + reply[12:qend], delay
        if fault == "badid":
            wrong = (struct.unpack("!H", reply[:2])[0] + 1) & 0xFFFF
            return struct.pack("!H", wrong) + reply[2:], delay
        return reply, delay


# --- UDP ASSOCIATE helpers ------------------------------------------------------------------

# The drop= reasons of a UDP association's access line, in order.
DROP_REASONS = ("stranger", "frag", "malformed", "filtered", "resolve", "queue", "send",
                "oversize", "blocked")

class UDPEcho:
    """A UDP echo server on loopback (a thread): sends every datagram back to its sender.
    Records the peers it saw and counts datagrams."""

    def __init__(self, testcase, host="127.0.0.1"):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.host = host
        self.port = self.sock.getsockname()[1]
        self.peers = []
        self.count = 0
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()
        testcase.addCleanup(self.stop)

    def _serve(self):
        while self.running:
            try:
                r, _, _ = select.select([self.sock], [], [], 0.05)
                if not r:
                    continue
                data, peer = self.sock.recvfrom(65535)
            except (OSError, ValueError):
                return
            self.count += 1
            if not self.peers or self.peers[-1] != peer[:2]:
                self.peers.append(peer[:2])
            try:
                self.sock.sendto(data, peer)
            except OSError:
                pass

    def stop(self):
        self.running = False
        self.thread.join(5)
        self.sock.close()


def udp_header(host, port, frag=0):
    """RSV(2) FRAG ATYP DST.ADDR DST.PORT."""
    return b"\0\0" + bytes([frag]) + encode_dest5(host, port)


def parse_udp_datagram(data):
    """(frag, host, port, payload) of a datagram from the relay."""
    if len(data) < 4:
        raise AssertionError("short datagram %r" % data)
    frag, atyp = data[2], data[3]
    if atyp == 1:
        host = socket.inet_ntop(socket.AF_INET, data[4:8])
        pos = 8
    elif atyp == 4:
        host = socket.inet_ntop(socket.AF_INET6, data[4:20])
        pos = 20
    elif atyp == 3:
        n = data[4]
        host = data[5:5 + n].decode()
        pos = 5 + n
    else:
        raise AssertionError("bad ATYP %d in %r" % (atyp, data[:32]))
    (port,) = struct.unpack("!H", data[pos:pos + 2])
    return frag, host, port, data[pos + 2:]


def udp_socket(ip, timeout=5.0):
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.bind((ip, 0))
    s.settimeout(timeout)
    return s


def drops(sess):
    """{reason: count} from an access line's drop= field."""
    field = sess.get("drop")
    if field is None:
        raise AssertionError("no drop= field in %r" % sess)
    out = {}
    for item in field.split(","):
        name, _, value = item.partition(":")
        out[name] = int(value)
    for reason in DROP_REASONS:
        if reason not in out:
            raise AssertionError("drop= lacks %s: %r" % (reason, field))
    return out


def udp_packets(sess):
    """(up, down) datagram counts from an access line's udp=up:N/down:N field."""
    field = sess.get("udp")
    if field is None:
        raise AssertionError("no udp= field in %r" % sess)
    up, down = field.split("/")
    if not up.startswith("up:") or not down.startswith("down:"):
        raise AssertionError("bad udp= field %r" % field)
    return int(up[3:]), int(down[5:])


def is_udp(sess):
    return sess.get("cmd") == "udp"


def fd_count(pid):
    return len(_fd_targets(pid))


class RawAssoc:
    """A UDP association opened by hand: the TCP control connection (ctl, from the address
    source when given), the relay address from the reply, and a UDP socket (sock) bound to
    bind_ip. claim is what DST.ADDR/DST.PORT say: a (host, port) pair, or "self" for the UDP
    socket's own address."""

    def __init__(self, testcase, ferry, claim=("0.0.0.0", 0), bind_ip="127.0.0.1", proxy=None,
                 source=None):
        self.sock = udp_socket(bind_ip)
        testcase.addCleanup(self.sock.close)
        if claim == "self":
            claim = self.sock.getsockname()[:2]
        self.ctl, self.rep, host, port = socks5_open(proxy or ferry.addr(), claim[0], claim[1],
                                                     cmd=CMD_UDP_ASSOCIATE, source=source)
        testcase.addCleanup(self.ctl.close)
        self.relay = (host, port)

    def send(self, host, port, payload, frag=0, sock=None):
        (sock or self.sock).sendto(udp_header(host, port, frag) + payload, self.relay)

    def send_raw(self, data, sock=None):
        (sock or self.sock).sendto(data, self.relay)

    def recv(self, sock=None, timeout=5.0):
        """(host, port, payload) of the next datagram from the relay."""
        s = sock or self.sock
        s.settimeout(timeout)
        data, peer = s.recvfrom(65535)
        if peer[:2] != self.relay:
            raise AssertionError("datagram from %r, not the relay %r" % (peer, self.relay))
        frag, host, port, payload = parse_udp_datagram(data)
        if frag != 0:
            raise AssertionError("FRAG %d from the relay" % frag)
        return host, port, payload

    def roundtrip(self, echo, payload, sock=None):
        self.send(echo.host, echo.port, payload, sock=sock)
        return self.recv(sock)

    def close(self):
        self.ctl.close()


def nothing_arrives(sock, wait=0.3):
    sock.settimeout(wait)
    try:
        data = sock.recv(65535)
    except socket.timeout:
        return True
    raise AssertionError("unexpected datagram %r" % data[:64])


# --- the encrypted hop's keys, and helper programs -------------------------------------------

KEYGEN = os.environ.get("FERRY_KEYGEN", os.path.join(os.path.dirname(FERRY_PASSWD), "ferry-keygen"))
# curl's environment without proxy settings of the machine running the tests.
CURL_ENV = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}


def keygen(path):
    """A key pair made by the built ferry-keygen: the private key at path; the public key."""
    r = subprocess.run([KEYGEN, path], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=30)
    if r.returncode != 0:
        raise AssertionError("ferry-keygen: %s" % r.stderr.decode())
    return r.stdout.decode().strip()


class Forwarder:
    """A TCP forwarder between the two ferries of a tunnel: records the client's first bytes
    (msg1) and counts what the server sends; mask, when not 0, is XORed into the first byte the
    client sends (the suite code's bits of msg1's length prefix)."""

    def __init__(self, testcase, port, mask=0):
        self.port_to = port
        self.mask = mask
        self.first = None
        self.from_server = 0
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]
        self.stopped = False
        self.socks = []
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()

        def stop():
            self.stopped = True
            self.lsock.close()
        testcase.addCleanup(stop)

    def _accept(self):
        while not self.stopped:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            u = socket.create_connection(("127.0.0.1", self.port_to))
            self.socks += [c, u]
            threading.Thread(target=self._pump, args=(c, u, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(u, c, False), daemon=True).start()

    def cut(self):
        """End every forwarded connection both ways, as a network that fails would: each ferry
        reads an end of file where a record or CLOSE should be."""
        for s in self.socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _pump(self, a, b, up):
        try:
            while True:
                d = a.recv(65536)
                if not d:
                    b.shutdown(socket.SHUT_WR)
                    return
                if up and self.first is None:
                    self.first = d
                    if self.mask:
                        d = bytes([d[0] ^ self.mask]) + d[1:]
                if not up:
                    self.from_server += len(d)
                b.sendall(d)
        except OSError:
            pass


def tunnel_keys(testcase, prefix, clients=("alice",), authorized=None):
    """Keys for a tunnel test, in a temporary directory removed at the end (testcase.dir): the
    server's pair (testcase.skey, .spub) and one pair per client name, named by its first
    letter (alice: testcase.akey, .apub; bob: .bkey, .bpub), and testcase.authkeys, an
    authorized-keys file (mode 0600) mapping the keys of `authorized` (default: every client)
    to their names."""
    testcase.dir = tempfile.mkdtemp(prefix=prefix)
    testcase.addCleanup(shutil.rmtree, testcase.dir, True)
    testcase.skey = os.path.join(testcase.dir, "server.key")
    testcase.spub = keygen(testcase.skey)
    pubs = {}
    for name in clients:
        path = os.path.join(testcase.dir, name + ".key")
        pubs[name] = keygen(path)
        setattr(testcase, name[0] + "key", path)
        setattr(testcase, name[0] + "pub", pubs[name])
    testcase.authkeys = os.path.join(testcase.dir, "authorized_keys")
    with open(testcase.authkeys, "w") as f:
        f.writelines("%s %s\n" % (pubs[n], n)
                     for n in (clients if authorized is None else authorized))
    os.chmod(testcase.authkeys, 0o600)


def aes_ni():
    """Whether libsodium can run AES-256-GCM here (it needs AES-NI and PCLMULQDQ)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = set(next(l for l in f if l.startswith("flags")).split(":")[1].split())
    except (OSError, StopIteration):
        return False
    return "aes" in flags and "pclmulqdq" in flags


# An anonymous FTP server (python3-pyftpdlib) on ARGV[1], a free port (printed), serving
# the directory ARGV[2]: active FTP's BIND through chains and the tunnel.
FTP_SERVER = textwrap.dedent("""
    import sys
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import FTPHandler
    from pyftpdlib.servers import FTPServer
    authorizer = DummyAuthorizer()
    authorizer.add_anonymous(sys.argv[2])
    FTPHandler.authorizer = authorizer
    server = FTPServer((sys.argv[1], 0), FTPHandler)
    print(server.socket.getsockname()[1], flush=True)
    server.serve_forever()
""")


class Proc:
    """A parent proxy (or another helper) started by the test in a session of its own, stopped
    by its process group id (the process's own id) in the cleanups; its output goes to the
    test's log then."""

    def __init__(self, testcase, name, argv, port=None, host="127.0.0.1", timeout=10.0):
        self.name = name
        self.out = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        testcase.addCleanup(self.stop)
        log("%s[%d] started: %s" % (name, self.proc.pid, " ".join(argv)))
        if port is not None:
            self.wait_port(host, port, timeout)

    def wait_port(self, host, port, timeout):
        deadline = time.monotonic() + timeout * SLOW
        while True:
            if self.proc.poll() is not None:
                raise AssertionError("%s exited with status %d at start:\n%s"
                                     % (self.name, self.proc.returncode, self.output()))
            try:
                socket.create_connection((host, port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError("%s does not listen on %s:%d:\n%s"
                                         % (self.name, host, port, self.output()))
                time.sleep(0.05)

    def output(self):
        self.out.seek(0)
        return self.out.read().decode("utf-8", "replace")

    def stop(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        log("%s[%d] output:\n%s" % (self.name, self.proc.pid, self.output()))
        self.out.close()

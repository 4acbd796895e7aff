"""The metrics listener: Prometheus text at /metrics that promtool (Debian's prometheus package)
accepts, values that move with real traffic (curl through SOCKS5 and HTTP CONNECT, a refused
request, a failed login, UDP datagrams, DNS queries and cache hits), /health for load
balancers (200, then 503 while shutting down), and clear answers to anything else."""

import os
import re
import shutil
import signal
import socket
import subprocess
import time
import unittest
import urllib.request

import socks

import ferrytest as ft

PROMTOOL = shutil.which("promtool")


def scrape(port, path="/metrics"):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=5) as r:
        return r.status, r.headers.get("Content-Type"), r.read().decode()


def values(text):
    """{'name{labels}': float} of every sample line."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, val = line.rsplit(" ", 1)
            out[key] = float(val)
    return out


def curl(*args):
    return subprocess.run(["curl", "-sS", "--max-time", "10", *args], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=20)


class MetricsTest(unittest.TestCase):
    def start(self, extra=(), **kw):
        self.mport = ft.free_port()
        self.dns = ft.DNSServer(self)
        self.dns.add("origin.test", a=["127.0.0.1"])
        self.ferry = ft.start_ferryd(
            self, dns=self.dns,
            extra=("metrics 127.0.0.1:%d" % self.mport, "private-destinations allow",
                   "request block port 25", "request pass") + tuple(extra), **kw)
        self.ferry.wait_line(r"metrics on http://127\.0\.0\.1:%d/metrics" % self.mport)
        return self.ferry

    @unittest.skipUnless(PROMTOOL, "promtool (Debian package prometheus) not installed")
    def test_promtool_accepts_the_output_before_and_after_traffic(self):
        f = self.start()
        origin = ft.HTTPOrigin(self)
        for text in (scrape(self.mport)[2], None):
            if text is None:
                r = curl("-x", "socks5h://%s:%d" % (f.host, f.port), origin.url("/a", "origin.test"))
                self.assertEqual(r.returncode, 0, r.stderr)
                f.wait_sessions(1)
                text = scrape(self.mport)[2]
            p = subprocess.run([PROMTOOL, "check", "metrics"], input=text.encode(),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
            self.assertEqual(p.returncode, 0, p.stdout.decode())

    def test_counters_move_with_traffic(self):
        f = self.start()
        origin = ft.HTTPOrigin(self)
        status, ctype, text = scrape(self.mport)
        self.assertEqual(status, 200)
        self.assertTrue(ctype.startswith("text/plain; version=0.0.4"), ctype)
        before = values(text)
        self.assertEqual(before['ferry_workers'], 1)
        self.assertEqual(before['ferry_sessions_total{frontend="socks5",command="connect"}'], 0)
        self.assertGreater(before["ferry_open_fds"], 3)

        # Two names: the second lookup of origin.test is a cache hit.
        for _ in range(2):
            r = curl("-x", "socks5h://%s:%d" % (f.host, f.port), origin.url("/m", "origin.test"))
            self.assertEqual(r.returncode, 0, r.stderr)
        r = curl("-p", "-x", "http://%s:%d" % (f.host, f.port), origin.url("/h", "origin.test"))
        self.assertEqual(r.returncode, 0, r.stderr)
        # Refused by rule 1 (port 25), before any DNS query.
        s = socks.socksocket()
        s.set_proxy(socks.SOCKS5, f.host, f.port)
        with self.assertRaises(socks.ProxyError):
            s.connect(("origin.test", 25))
        s.close()
        f.wait_sessions(4)
        after = values(scrape(self.mport)[2])
        self.assertEqual(after['ferry_sessions_total{frontend="socks5",command="connect"}'], 3)
        self.assertEqual(after['ferry_sessions_total{frontend="http",command="connect"}'], 1)
        self.assertEqual(after['ferry_replies_total{code="succeeded"}'], 3)
        self.assertEqual(after['ferry_replies_total{code="not-allowed"}'], 1)
        self.assertEqual(after['ferry_rule_hits_total{rule="1"}'], 1)
        self.assertEqual(after['ferry_rule_hits_total{rule="2"}'], 3)
        self.assertEqual(after["ferry_dns_queries_total"], 1)
        self.assertEqual(after["ferry_dns_cache_hits_total"], 2)
        self.assertEqual(after["ferry_dns_latency_seconds_count"], 1)
        self.assertEqual(after['ferry_dns_latency_seconds_bucket{le="+Inf"}'], 1)
        self.assertGreater(after['ferry_bytes_total{direction="down"}'], 3 * 100)
        self.assertGreater(after['ferry_bytes_total{direction="up"}'], 3 * 40)
        self.assertEqual(after['ferry_relays_total{mode="splice"}']
                         + after['ferry_relays_total{mode="buffered"}'], 3)
        self.assertEqual(after["ferry_sessions_open"], 0)

    def test_auth_udp_and_limits_are_counted(self):
        users = ft.make_users_file(self, {"alice": "right"})
        f = self.start(extra=("limit auth-failures 1/1m",), auth="password", users=users)
        origin = ft.HTTPOrigin(self)
        r = curl("-x", "socks5h://alice:right@%s:%d" % (f.host, f.port),
                 origin.url("/", "origin.test"))
        self.assertEqual(r.returncode, 0, r.stderr)
        # UDP: two datagrams to an echo server and back.
        echo = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        echo.bind(("127.0.0.1", 0))
        self.addCleanup(echo.close)
        u = socks.socksocket(socket.AF_INET, socket.SOCK_DGRAM)
        u.set_proxy(socks.SOCKS5, f.host, f.port, username="alice", password="right")
        u.settimeout(5)
        u.bind(("127.0.0.1", 0))
        for i in range(2):
            u.sendto(b"ping%d" % i, echo.getsockname())
            data, peer = echo.recvfrom(100)
            echo.sendto(data.upper(), peer)
            self.assertEqual(u.recvfrom(100)[0], b"PING%d" % i)
        u.close()
        # Then logins: the first fails, the second is refused unchecked (the lockout).
        for _ in range(2):
            r = curl("-x", "socks5h://alice:wrong@%s:%d" % (f.host, f.port),
                     origin.url("/", "origin.test"))
            self.assertNotEqual(r.returncode, 0)
        # A login refused unchecked has only a debug access line: wait for the count.
        f.wait_sessions(3)
        self.assertTrue(ft.wait_until(
            lambda: values(scrape(self.mport)[2])['ferry_auth_total{result="refused"}'] == 1))
        v = values(scrape(self.mport)[2])
        self.assertEqual(v['ferry_auth_total{result="ok"}'], 2)
        self.assertEqual(v['ferry_auth_total{result="failed"}'], 1)
        self.assertEqual(v['ferry_auth_total{result="refused"}'], 1)
        self.assertEqual(v['ferry_sessions_total{frontend="socks5",command="udp"}'], 1)
        self.assertEqual(v['ferry_udp_datagrams_total{direction="up"}'], 2)
        self.assertEqual(v['ferry_udp_datagrams_total{direction="down"}'], 2)

    def test_health_and_other_paths(self):
        f = self.start(extra=("shutdown-grace 5s",))
        status, _, body = scrape(self.mport, "/health")
        self.assertEqual((status, body), (200, "ok\n"))
        with self.assertRaises(urllib.error.HTTPError) as e:
            scrape(self.mport, "/nothing")
        self.assertEqual(e.exception.code, 404)
        req = urllib.request.Request("http://127.0.0.1:%d/metrics" % self.mport, data=b"x",
                                     method="POST")
        with self.assertRaises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=5)
        self.assertEqual(e.exception.code, 405)
        # A session keeps the daemon in its grace after SIGTERM: /health says 503 meanwhile.
        origin = ft.EchoOrigin(self)
        s = socks.socksocket()
        s.set_proxy(socks.SOCKS5, f.host, f.port)
        s.settimeout(5)
        s.connect((origin.host, origin.port))
        self.addCleanup(s.close)
        f.proc.send_signal(signal.SIGTERM)
        f.wait_line(r"shutting down")
        with self.assertRaises(urllib.error.HTTPError) as e:
            scrape(self.mport, "/health")
        self.assertEqual(e.exception.code, 503)
        self.assertEqual(e.exception.read(), b"stopping\n")

    def test_a_failed_route_path_is_counted(self):
        # Route every request via a parent nobody listens on, then directly: the first request
        # fails over (one path failure), the second skips the parent now marked down.
        dead = ft.closed_port()
        f = self.start(extra=("parent dead socks5 127.0.0.1:%d retry 60s" % dead,
                              "route via dead,direct"))
        origin = ft.HTTPOrigin(self)
        self.assertEqual(values(scrape(self.mport)[2])["ferry_route_path_failures_total"], 0)
        for _ in range(2):
            r = curl("-x", "socks5h://%s:%d" % (f.host, f.port), origin.url("/", "origin.test"))
            self.assertEqual(r.returncode, 0, r.stderr)
        f.wait_sessions(2)
        v = values(scrape(self.mport)[2])
        self.assertEqual(v["ferry_route_path_failures_total"], 1)
        self.assertEqual(v['ferry_replies_total{code="succeeded"}'], 2)

    def test_the_metrics_listener_survives_an_upgrade(self):
        f = self.start()
        pids = []

        def stop():
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        self.addCleanup(stop)
        f.proc.send_signal(signal.SIGUSR2)
        m = f.wait_line(r"upgrade: process (\d+) serves", timeout=30)
        pids.append(int(m.group(1)))
        self.assertEqual(f.proc.wait(10 * ft.SLOW), 0)
        # The old process is gone: what answers now is the new one's listener.
        status, _, text = scrape(self.mport)
        self.assertEqual(status, 200)
        self.assertEqual(values(text)["ferry_workers"], 1)
        self.assertEqual(scrape(self.mport, "/health")[2], "ok\n")

    def test_bad_metrics_lines_are_refused(self):
        for value, msg in (("localhost:9180", "is not ADDRESS\\[:PORT\\]"),
                           ("127.0.0.1:0", "is not ADDRESS\\[:PORT\\]")):
            conf = ft.make_config(extra=("metrics %s" % value,))
            path = os.path.join(self.tmpdir(), "f.conf")
            with open(path, "w") as fh:
                fh.write(conf)
            r = subprocess.run(ft.ferryd_argv("-t", "-f", path), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=10)
            self.assertNotEqual(r.returncode, 0)
            self.assertRegex(r.stderr.decode(), r"f\.conf:\d+: metrics: '%s' %s" % (
                re.escape(value), msg))

    def test_port_in_use_is_a_clear_error(self):
        busy = socket.socket()
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        self.addCleanup(busy.close)
        conf = ft.make_config(extra=("metrics 127.0.0.1:%d" % busy.getsockname()[1],))
        path = os.path.join(self.tmpdir(), "f.conf")
        with open(path, "w") as fh:
            fh.write(conf)
        r = subprocess.run(ft.ferryd_argv("-f", path), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=20)
        self.assertEqual(r.returncode, 1)
        self.assertIn("metrics: cannot listen on 127.0.0.1:%d: Address already in use"
                      % busy.getsockname()[1], r.stderr.decode())

    def tmpdir(self):
        import tempfile
        d = tempfile.mkdtemp(prefix="ferrymetrics-")
        self.addCleanup(shutil.rmtree, d, True)
        return d


if __name__ == "__main__":
    unittest.main()

"""Chaining (issue 14): ferryd as a middle hop forwarding through parent proxies started here,
on loopback: a second and third ferryd (SOCKS5, SOCKS4a, with and without passwords), microsocks
(without and with -u/-P), danted with its username method (a system user made for the run, as
root only), tinyproxy as an HTTP CONNECT parent (without and with BasicAuth). Driven with curl
(socks5, socks5h, socks4a, and HTTP CONNECT through ferry's HTTP front end), tor-resolve for
RESOLVE and netkit ftp under socksify for BIND, with the access lines of every hop checked.

Then failover (a parent down, refusing, or silent), the marking down and up of parents, names
resolved at the exit only, and what refuses a configuration (a credentials file others may
read). Tor's SOCKS port is not used: offline it builds no circuit, so it answers nothing.
"""

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import unittest

import socks

import ferrytest as ft
from ferrytest import CURL_ENV, FTP_SERVER, Proc


# Known to the exit's DNS only; the first hop's DNS answers NXDOMAIN for it.
EXIT_NAME = "exit.chain.test"
# Known to both, with different addresses: who answered a RESOLVE shows.
BOTH_NAME = "both.chain.test"
EXIT_ADDR = "192.0.2.10"
ENTRY_ADDR = "192.0.2.20"

# The system user made for danted's username method: one per test process, so that two runs
# at once (plain and ASan builds) do not change each other's password or delete it.
TEST_USER = "ferrychain%d" % os.getpid()


def which(prog):
    return shutil.which(prog) or (os.path.exists("/usr/sbin/" + prog) and "/usr/sbin/" + prog)


def hostport(host, port):
    return "%s:%d" % (ft.host_for_url(host), port)


def line_no(ferry, prefix):
    """The line number of the first line of ferry's configuration starting with prefix."""
    with open(ferry.conf_path) as f:
        for n, line in enumerate(f, 1):
            if line.startswith(prefix):
                return n
    raise AssertionError("no line %r in %s" % (prefix, ferry.conf_path))


def write_secret(directory, name, text, mode=0o600):
    path = os.path.join(directory, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return path


def start_microsocks(testcase, user=None, password=None):
    exe = which("microsocks")
    if not exe:
        testcase.skipTest("microsocks not installed (Debian package microsocks)")
    port = ft.free_port()
    argv = [exe, "-i", "127.0.0.1", "-p", str(port)]
    if user is not None:
        argv += ["-u", user, "-P", password]
    Proc(testcase, "microsocks", argv, port)
    return port


def start_tinyproxy(testcase, tmp, basic=None):
    exe = which("tinyproxy")
    if not exe:
        testcase.skipTest("tinyproxy not installed (Debian package tinyproxy)")
    port = ft.free_port()
    conf = os.path.join(tmp, "tinyproxy-%d.conf" % port)
    with open(conf, "w") as f:
        f.write("Port %d\nListen 127.0.0.1\nTimeout 60\nMaxClients 100\nAllow 127.0.0.0/8\n"
                "LogLevel Info\nDisableViaHeader Yes\n" % port)
        if os.geteuid() == 0:
            f.write("User nobody\nGroup nogroup\n")
        # No ConnectPort line: CONNECT to every port.
        if basic is not None:
            f.write("BasicAuth %s %s\n" % basic)
    Proc(testcase, "tinyproxy", [exe, "-d", "-c", conf], port)
    return port


def ensure_system_user(testcase):
    """A system user with a new random password for danted's username method (it checks the
    system's passwords through PAM/shadow); deleted in the cleanups when made here. Root only."""
    if os.geteuid() != 0:
        testcase.skipTest("danted's username method checks system users: needs root")
    for prog in ("useradd", "chpasswd", "userdel"):
        if not shutil.which(prog):
            testcase.skipTest("no %s" % prog)
    password = "fc-" + secrets.token_hex(10)
    if subprocess.run(["getent", "passwd", TEST_USER], stdout=subprocess.DEVNULL).returncode:
        r = subprocess.run(["useradd", "-M", "-r", "-s", "/usr/sbin/nologin", "-d", "/nonexistent",
                            "-c", "ferry chain test", TEST_USER], capture_output=True, text=True)
        if r.returncode != 0:
            testcase.skipTest("cannot create user %s: %s" % (TEST_USER, r.stderr.strip()))
        testcase.addCleanup(subprocess.run, ["userdel", TEST_USER], stderr=subprocess.DEVNULL)
    r = subprocess.run(["chpasswd"], input="%s:%s\n" % (TEST_USER, password), text=True,
                       capture_output=True)
    if r.returncode != 0:
        testcase.skipTest("cannot set the password of %s: %s" % (TEST_USER, r.stderr.strip()))
    return TEST_USER, password


def start_danted(testcase, tmp, username=True):
    exe = which("danted")
    if not exe:
        testcase.skipTest("danted not installed (Debian package dante-server)")
    if os.geteuid() != 0:
        testcase.skipTest("danted runs as root here (user.privileged root)")
    port = ft.free_port()
    conf = os.path.join(tmp, "danted-%d.conf" % port)
    with open(conf, "w") as f:
        f.write(textwrap.dedent("""\
            logoutput: stderr
            internal: 127.0.0.1 port = %d
            external: 127.0.0.1
            socksmethod: %s
            clientmethod: none
            user.privileged: root
            user.unprivileged: nobody
            client pass {
                from: 127.0.0.0/8 to: 0.0.0.0/0
            }
            socks pass {
                from: 127.0.0.0/8 to: 0.0.0.0/0
                command: connect bind udpassociate
            }
            socks pass {
                from: 0.0.0.0/0 to: 0.0.0.0/0
                command: bindreply udpreply
            }
            """ % (port, "username" if username else "none")))
    Proc(testcase, "danted", [exe, "-f", conf], port)
    return port


class SilentParent:
    """Accepts connections and never answers (nor closes them before the test ends)."""

    def __init__(self, testcase):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()
        testcase.addCleanup(self.stop)

    def _serve(self):
        self.sock.settimeout(0.05)
        while self.running:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.conns.append(c)

    def stop(self):
        self.running = False
        self.thread.join(5)
        for c in self.conns:
            c.close()
        self.sock.close()


class ChainTest(unittest.TestCase):
    """The origin, two DNS servers (the exit's knows EXIT_NAME, the entry's does not) and a
    temporary directory for credentials and parents' configurations."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="ferrychain-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.origin = ft.HTTPOrigin(self)
        self.exit_dns = ft.DNSServer(self)
        self.exit_dns.add(EXIT_NAME, a=["127.0.0.1"])
        self.exit_dns.add(BOTH_NAME, a=[EXIT_ADDR])
        self.entry_dns = ft.DNSServer(self)
        self.entry_dns.add(BOTH_NAME, a=[ENTRY_ADDR])

    # --- the hops ---------------------------------------------------------------------

    def exit_ferry(self, listen="127.0.0.1:0", extra=(), auth=None, users=None):
        """A ferryd that is a parent: resolves with the exit's DNS."""
        return ft.start_ferryd(self, listen=(listen,), dns=self.exit_dns, extra=list(extra),
                               auth=auth, users=users)

    def entry_ferry(self, parents, routes, extra=(), dns=None):
        """The ferryd the clients talk to: parent and route lines, the entry's DNS."""
        lines = ["parent " + p for p in parents] + ["route " + r for r in routes]
        return ft.start_ferryd(self, dns=dns or self.entry_dns, extra=lines + list(extra))

    def credentials(self, user, password, mode=0o600):
        return write_secret(self.tmp, "cred-%s" % secrets.token_hex(4),
                            "%s:%s\n" % (user, password), mode)

    # --- clients ----------------------------------------------------------------------

    def curl(self, how, proxy, url, extra=()):
        """curl through proxy: how is socks5, socks5h, socks4a or http (CONNECT, -p)."""
        if how == "http":
            argv = ["-x", "http://" + hostport(*proxy), "-p"]
        else:
            argv = ["-x", "%s://%s" % (how, hostport(*proxy))]
        argv = ["curl", "-sS", "--max-time", "15", "--connect-timeout", "10"] + argv
        r = subprocess.run(argv + list(extra) + [url], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=30 * ft.SLOW, env=CURL_ENV)
        ft.log("curl %s via %s %s: rc=%d err=%r" % (how, proxy, url, r.returncode, r.stderr))
        return r

    def assert_body(self, r, path):
        self.assertEqual(r.returncode, 0, "curl failed: %r" % r.stderr)
        self.assertEqual(r.stdout, ft.HTTPOrigin.body(path))

    def get(self, how, proxy, path, host=None):
        r = self.curl(how, proxy, self.origin.url(path, host=host))
        self.assert_body(r, path)

    def last_session(self, ferry, n=1, **expect):
        s = ferry.wait_sessions(n)[n - 1]
        for k, v in expect.items():
            self.assertEqual(s.get(k), v, "access line %r: %s" % (s, k))
        return s

    def socks5(self, ferry, host, port, cmd=ft.CMD_CONNECT):
        """(sock, rep) of a raw SOCKS5 request to ferry."""
        s, rep, _, _ = ft.socks5_open(ferry.addr(), host, port, cmd=cmd, timeout=20 * ft.SLOW)
        self.addCleanup(s.close)
        return s, rep


# --- parents of every kind ----------------------------------------------------------------

class FerryParentTest(ChainTest):
    def test_socks5h_name_goes_to_the_exit_and_lines_name_route_parent(self):
        b = self.exit_ferry()
        a = self.entry_ferry(["b socks5 %s" % hostport(*b.addr())], ["via b"])
        self.get("socks5h", a.addr(), "/h", host=EXIT_NAME)
        target = "%s:%d" % (EXIT_NAME, self.origin.port)
        self.last_session(a, target=target, route="1", via="b", addr=hostport(*b.addr()),
                          reply="succeeded")
        # The name went on as a name: the exit resolved it, the entry never asked.
        self.last_session(b, target=target, addr="127.0.0.1:%d" % self.origin.port,
                          reply="succeeded")
        self.assertEqual(self.entry_dns.count(EXIT_NAME), 0)
        self.assertGreater(self.exit_dns.count(EXIT_NAME), 0)

    def test_socks5_ip_target(self):
        b = self.exit_ferry()
        a = self.entry_ferry(["b socks5 %s" % hostport(*b.addr())], ["via b"])
        self.get("socks5", a.addr(), "/ip")
        target = "127.0.0.1:%d" % self.origin.port
        self.last_session(a, target=target, via="b", addr=hostport(*b.addr()))
        self.last_session(b, target=target, addr=target)
        # The relay counted what crossed the chain.
        s = a.sessions()[0]
        self.assertGreater(int(s["down"]), len(ft.HTTPOrigin.body("/ip")))

    def test_socks4a_client_through_a_socks5_parent(self):
        b = self.exit_ferry()
        a = self.entry_ferry(["b socks5 %s" % hostport(*b.addr())], ["via b"])
        self.get("socks4a", a.addr(), "/4a", host=EXIT_NAME)
        self.last_session(a, cmd="socks4-connect", via="b",
                          target="%s:%d" % (EXIT_NAME, self.origin.port))
        self.last_session(b, cmd="connect", target="%s:%d" % (EXIT_NAME, self.origin.port))

    def test_http_connect_front_end_through_a_socks5_parent(self):
        b = self.exit_ferry()
        a = self.entry_ferry(["b socks5 %s" % hostport(*b.addr())], ["via b"])
        self.get("http", a.addr(), "/http", host=EXIT_NAME)
        s = self.last_session(a, via="b", route="1", reply="succeeded",
                              target="%s:%d" % (EXIT_NAME, self.origin.port))
        self.assertIn("connect", s["cmd"])
        self.last_session(b, target="%s:%d" % (EXIT_NAME, self.origin.port))
        self.assertEqual(self.entry_dns.count(EXIT_NAME), 0)

    def test_three_hops(self):
        c = self.exit_ferry()
        b = self.exit_ferry()
        a = self.entry_ferry(["b socks5 %s" % hostport(*b.addr()),
                              "c socks5 %s" % hostport(*c.addr())], ["via b>c"])
        self.get("socks5h", a.addr(), "/3", host=EXIT_NAME)
        target = "%s:%d" % (EXIT_NAME, self.origin.port)
        self.last_session(a, via="b>c", addr=hostport(*b.addr()), target=target)
        # b was asked for c, c for the target by name.
        self.last_session(b, target=hostport(*c.addr()), addr=hostport(*c.addr()))
        self.last_session(c, target=target, addr="127.0.0.1:%d" % self.origin.port)

    def test_four_hops_through_microsocks_in_the_middle(self):
        ms = start_microsocks(self)
        c = self.exit_ferry()
        b = self.exit_ferry()
        a = self.entry_ferry(["b socks5 %s" % hostport(*b.addr()),
                              "m socks5 127.0.0.1:%d" % ms,
                              "c socks5 %s" % hostport(*c.addr())], ["via b>m>c"])
        self.get("socks5h", a.addr(), "/4", host=EXIT_NAME)
        self.last_session(a, via="b>m>c", addr=hostport(*b.addr()))
        self.last_session(b, target="127.0.0.1:%d" % ms)
        self.last_session(c, target="%s:%d" % (EXIT_NAME, self.origin.port))

    def test_password_parent_with_credentials_file(self):
        users = ft.make_users_file(self, {"alice": "wonder land"}, self.tmp)
        b = self.exit_ferry(auth="password", users=users)
        cred = self.credentials("alice", "wonder land")
        a = self.entry_ferry(["b socks5 %s credentials %s" % (hostport(*b.addr()), cred)],
                             ["via b"])
        self.get("socks5h", a.addr(), "/pw", host=EXIT_NAME)
        self.last_session(a, via="b", user="-", reply="succeeded")
        self.last_session(b, user="alice", reply="succeeded")

    def test_parent_refusing_our_credentials_is_a_failure_and_marked_down(self):
        users = ft.make_users_file(self, {"alice": "wonder land"}, self.tmp)
        b = self.exit_ferry(auth="password", users=users)
        cred = self.credentials("alice", "not it")
        a = self.entry_ferry(["b socks5 %s credentials %s retry 60s" % (hostport(*b.addr()),
                                                                         cred)], ["via b"])
        s, rep = self.socks5(a, EXIT_NAME, self.origin.port)
        self.assertEqual(rep, ft.REP_GENERAL_FAILURE)
        a.wait_line(r"route 1 \(line %d\) via b: parent b refused our credentials; no other path"
                    % line_no(a, "route "))
        a.wait_line(r"parent b \(line %d\) marked down for 60 s" % line_no(a, "parent "))
        self.last_session(a, via="b", reply="general-failure")
        # b saw a login that failed, no request.
        b.wait_sessions(1)
        self.assertNotEqual(b.sessions()[0].get("reply"), "succeeded")

    def test_credentials_file_others_may_read_is_refused_at_start(self):
        cred = self.credentials("alice", "secret", mode=0o644)
        conf = ft.make_config(extra=["parent b socks5 127.0.0.1:1080 credentials %s" % cred,
                                     "route via b"])
        path = os.path.join(self.tmp, "ferryd.conf")
        with open(path, "w") as f:
            f.write(conf)
        for args in (["-t", "-f", path], ["-f", path]):
            r = ft.run(ft.ferryd_argv(*args), timeout=20)
            err = r.stderr.decode()
            ft.log("ferryd %s: rc=%d %s" % (args, r.returncode, err))
            self.assertNotEqual(r.returncode, 0)
            self.assertIn(cred, err)
            self.assertIn("%s:%d" % (path, conf.splitlines().index(
                "parent b socks5 127.0.0.1:1080 credentials %s" % cred) + 1), err)
            self.assertIn("0644", err)
            self.assertNotIn("listening on", err)
        # The same file with mode 0600 is taken.
        os.chmod(cred, 0o600)
        r = ft.run(ft.ferryd_argv("-t", "-f", path), timeout=20)
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_socks4a_parent_gets_the_name_and_the_user_id(self):
        b = self.exit_ferry()
        a = self.entry_ferry(["b socks4a %s user-id hop-a" % hostport(*b.addr())], ["via b"])
        self.get("socks5h", a.addr(), "/s4a", host=EXIT_NAME)
        self.last_session(a, via="b", cmd="connect")
        s = self.last_session(b, cmd="socks4-connect",
                              target="%s:%d" % (EXIT_NAME, self.origin.port),
                              addr="127.0.0.1:%d" % self.origin.port)
        self.assertEqual(self.entry_dns.count(EXIT_NAME), 0)

    def test_socks4a_request_on_the_wire(self):
        # ferryd logs no SOCKS4 user id: a parent that records the request and then echoes.
        seen = []

        def parent(sock):
            req = b""
            while req.count(b"\0") < 2:
                chunk = sock.recv(512)
                if not chunk:
                    return
                req += chunk
            seen.append(req)
            sock.sendall(bytes([0, 90, 0, 0, 0, 0, 0, 0]))
            while True:
                data = sock.recv(4096)
                if not data:
                    return
                sock.sendall(data)

        p = ft.TCPOrigin(self, parent)
        a = self.entry_ferry(["s4 socks4a 127.0.0.1:%d user-id hop-a" % p.port], ["via s4"])
        s, rep = self.socks5(a, EXIT_NAME, 8080)
        self.assertEqual(rep, ft.REP_SUCCEEDED)
        self.assertEqual(ft.echo_roundtrip(s, b"through"), b"through")
        # VN 4, CONNECT, the port, 0.0.0.x (x != 0), the user id, the name (SOCKS4a).
        req = seen[0]
        self.assertEqual(req[:4], bytes([4, 1]) + (8080).to_bytes(2, "big"))
        self.assertEqual(req[4:7], b"\0\0\0")
        self.assertNotEqual(req[7], 0)
        self.assertEqual(req[8:], b"hop-a\0" + EXIT_NAME.encode() + b"\0")
        self.assertEqual(self.entry_dns.count(), 0)

    @unittest.skipUnless(ft.ipv6_available(), "no IPv6 loopback")
    def test_ipv6_parent_address(self):
        b = self.exit_ferry(listen="[::1]:0")
        self.assertEqual(b.host, "::1")
        a = self.entry_ferry(["b6 socks5 [::1]:%d" % b.port], ["via b6"])
        self.get("socks5h", a.addr(), "/v6", host=EXIT_NAME)
        self.last_session(a, via="b6", addr="[::1]:%d" % b.port)
        s = self.last_session(b, target="%s:%d" % (EXIT_NAME, self.origin.port))
        self.assertTrue(s["client"].startswith("[::1]:"), s)

    def test_parent_given_by_host_name(self):
        b = self.exit_ferry()
        a = self.entry_ferry(["b socks5 localhost:%d" % b.port], ["via b"])
        self.get("socks5h", a.addr(), "/byname", host=EXIT_NAME)
        self.last_session(a, via="b", addr="127.0.0.1:%d" % b.port)
        self.last_session(b, target="%s:%d" % (EXIT_NAME, self.origin.port))

    def test_route_by_destination_and_direct_for_the_rest(self):
        b = self.exit_ferry()
        a = self.entry_ferry(["b socks5 %s" % hostport(*b.addr())],
                             ["to .chain.test via b", "via direct"])
        self.get("socks5h", a.addr(), "/up", host=EXIT_NAME)
        self.get("socks5", a.addr(), "/direct")
        lines = a.wait_sessions(2)
        self.assertEqual((lines[0]["route"], lines[0]["via"]), ("1", "b"))
        self.assertEqual((lines[1].get("route"), lines[1]["via"]), ("2", "direct"))
        self.assertEqual(lines[1]["addr"], "127.0.0.1:%d" % self.origin.port)
        self.assertEqual(len(b.wait_sessions(1)), 1)


class OtherParentsTest(ChainTest):
    def test_microsocks_parent_without_auth(self):
        ms = start_microsocks(self)
        # microsocks resolves with the system's resolver: a name from /etc/hosts.
        a = self.entry_ferry(["ms socks5 127.0.0.1:%d" % ms], ["via ms"])
        self.get("socks5h", a.addr(), "/ms", host="localhost")
        self.last_session(a, via="ms", addr="127.0.0.1:%d" % ms,
                          target="localhost:%d" % self.origin.port)
        self.get("socks5", a.addr(), "/ms-ip")
        self.get("socks4a", a.addr(), "/ms-4a", host="localhost")
        self.assertEqual(len(a.wait_sessions(3)), 3)

    def test_microsocks_parent_with_user_and_password(self):
        ms = start_microsocks(self, "bob", "builder")
        good = self.credentials("bob", "builder")
        a = self.entry_ferry(["ms socks5 127.0.0.1:%d credentials %s" % (ms, good)], ["via ms"])
        self.get("socks5h", a.addr(), "/msu", host="localhost")
        self.last_session(a, via="ms", reply="succeeded")

    def test_microsocks_with_a_user_refuses_a_parent_without_credentials(self):
        ms = start_microsocks(self, "bob", "builder")
        a = self.entry_ferry(["ms socks5 127.0.0.1:%d" % ms], ["via ms"])
        s, rep = self.socks5(a, "127.0.0.1", self.origin.port)
        self.assertEqual(rep, ft.REP_GENERAL_FAILURE)
        a.wait_line(r"via ms: parent ms accepts none of our methods \(none\); no other path")

    def test_microsocks_refusing_our_credentials(self):
        ms = start_microsocks(self, "bob", "builder")
        bad = self.credentials("bob", "plumber")
        a = self.entry_ferry(["ms socks5 127.0.0.1:%d credentials %s" % (ms, bad)], ["via ms"])
        s, rep = self.socks5(a, "127.0.0.1", self.origin.port)
        self.assertEqual(rep, ft.REP_GENERAL_FAILURE)
        a.wait_line(r"via ms: parent ms refused our credentials; no other path")

    def test_danted_parent_with_username_method(self):
        user, password = ensure_system_user(self)
        port = start_danted(self, self.tmp)
        cred = self.credentials(user, password)
        a = self.entry_ferry(["dante socks5 127.0.0.1:%d credentials %s" % (port, cred)],
                             ["via dante"])
        self.get("socks5h", a.addr(), "/dante", host="localhost")
        self.get("socks5", a.addr(), "/dante-ip")
        self.get("http", a.addr(), "/dante-http")
        for s in a.wait_sessions(3):
            self.assertEqual((s["via"], s["addr"], s["reply"]),
                             ("dante", "127.0.0.1:%d" % port, "succeeded"), s)

    def test_danted_refusing_wrong_password(self):
        user, _ = ensure_system_user(self)
        port = start_danted(self, self.tmp)
        bad = self.credentials(user, "wrong-" + secrets.token_hex(4))
        a = self.entry_ferry(["dante socks5 127.0.0.1:%d credentials %s" % (port, bad)],
                             ["via dante"])
        s, rep = self.socks5(a, "127.0.0.1", self.origin.port)
        self.assertEqual(rep, ft.REP_GENERAL_FAILURE)
        a.wait_line(r"via dante: parent dante refused our credentials; no other path")
        a.wait_line(r"parent dante \(line %d\) marked down" % line_no(a, "parent "))

    def test_tinyproxy_http_connect_parent(self):
        port = start_tinyproxy(self, self.tmp)
        a = self.entry_ferry(["tp http 127.0.0.1:%d" % port], ["via tp"])
        self.get("socks5h", a.addr(), "/tp", host="localhost")
        self.get("socks5", a.addr(), "/tp-ip")
        self.get("http", a.addr(), "/tp-http", host="localhost")
        for s in a.wait_sessions(3):
            self.assertEqual((s["via"], s["addr"], s["reply"]),
                             ("tp", "127.0.0.1:%d" % port, "succeeded"), s)

    def test_tinyproxy_basic_auth_parent(self):
        port = start_tinyproxy(self, self.tmp, basic=("carol", "c4r0l"))
        good = self.credentials("carol", "c4r0l")
        a = self.entry_ferry(["tp http 127.0.0.1:%d credentials %s" % (port, good)], ["via tp"])
        self.get("socks5h", a.addr(), "/tpa", host="localhost")
        self.last_session(a, via="tp", reply="succeeded")

    def test_tinyproxy_basic_auth_refusing_our_credentials(self):
        port = start_tinyproxy(self, self.tmp, basic=("carol", "c4r0l"))
        bad = self.credentials("carol", "nope")
        a = self.entry_ferry(["tp http 127.0.0.1:%d credentials %s" % (port, bad)], ["via tp"])
        s, rep = self.socks5(a, "127.0.0.1", self.origin.port)
        self.assertEqual(rep, ft.REP_GENERAL_FAILURE)
        # tinyproxy 1.11 answers wrong credentials with 401 (missing ones with 407): both
        # are the parent refusing our credentials, which marks it down.
        a.wait_line(r"via tp: parent tp wants proxy credentials \(40[17]\): ours were refused; "
                    r"no other path")
        a.wait_line(r"parent tp \(line \d+\) marked down")

    def test_tinyproxy_basic_auth_without_our_credentials_is_407(self):
        port = start_tinyproxy(self, self.tmp, basic=("carol", "c4r0l"))
        a = self.entry_ferry(["tp http 127.0.0.1:%d" % port], ["via tp"])
        s, rep = self.socks5(a, "127.0.0.1", self.origin.port)
        self.assertEqual(rep, ft.REP_GENERAL_FAILURE)
        a.wait_line(r"via tp: parent tp wants proxy credentials \(407\); no other path")
        a.wait_line(r"parent tp \(line %d\) marked down" % line_no(a, "parent "))

    def test_ferry_then_tinyproxy(self):
        port = start_tinyproxy(self, self.tmp)
        b = self.exit_ferry()
        a = self.entry_ferry(["b socks5 %s" % hostport(*b.addr()), "tp http 127.0.0.1:%d" % port],
                             ["via b>tp"])
        self.get("socks5h", a.addr(), "/b-tp", host="localhost")
        self.last_session(a, via="b>tp", addr=hostport(*b.addr()))
        self.last_session(b, target="127.0.0.1:%d" % port)


# --- failover -----------------------------------------------------------------------------

class FailoverTest(ChainTest):
    def count(self, ferry, regex):
        pat = re.compile(regex)
        with ferry.cond:
            return sum(1 for l in ferry.lines if pat.search(l))

    def test_parent_down_fails_over_is_skipped_then_retried(self):
        b = self.exit_ferry()
        dead = ft.closed_port()
        a = self.entry_ferry(["dead socks5 127.0.0.1:%d retry 2s" % dead,
                              "b socks5 %s" % hostport(*b.addr())], ["via dead,b"])
        route_line, dead_line = line_no(a, "route "), line_no(a, "parent dead")
        cannot = (r"route 1 \(line %d\) via dead: cannot reach parent dead: Connection refused; "
                  r"trying the next path" % route_line)
        start = time.monotonic()
        self.get("socks5h", a.addr(), "/1", host=EXIT_NAME)
        a.wait_line(cannot)
        a.wait_line(r"parent dead \(line %d\) marked down for 2 s" % dead_line)
        seen_down = time.monotonic()  # after the marking: its 2 s end before seen_down + 2
        self.last_session(a, via="b", route="1", addr=hostport(*b.addr()), reply="succeeded")
        # Down: the next request goes to b at once, without trying dead.
        s, rep = self.socks5(a, EXIT_NAME, self.origin.port)
        self.assertEqual(rep, ft.REP_SUCCEEDED)
        s.close()
        quick = time.monotonic() - start < 1.8
        self.last_session(a, n=2, via="b")
        if quick:  # still inside the retry time (a loaded machine may be slower)
            self.assertEqual(self.count(a, cannot), 1)
        else:
            ft.log("the second request came too late to check the skipping")
        before = self.count(a, cannot)
        # After retry: dead is tried first again, fails again, b serves.
        time.sleep(max(0.0, 2.2 - (time.monotonic() - seen_down)))
        self.get("socks5h", a.addr(), "/3", host=EXIT_NAME)
        self.assertTrue(ft.wait_until(lambda: self.count(a, cannot) == before + 1, 5))
        self.last_session(a, n=3, via="b")
        self.assertEqual(len(b.wait_sessions(3)), 3)

    def test_a_reload_keeps_a_parent_marked_down(self):
        b = self.exit_ferry()
        dead = ft.closed_port()
        a = self.entry_ferry(["dead socks5 127.0.0.1:%d retry 60s" % dead,
                              "b socks5 %s" % hostport(*b.addr())], ["via dead,b"])
        cannot = r"via dead: cannot reach parent dead: Connection refused"
        self.get("socks5h", a.addr(), "/1", host=EXIT_NAME)
        a.wait_line(r"parent dead \(line \d+\) marked down for 60 s")
        start = len(a.lines)
        a.proc.send_signal(signal.SIGHUP)
        a.wait_line(r"reload: 1 parent still marked down", start=start)
        a.wait_line(r"reloaded .*configuration 2", start=start)
        # The same parent in the new configuration: still skipped, not tried again.
        self.get("socks5h", a.addr(), "/2", host=EXIT_NAME)
        self.last_session(a, n=2, via="b")
        self.assertEqual(self.count(a, cannot), 1)

    def test_parent_up_again_after_retry(self):
        port = ft.closed_port()
        b = self.exit_ferry()
        a = self.entry_ferry(["late socks5 127.0.0.1:%d retry 1s" % port,
                              "b socks5 %s" % hostport(*b.addr())], ["via late,b"])
        self.get("socks5h", a.addr(), "/1", host=EXIT_NAME)
        a.wait_line(r"parent late \(line %d\) marked down for 1 s" % line_no(a, "parent late"))
        self.last_session(a, via="b")
        late = self.exit_ferry(listen="127.0.0.1:%d" % port)
        time.sleep(1.2)
        self.get("socks5h", a.addr(), "/2", host=EXIT_NAME)
        a.wait_line(r"parent late \(line %d\) is up again" % line_no(a, "parent late"))
        self.last_session(a, n=2, via="late", addr="127.0.0.1:%d" % port)
        self.last_session(late, target="%s:%d" % (EXIT_NAME, self.origin.port))

    def test_refusing_parent_rep_02_fails_over_without_marking_it_down(self):
        # A real refusal: the first parent's rules block the target (REP 0x02).
        no = self.exit_ferry(extra=["request block to %s" % EXIT_NAME])
        b = self.exit_ferry()
        a = self.entry_ferry(["no socks5 %s" % hostport(*no.addr()),
                              "b socks5 %s" % hostport(*b.addr())], ["via no,b"])
        self.get("socks5h", a.addr(), "/r", host=EXIT_NAME)
        a.wait_line(r"route 1 \(line %d\) via no: parent no refused %s:%d: "
                    r"not-allowed; trying the next path"
                    % (line_no(a, "route "), re.escape(EXIT_NAME), self.origin.port))
        self.last_session(a, via="b", reply="succeeded")
        self.last_session(no, reply="not-allowed")
        # The parent works; the target was refused: it stays up for the next request.
        self.get("socks5h", a.addr(), "/r2", host=EXIT_NAME)
        self.assertEqual(len(no.wait_sessions(2)), 2)
        self.assertFalse(any("marked down" in l for l in a.lines))

    def test_refusal_on_the_last_path_is_the_clients_reply(self):
        no = self.exit_ferry(extra=["request block to %s" % EXIT_NAME])
        a = self.entry_ferry(["no socks5 %s" % hostport(*no.addr())], ["via no"])
        s, rep = self.socks5(a, EXIT_NAME, self.origin.port)
        self.assertEqual(rep, ft.REP_NOT_ALLOWED)
        # And a SOCKS4a client gets its refusal code.
        s4 = ft.connect(*a.addr())
        self.addCleanup(s4.close)
        s4.sendall(ft.socks4_request(EXIT_NAME, self.origin.port))
        self.assertEqual(ft.read_socks4_reply(s4)[0], ft.SOCKS4_REJECTED)
        a.wait_line(r"via no: parent no refused .*; no other path")

    def test_second_parent_unreachable_from_the_first_is_marked_down(self):
        b = self.exit_ferry()
        c2 = self.exit_ferry()
        dead = ft.closed_port()
        a = self.entry_ferry(["b socks5 %s" % hostport(*b.addr()),
                              "gone socks5 127.0.0.1:%d" % dead,
                              "c socks5 %s" % hostport(*c2.addr())], ["via b>gone,b>c"])
        self.get("socks5h", a.addr(), "/hop2", host=EXIT_NAME)
        # b answered for the hop to gone: gone is at fault, not b (which serves the next path).
        a.wait_line(r"via b>gone: parent b refused 127\.0\.0\.1:%d: "
                    r"connection-refused; trying the next path" % dead)
        a.wait_line(r"parent gone \(line %d\) marked down" % line_no(a, "parent gone"))
        self.assertFalse(any(re.search(r"parent b \(line \d+\) marked down", l)
                             for l in a.lines))
        self.last_session(a, via="b>c", addr=hostport(*b.addr()), reply="succeeded")
        self.last_session(c2, target="%s:%d" % (EXIT_NAME, self.origin.port))

    def test_direct_alternative_after_a_dead_parent(self):
        # A direct alternative needs addresses: the name is resolved here first.
        self.entry_dns.add(EXIT_NAME, a=["127.0.0.1"])
        a = self.entry_ferry(["dead socks5 127.0.0.1:%d" % ft.closed_port()],
                             ["via dead,direct"])
        self.get("socks5h", a.addr(), "/d", host=EXIT_NAME)
        a.wait_line(r"via dead: cannot reach parent dead: Connection refused; trying the next "
                    r"path")
        self.last_session(a, route="1", via="direct", addr="127.0.0.1:%d" % self.origin.port)
        self.assertGreater(self.entry_dns.count(EXIT_NAME), 0)

    def test_name_unknown_here_still_goes_to_the_parent_of_a_route_with_direct(self):
        b = self.exit_ferry()
        a = self.entry_ferry(["b socks5 %s" % hostport(*b.addr())], ["via b,direct"])
        self.get("socks5h", a.addr(), "/nd", host=EXIT_NAME)
        # Asked here for the direct alternative, unknown here: passed on to b by name.
        self.assertGreater(self.entry_dns.count(EXIT_NAME), 0)
        self.last_session(a, via="b", target="%s:%d" % (EXIT_NAME, self.origin.port))
        self.last_session(b, target="%s:%d" % (EXIT_NAME, self.origin.port))

    def test_connection_refused_at_the_exit_maps_to_rep_05(self):
        b = self.exit_ferry()
        a = self.entry_ferry(["b socks5 %s" % hostport(*b.addr())], ["via b"])
        s, rep = self.socks5(a, "127.0.0.1", ft.closed_port())
        self.assertEqual(rep, ft.REP_CONNECTION_REFUSED)

    def test_silent_parent_times_out_then_the_second_path(self):
        silent = SilentParent(self)
        b = self.exit_ferry()
        a = self.entry_ferry(["quiet socks5 127.0.0.1:%d timeout 1s" % silent.port,
                              "b socks5 %s" % hostport(*b.addr())], ["via quiet,b"],
                             extra=["timeout connect 5s"])
        start = time.monotonic()
        s, rep = self.socks5(a, EXIT_NAME, self.origin.port)
        took = time.monotonic() - start
        self.assertEqual(rep, ft.REP_SUCCEEDED)
        self.assertGreater(took, 0.9)
        if not ft.distorted_by_valgrind("the failover time"):
            self.assertLess(took, 4.0)
        a.wait_line(r"route 1 \(line %d\) via quiet: parent quiet did not answer within 1\.0 s; "
                    r"trying the next path" % line_no(a, "route "))
        a.wait_line(r"parent quiet \(line %d\) marked down" % line_no(a, "parent quiet"))
        s.sendall(b"GET /after-silence HTTP/1.0\r\n\r\n")
        self.assertIn(ft.HTTPOrigin.body("/after-silence"), ft.recv_until_eof(s))

    def test_whole_chain_is_bounded_by_timeout_connect(self):
        silent = SilentParent(self)
        b = self.exit_ferry()
        # The hop would wait 10 s: the session's connect timeout (2 s) ends it first.
        a = self.entry_ferry(["quiet socks5 127.0.0.1:%d timeout 10s" % silent.port,
                              "b socks5 %s" % hostport(*b.addr())], ["via quiet,b"],
                             extra=["timeout connect 2s"])
        start = time.monotonic()
        s, rep = self.socks5(a, EXIT_NAME, self.origin.port)
        took = time.monotonic() - start
        self.assertEqual(rep, ft.REP_TTL_EXPIRED)
        self.assertGreater(took, 1.8)
        if not ft.distorted_by_valgrind("the connect timeout"):
            self.assertLess(took, 5.0)
        # The access line names the path the request was at when time ran out.
        self.last_session(a, route="1", via="quiet", reply="ttl-expired")
        self.assertEqual(b.sessions(), [])

    def test_every_path_failing_answers_the_last_failure(self):
        a = self.entry_ferry(["d1 socks5 127.0.0.1:%d" % ft.closed_port(),
                              "d2 socks5 127.0.0.1:%d" % ft.closed_port()], ["via d1,d2"])
        s, rep = self.socks5(a, EXIT_NAME, self.origin.port)
        self.assertEqual(rep, ft.REP_GENERAL_FAILURE)
        a.wait_line(r"via d1: cannot reach parent d1: Connection refused; trying the next path")
        a.wait_line(r"via d2: cannot reach parent d2: Connection refused; no other path")
        self.last_session(a, via="d2", reply="general-failure")


# --- names --------------------------------------------------------------------------------

class NamesTest(ChainTest):
    def test_name_only_the_exit_knows_resolves_through_the_chain(self):
        b = self.exit_ferry()
        a = self.entry_ferry(["b socks5 %s" % hostport(*b.addr())], ["via b"])
        self.get("socks5h", a.addr(), "/n", host=EXIT_NAME)
        self.assertEqual(self.entry_dns.count(), 0)
        self.assertGreater(self.exit_dns.count(EXIT_NAME), 0)

    def test_resolve_local_fails_for_a_name_only_the_exit_knows(self):
        b = self.exit_ferry()
        a = self.entry_ferry(["b socks5 %s" % hostport(*b.addr())], ["via b resolve local"])
        s, rep = self.socks5(a, EXIT_NAME, self.origin.port)
        self.assertEqual(rep, ft.REP_HOST_UNREACHABLE)
        self.assertGreater(self.entry_dns.count(EXIT_NAME), 0)
        self.last_session(a, reply="host-unreachable")
        # Nothing reached the parent.
        time.sleep(0.2)
        self.assertEqual(b.sessions(), [])
        r = self.curl("socks5h", a.addr(), self.origin.url("/x", host=EXIT_NAME))
        self.assertNotEqual(r.returncode, 0)

    def test_resolve_local_passes_the_address_on(self):
        b = self.exit_ferry()
        self.entry_dns.add(EXIT_NAME, a=["127.0.0.1"])
        a = self.entry_ferry(["b socks5 %s" % hostport(*b.addr())], ["via b resolve local"])
        self.get("socks5h", a.addr(), "/local", host=EXIT_NAME)
        self.assertGreater(self.entry_dns.count(EXIT_NAME), 0)
        self.assertEqual(self.exit_dns.count(), 0)
        self.last_session(b, target="127.0.0.1:%d" % self.origin.port)

    def test_name_rules_apply_before_anything_leaves(self):
        b = self.exit_ferry()
        a = self.entry_ferry(["b socks5 %s" % hostport(*b.addr())], ["via b"],
                             extra=["request block to .chain.test"])
        s, rep = self.socks5(a, EXIT_NAME, self.origin.port)
        self.assertEqual(rep, ft.REP_NOT_ALLOWED)
        time.sleep(0.2)
        self.assertEqual(b.sessions(), [])
        self.assertEqual(self.entry_dns.count() + self.exit_dns.count(), 0)


# --- BIND and RESOLVE through parents -----------------------------------------------------

class UDPEcho:
    """A UDP echo server on loopback that upper-cases and records each sender."""

    def __init__(self, testcase):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.peers = []
        self.stop = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()
        testcase.addCleanup(self.close)

    def run(self):
        deadline = time.monotonic() + 120
        while not self.stop and time.monotonic() < deadline:
            try:
                data, peer = self.sock.recvfrom(65535)
            except OSError:
                continue
            self.peers.append(peer)
            self.sock.sendto(data.upper(), peer)

    def close(self):
        self.stop = True
        self.thread.join(2)
        self.sock.close()


class UDPThroughParentsTest(ChainTest):
    """UDP ASSOCIATE through a SOCKS5 parent: PySocks datagrams through ferry to a UDP echo
    behind the parent; the parent's relay is the only peer our association talks to."""

    def pysocks_udp(self, ferry):
        u = socks.socksocket(socket.AF_INET, socket.SOCK_DGRAM)
        u.set_proxy(socks.SOCKS5, *ferry.addr())
        u.settimeout(5 * ft.SLOW)
        u.bind(("127.0.0.1", 0))
        self.addCleanup(u.close)
        return u

    def echo_through(self, ferry, echo, payloads):
        u = self.pysocks_udp(ferry)
        for p in payloads:
            u.sendto(p, ("127.0.0.1", echo.port))
            data, src = u.recvfrom(65535)
            self.assertEqual(data, p.upper())
            self.assertEqual(src, ("127.0.0.1", echo.port))
        u.close()

    def test_udp_through_a_ferry_parent(self):
        echo = UDPEcho(self)
        b = self.exit_ferry(extra=["private-destinations allow"])
        a = self.entry_ferry(["b socks5 %s" % hostport(*b.addr())], ["command udp via b"],
                             extra=["private-destinations allow"])
        self.echo_through(a, echo, [b"one", b"two", b"x" * 3000])
        sa = self.last_session(a, cmd="udp", route="1", via="b", reply="succeeded")
        self.assertTrue(sa["udp"].startswith("up:3/down:3"), sa)
        # The parent relayed them: its own association saw the three datagrams both ways.
        sb = b.wait_sessions(1)[0]
        self.assertEqual(sb["cmd"], "udp")
        self.assertTrue(sb["udp"].startswith("up:3/down:3"), sb)
        # The echo heard the parent's relay, never the client.
        self.assertEqual(len(set(echo.peers)), 1)

    def test_udp_datagrams_are_checked_here_first(self):
        echo = UDPEcho(self)
        b = self.exit_ferry(extra=["private-destinations allow"])
        a = self.entry_ferry(["b socks5 %s" % hostport(*b.addr())], ["command udp via b"],
                             extra=["private-destinations allow",
                                    "request block command udp port %d" % echo.port,
                                    "request pass"])
        u = self.pysocks_udp(a)
        u.sendto(b"blocked", ("127.0.0.1", echo.port))
        with self.assertRaises(socket.timeout):
            u.recvfrom(100)
        u.close()
        sa = self.last_session(a, cmd="udp", via="b")
        self.assertIn("blocked:1", sa["drop"])
        self.assertEqual(echo.peers, [])

    def test_udp_association_ends_with_the_parents_control_connection(self):
        # No grace: the parent closes its sessions, our association's control connection
        # among them, as soon as it is told to stop.
        b = self.exit_ferry(extra=["private-destinations allow", "shutdown-grace 0"])
        a = self.entry_ferry(["b socks5 %s" % hostport(*b.addr())], ["command udp via b"],
                             extra=["private-destinations allow"])
        s, rep = self.socks5(a, "0.0.0.0", 0, cmd=ft.CMD_UDP_ASSOCIATE)
        self.assertEqual(rep, ft.REP_SUCCEEDED)
        # Stopping the parent closes its end of the control connection: ours follows.
        b.stop()
        closed, _, _ = ft.wait_closed(s, 10 * ft.SLOW)
        self.assertTrue(closed)
        self.last_session(a, cmd="udp", via="b")

    def test_udp_through_a_danted_parent_with_username(self):
        echo = UDPEcho(self)
        user, password = ensure_system_user(self)
        port = start_danted(self, self.tmp)
        cred = self.credentials(user, password)
        a = self.entry_ferry(["dante socks5 127.0.0.1:%d credentials %s" % (port, cred)],
                             ["command udp via dante"], extra=["private-destinations allow"])
        self.echo_through(a, echo, [b"dante-1", b"dante-2"])
        sa = self.last_session(a, cmd="udp", via="dante", reply="succeeded")
        self.assertTrue(sa["udp"].startswith("up:2/down:2"), sa)

    def test_udp_to_a_name_goes_on_unresolved(self):
        echo = UDPEcho(self)
        b = self.exit_ferry(extra=["private-destinations allow"])
        a = self.entry_ferry(["b socks5 %s" % hostport(*b.addr())], ["command udp via b"],
                             extra=["private-destinations allow"])
        u = self.pysocks_udp(a)
        u.sendto(b"by-name", (EXIT_NAME, echo.port))
        data, _ = u.recvfrom(100)
        self.assertEqual(data, b"BY-NAME")
        u.close()
        # Only the exit looked the name up.
        self.assertGreater(self.exit_dns.count(EXIT_NAME), 0)
        self.assertEqual(self.entry_dns.count(EXIT_NAME), 0)


def connect_from(source, dest, timeout=5):
    s = socket.socket(socket.AF_INET6 if ":" in source else socket.AF_INET)
    s.settimeout(timeout)
    s.bind((source, 0))
    s.connect(dest)
    return s


class BindResolveTest(ChainTest):
    def test_bind_through_a_ferry_parent_passes_both_replies(self):
        b = self.exit_ferry()
        a = self.entry_ferry(["b socks5 %s" % hostport(*b.addr())], ["via b"])
        s, rep, baddr, bport = ft.socks5_open(a.addr(), "127.0.0.1", 0, cmd=ft.CMD_BIND)
        self.addCleanup(s.close)
        self.assertEqual(rep, ft.REP_SUCCEEDED)
        # Where the parent listens, not the entry.
        self.assertEqual(baddr, "127.0.0.1")
        self.assertNotIn(bport, (0, a.port, b.port))
        peer = connect_from("127.0.0.1", (baddr, bport))
        self.addCleanup(peer.close)
        rep, paddr, pport = ft.read_socks5_reply(s)
        self.assertEqual((rep, paddr, pport), (ft.REP_SUCCEEDED,) + peer.getsockname()[:2])
        s.sendall(b"from the client")
        self.assertEqual(ft.recv_exact(peer, 15), b"from the client")
        peer.sendall(b"from the peer")
        self.assertEqual(ft.recv_exact(s, 13), b"from the peer")
        peer.close()
        s.close()
        self.last_session(a, cmd="bind", via="b", reply="succeeded")
        self.last_session(b, cmd="bind", reply="succeeded", addr="%s:%d" % (paddr, pport))

    def test_bind_through_a_parent_times_out_with_ttl_expired(self):
        b = self.exit_ferry()
        a = self.entry_ferry(["b socks5 %s" % hostport(*b.addr())], ["via b"],
                             extra=["timeout bind 1s"])
        s, rep, baddr, bport = ft.socks5_open(a.addr(), "127.0.0.1", 0, cmd=ft.CMD_BIND)
        self.addCleanup(s.close)
        self.assertEqual(rep, ft.REP_SUCCEEDED)
        start = time.monotonic()
        rep, _, _ = ft.read_socks5_reply(s)
        self.assertEqual(rep, ft.REP_TTL_EXPIRED)
        self.assertLess(time.monotonic() - start, 5)
        self.assertTrue(ft.wait_closed(s, 3)[0])
        # The parent's side went with it.
        self.last_session(b, cmd="bind")

    def test_bind_refused_by_a_socks4a_parent_for_ipv6(self):
        # SOCKS4a carries no IPv6 address: a clear refusal, not a malformed request.
        b = self.exit_ferry()
        a = self.entry_ferry(["b socks4a %s" % hostport(*b.addr())], ["via b"])
        s, rep, _, _ = ft.socks5_open(a.addr(), "::1", 80, cmd=ft.CMD_CONNECT)
        self.addCleanup(s.close)
        self.assertEqual(rep, ft.REP_ADDRESS_TYPE_NOT_SUPPORTED)
        a.wait_line(r"parent b is SOCKS4a: it cannot carry an IPv6 address")

    def tor_resolve(self, ferry, *args):
        exe = shutil.which("tor-resolve")
        if exe is None:
            self.skipTest("tor-resolve not installed (Debian package tor)")
        r = ft.run([exe] + list(args) + [hostport(*ferry.addr())], timeout=30)
        ft.log("tor-resolve %s: rc=%d out=%r err=%r" % (args, r.returncode, r.stdout, r.stderr))
        return r.returncode, r.stdout.decode().strip()

    def test_resolve_through_a_ferry_parent_is_answered_by_the_exit(self):
        b = self.exit_ferry()
        a = self.entry_ferry(["b socks5 %s" % hostport(*b.addr())], ["via b"])
        self.assertEqual(self.tor_resolve(a, "-5", BOTH_NAME), (0, EXIT_ADDR))
        self.assertEqual(self.entry_dns.count(BOTH_NAME), 0)
        self.last_session(a, cmd="resolve", via="b", reply="succeeded")
        self.last_session(b, cmd="resolve", reply="succeeded")
        # A name only the exit knows.
        self.assertEqual(self.tor_resolve(a, "-5", EXIT_NAME), (0, "127.0.0.1"))

    def test_resolve_through_microsocks_falls_back_to_local(self):
        ms = start_microsocks(self)
        a = self.entry_ferry(["ms socks5 127.0.0.1:%d" % ms], ["via ms"])
        self.assertEqual(self.tor_resolve(a, "-5", BOTH_NAME), (0, ENTRY_ADDR))
        self.assertGreater(self.entry_dns.count(BOTH_NAME), 0)
        # microsocks was asked first and said no (REP 0x07).
        a.wait_line(r"via ms: parent ms refused %s:0: command-not-supported"
                    % re.escape(BOTH_NAME))
        self.last_session(a, cmd="resolve", reply="succeeded", addr="%s:0" % ENTRY_ADDR)

    def test_resolve_through_an_http_parent_is_local(self):
        port = start_tinyproxy(self, self.tmp)
        a = self.entry_ferry(["tp http 127.0.0.1:%d" % port], ["via tp"])
        self.assertEqual(self.tor_resolve(a, "-5", BOTH_NAME), (0, ENTRY_ADDR))


# --- active FTP (BIND) through a chain ----------------------------------------------------



def pyftpdlib_available():
    r = subprocess.run([sys.executable, "-c", "import pyftpdlib"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    return r.returncode == 0


FTP_MISSING = [what for what, ok in (
    ("dante-client (socksify)", shutil.which("socksify") is not None),
    ("an ftp client (ftp/tnftp)", shutil.which("ftp") is not None),
    ("python3-pyftpdlib", pyftpdlib_available()),
) if not ok]


@unittest.skipIf(FTP_MISSING, "not installed: %s" % ", ".join(FTP_MISSING))
class ActiveFTPChainTest(ChainTest):
    """ftp -A under socksify against ferry, which forwards CONNECT and BIND to a parent: the
    data connection comes from the FTP server to where the parent listens."""

    def setUp(self):
        super().setUp()
        self.root = os.path.join(self.tmp, "root")
        os.mkdir(self.root)
        self.data = os.urandom(300000)
        with open(os.path.join(self.root, "data.bin"), "wb") as f:
            f.write(self.data)
        ftpd = Proc(self, "pyftpdlib", [sys.executable, "-u", "-c", FTP_SERVER, "127.0.0.1",
                                        self.root])
        deadline = time.monotonic() + 10
        while not ftpd.output().strip() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.ftp_port = int(ftpd.output().split()[0])

    def download(self, ferry):
        conf = os.path.join(self.tmp, "socks.conf")
        with open(conf, "w") as f:
            f.write(textwrap.dedent("""\
                logoutput: stderr
                route {
                    from: 0.0.0.0/0 to: 0.0.0.0/0 via: %s port = %d
                    proxyprotocol: socks_v5
                    method: none
                    command: connect bind bindreply
                }
                """ % ferry.addr()))
        env = dict(CURL_ENV, SOCKS_CONF=conf, SOCKS_AUTOADD_LANROUTES="no")
        for k in ("SOCKS_SERVER", "SOCKS4_SERVER", "SOCKS5_SERVER"):
            env.pop(k, None)
        out = os.path.join(self.tmp, "out.bin")
        script = "user anonymous ferry@\nbinary\nget data.bin %s\nquit\n" % out
        r = subprocess.run(["socksify", "ftp", "-A", "-n", "-v", "127.0.0.1", str(self.ftp_port)],
                           input=script.encode(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=env, timeout=60)
        text = (r.stdout + r.stderr).decode("utf-8", "replace")
        ft.log("socksify ftp (rc %d):\n%s" % (r.returncode, text))
        self.assertIn("226", text, "no completed transfer")
        with open(out, "rb") as f:
            self.assertEqual(f.read(), self.data)
        lines = ferry.wait_sessions(2, timeout=10)
        self.assertEqual(sorted(l["cmd"] for l in lines), ["bind", "connect"])
        for l in lines:
            self.assertEqual(l["reply"], "succeeded", l)
        return lines

    def test_active_ftp_through_a_ferry_parent(self):
        b = self.exit_ferry()
        a = self.entry_ferry(["b socks5 %s" % hostport(*b.addr())], ["via b"])
        for l in self.download(a):
            self.assertEqual((l["route"], l["via"]), ("1", "b"), l)
        bind = [l for l in b.wait_sessions(2) if l["cmd"] == "bind"][0]
        self.assertTrue(bind["addr"].startswith("127.0.0.1:"), bind)
        self.assertGreaterEqual(int(bind["down"]), len(self.data))

    def test_active_ftp_through_a_danted_parent(self):
        user, password = ensure_system_user(self)
        port = start_danted(self, self.tmp)
        cred = self.credentials(user, password)
        a = self.entry_ferry(["dante socks5 127.0.0.1:%d credentials %s" % (port, cred)],
                             ["via dante"])
        for l in self.download(a):
            self.assertEqual(l["via"], "dante", l)


if __name__ == "__main__":
    ft.main()

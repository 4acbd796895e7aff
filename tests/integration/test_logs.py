"""Log formats and the log file through the real ferryd: access lines as JSON (read back with
python's json module) and as logfmt carry hostile user and domain names byte for byte (or with
U+FFFD for ill-formed UTF-8) without a forged line or a broken value; "log file" appends to a
file that SIGUSR1 reopens after logrotate renamed it, with no line lost or split; a reopen that
fails keeps the old file."""

import json
import os
import re
import signal
import socket
import tempfile
import threading
import time
import unittest

import ferrytest as ft

# A user name and a domain name as a client may send them: quotes, backslashes, line ends,
# control bytes (no NUL: RFC 1929 logins with one are refused), an escape sequence, a forged line, invalid UTF-8 and a valid non-ASCII name.
HOSTILE_USER = (b'ev"il\\ \n{"msg":"session","user":"root"}\r\x01\x1b[31m\x7f'
                b"\xff\xc3(\xe2\x82 jos\xc3\xa9 \xc2\x9b=x")
HOSTILE_NAME = (b'a"b\\c\nd\r\x01\x1b]0;x\x07\x7f.\xff\xfe.\xed\xa0\x80.'
                b"\xf0\x9f\x9a\xa2 q=1.example")
TIMESTAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
TEXT_LINE_RE = re.compile(r"^%s ferryd\[\d+\] (error|warning|notice|info|debug): " % TIMESTAMP)


def expected(raw):
    """A client string as JSON or logfmt carry it: UTF-8, each ill-formed part U+FFFD."""
    return raw.decode("utf-8", "replace")


def parse_logfmt(line):
    """key=value pairs of a logfmt line: bare values, or JSON-escaped quoted ones."""
    fields = {}
    i = 0
    while i < len(line):
        m = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=").match(line, i)
        if not m:
            raise AssertionError("not logfmt at %d: %r" % (i, line))
        key, i = m.group(1), m.end()
        if line.startswith('"', i):
            value, end = json.JSONDecoder().raw_decode(line, i)
            if not isinstance(value, str):
                raise AssertionError("quoted value is no string in %r" % line)
            i = end
        else:
            end = line.find(" ", i)
            end = len(line) if end < 0 else end
            value = line[i:end]
            if value == "" or any(c in value for c in '"=\\'):
                raise AssertionError("bad bare value %r in %r" % (value, line))
            i = end
        if key in fields:
            raise AssertionError("key %s twice in %r" % (key, line))
        fields[key] = value
        if i < len(line):
            if line[i] != " ":
                raise AssertionError("no space after %s in %r" % (key, line))
            i += 1
    return fields


def wait_for(testcase, pred, timeout=5.0):
    """Fail unless pred comes true within timeout (times SLOW)."""
    testcase.assertTrue(ft.wait_until(pred, timeout), "not so after %.0f s" % timeout)


def failed_login(ferry, user):
    """A SOCKS5 login with user and a wrong password: status 0x01, closed."""
    s = ft.connect(*ferry.addr())
    try:
        s.sendall(ft.socks5_greeting((ft.METHOD_USERPASS,)))
        if ft.read_method(s) != ft.METHOD_USERPASS:
            raise AssertionError("password method not chosen")
        s.sendall(ft.socks5_userpass(user, b"wrong"))
        ver, status = ft.recv_exact(s, 2)
        return status
    finally:
        s.close()


def connect_rep(ferry, host, port, **kw):
    s, rep, _, _ = ft.socks5_open(ferry.addr(), host, port, **kw)
    s.close()
    return rep


class FormatTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.users = ft.make_users_file(None, {"alice": "secret"})

    def start(self, fmt):
        return ft.start_ferryd(self, auth="password", users=self.users,
                               extra=["log-format %s" % fmt])

    def hostile_sessions(self, ferry):
        """A failed login by HOSTILE_USER and a CONNECT by alice to HOSTILE_NAME."""
        self.assertEqual(failed_login(ferry, HOSTILE_USER), 1)
        self.assertNotEqual(connect_rep(ferry, HOSTILE_NAME, 80, user="alice",
                                        password="secret"), ft.REP_SUCCEEDED)

    def test_json_lines_carry_hostile_names_exactly(self):
        ferry = self.start("json")
        echo = ft.EchoOrigin(self)
        self.hostile_sessions(ferry)
        s, rep, _, _ = ft.socks5_open(ferry.addr(), echo.host, echo.port, user="alice",
                                      password="secret")
        self.assertEqual(rep, ft.REP_SUCCEEDED)
        self.assertEqual(ft.echo_roundtrip(s, b"x" * 1000), b"x" * 1000)
        s.close()
        wait_for(self, lambda: sum('"msg":"session"' in l for l in ferry.lines) >= 3)
        ferry.stop()

        # Every line is one JSON object: nothing a client sent split one or made one up.
        objs = [json.loads(l) for l in ferry.lines]
        for o in objs:
            self.assertIsInstance(o, dict)
            self.assertRegex(o["time"], "^%s$" % TIMESTAMP)
            self.assertIn(o["level"], ("error", "warning", "notice", "info", "debug"))
            self.assertEqual(o["pid"], ferry.proc.pid)
            self.assertIsInstance(o["msg"], str)
        sessions = [o for o in objs if o["msg"] == "session"]
        self.assertEqual(len(sessions), 3, ferry.lines)
        failed, unreachable, echoed = sessions

        self.assertEqual(failed["user"], expected(HOSTILE_USER))
        self.assertEqual(failed["cmd"], None)
        self.assertEqual(failed["target"], None)
        self.assertEqual(failed["addr"], None)
        self.assertEqual(failed["reply"], None)
        self.assertEqual(failed["end"], "auth-failed")
        self.assertRegex(failed["client"], r"^127\.0\.0\.1:\d+$")

        self.assertEqual(unreachable["user"], "alice")
        self.assertEqual(unreachable["cmd"], "connect")
        self.assertEqual(unreachable["target"], expected(HOSTILE_NAME) + ":80")
        self.assertEqual(unreachable["reply"], "host-unreachable")
        self.assertEqual(unreachable["end"], "failure-reply")
        self.assertEqual((unreachable["up"], unreachable["down"]), (0, 0))

        self.assertEqual(echoed["target"], "127.0.0.1:%d" % echo.port)
        self.assertEqual(echoed["addr"], "127.0.0.1:%d" % echo.port)
        self.assertEqual(echoed["reply"], "succeeded")
        self.assertEqual((echoed["up"], echoed["down"]), (1000, 1000))
        self.assertIsInstance(echoed["duration"], float)
        self.assertNotIn("udp", echoed)
        self.assertNotIn("rule", echoed)

        # The notice about the failed login is JSON too, its user name escaped as before.
        notice = [o for o in objs if o["msg"].startswith("authentication failed")]
        self.assertEqual(len(notice), 1)
        self.assertIn("ev\"il\\x5c\\x20\\x0a{", notice[0]["msg"])

    def test_json_udp_association_has_its_counters(self):
        ferry = self.start("json")
        s, rep, _, _ = ft.socks5_open(ferry.addr(), "0.0.0.0", 0, user="alice",
                                      password="secret", cmd=ft.CMD_UDP_ASSOCIATE)
        self.assertEqual(rep, ft.REP_SUCCEEDED)
        s.close()
        wait_for(self, lambda: sum('"msg":"session"' in l for l in ferry.lines) >= 1)
        line = [json.loads(l) for l in ferry.lines if '"msg":"session"' in l][0]
        self.assertEqual(line["cmd"], "udp")
        self.assertEqual(line["udp"]["up"], 0)
        self.assertEqual(sorted(line["udp"]["drop"]),
                         sorted(["stranger", "frag", "malformed", "filtered", "resolve", "queue",
                                 "send", "oversize", "blocked"]))

    def test_logfmt_lines_carry_hostile_names_exactly(self):
        ferry = self.start("logfmt")
        self.hostile_sessions(ferry)
        s = ft.connect(*ferry.addr())
        s.sendall(ft.socks4_request("127.0.0.1", 9, userid=b"u"))
        ft.read_socks4_reply(s)
        s.close()
        wait_for(self, lambda: sum(" msg=session " in l for l in ferry.lines) >= 3)
        ferry.stop()

        lines = [parse_logfmt(l) for l in ferry.lines]
        for f in lines:
            self.assertRegex(f["time"], "^%s$" % TIMESTAMP)
            self.assertEqual(f["pid"], str(ferry.proc.pid))
        self.assertTrue(any(f["msg"].startswith("listening on ") for f in lines))
        sessions = [f for f in lines if f["msg"] == "session"]
        self.assertEqual(len(sessions), 3, ferry.lines)
        failed, unreachable, socks4 = sessions
        self.assertEqual(failed["user"], expected(HOSTILE_USER))
        self.assertEqual(failed["end"], "auth-failed")
        self.assertNotIn("cmd", failed)
        self.assertNotIn("target", failed)
        self.assertEqual(unreachable["target"], expected(HOSTILE_NAME) + ":80")
        self.assertEqual(unreachable["user"], "alice")
        self.assertEqual(unreachable["reply"], "host-unreachable")
        self.assertEqual(socks4["cmd"], "socks4-connect")
        self.assertEqual(socks4["target"], "127.0.0.1:9")
        self.assertEqual(socks4["up"], "0")

    def test_reload_with_another_format_says_it_needs_a_restart(self):
        ferry = self.start("json")
        text = ft.make_config(listen=("127.0.0.1:%d" % ferry.port,), auth="password",
                              users=self.users, extra=["log-format logfmt"])
        with open(ferry.conf_path, "w") as f:
            f.write(text)
        n = len(ferry.lines)
        ferry.proc.send_signal(signal.SIGHUP)
        ferry.wait_line(r"the log target or format changed", start=n)
        # still JSON
        ferry.wait_line(r'^\{"time":.*"msg":"reloaded', start=n)


class LogFileTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="ferrylog-")
        self.logdir = os.path.join(self.dir, "logs")
        os.mkdir(self.logdir)
        self.path = os.path.join(self.logdir, "ferryd.log")
        self.echo = ft.EchoOrigin(self)

    def start(self, extra=()):
        text = ft.make_config(extra=["workers 2"] + list(extra))
        text = text.replace("log stderr\n", "log file %s\n" % self.path)
        ferry = ft.Ferryd(self, text, wait=False)
        m = self.wait_file_line(self.path, r"listening on [0-9.]+:(\d+)")
        ferry.addrs.append(("127.0.0.1", int(m.group(1))))
        return ferry

    def read_lines(self, path):
        with open(path, "rb") as f:
            data = f.read()
        self.assertTrue(data == b"" or data.endswith(b"\n"), "cut line at the end of %s" % path)
        lines = data.decode("utf-8").split("\n")[:-1]
        for l in lines:
            self.assertRegex(l, TEXT_LINE_RE, "a split or mixed line in %s" % path)
        return lines

    def wait_file_line(self, path, regex, timeout=10.0):
        deadline = time.monotonic() + timeout * ft.SLOW
        pat = re.compile(regex)
        while time.monotonic() < deadline:
            if os.path.exists(path):
                with open(path, "rb") as f:
                    for l in f.read().decode("utf-8", "replace").splitlines():
                        m = pat.search(l)
                        if m:
                            return m
            time.sleep(0.02)
        raise AssertionError("no line matching %r in %s" % (regex, path))

    def sessions_in(self, path):
        return [l for l in self.read_lines(path) if ft.parse_session_line(l) is not None]

    def one_session(self, ferry):
        s, rep, _, _ = ft.socks5_open(ferry.addr(), self.echo.host, self.echo.port)
        try:
            self.assertEqual(rep, ft.REP_SUCCEEDED)
            self.assertEqual(ft.echo_roundtrip(s, b"rotate"), b"rotate")
        finally:
            s.close()

    def test_an_existing_file_is_appended_to(self):
        with open(self.path, "w") as f:
            f.write("2020-01-01T00:00:00.000Z ferryd[1] notice: an older line\n")
        ferry = self.start()
        self.one_session(ferry)
        wait_for(self, lambda: len(self.sessions_in(self.path)) == 1)
        with open(self.path) as f:
            self.assertTrue(f.readline().endswith(" an older line\n"))

    def test_a_new_file_has_mode_0640_and_stderr_stays_quiet(self):
        ferry = self.start()
        umask = os.umask(0)
        os.umask(umask)
        self.assertEqual(os.stat(self.path).st_mode & 0o777, 0o640 & ~umask)
        ferry.stop()
        self.assertTrue(any(l.endswith("notice: stopped") for l in self.read_lines(self.path)))
        self.assertFalse(any(TEXT_LINE_RE.match(l) for l in ferry.lines), ferry.lines)

    def test_sigusr1_after_rename_moves_to_a_new_file_losing_no_line(self):
        ferry = self.start()
        for _ in range(5):
            self.one_session(ferry)
        wait_for(self, lambda: len(self.sessions_in(self.path)) == 5)

        # Sessions from two client threads while the file is renamed and reopened: both
        # workers log during the reopen.
        done = []
        stop = threading.Event()

        def loop():
            deadline = time.monotonic() + 20 * ft.SLOW
            for _ in range(300):
                if stop.is_set() or time.monotonic() > deadline:
                    break
                self.one_session(ferry)
                done.append(1)

        threads = [threading.Thread(target=loop) for _ in range(2)]
        for t in threads:
            t.start()
        try:
            wait_for(self, lambda: len(done) >= 10, 10)
            rotated = self.path + ".1"
            os.rename(self.path, rotated)
            ferry.proc.send_signal(signal.SIGUSR1)
            self.wait_file_line(self.path, r"notice: log file .*ferryd\.log reopened")
            self.wait_file_line(self.path, r"notice: stats: sessions")
            n = len(done)
            wait_for(self, lambda: len(done) >= n + 10, 10)
        finally:
            stop.set()
            for t in threads:
                t.join(30)
        old_size = os.path.getsize(rotated)
        for _ in range(5):
            self.one_session(ferry)
        total = 5 + len(done) + 5
        wait_for(self, lambda: len(self.sessions_in(rotated)) + len(self.sessions_in(self.path))
                 == total)
        ferry.stop()

        old, new = self.sessions_in(rotated), self.sessions_in(self.path)
        self.assertEqual(len(old) + len(new), total)
        self.assertGreaterEqual(len(old), 5 + 10)
        self.assertGreaterEqual(len(new), 10 + 5)
        # Nothing went to the old file once the new one had the reopen line.
        self.assertEqual(os.path.getsize(rotated), old_size)
        self.assertFalse(any("reopened" in l for l in self.read_lines(rotated)))
        self.assertTrue(any(l.endswith("notice: stopped") for l in self.read_lines(self.path)))

    def test_failed_reopen_keeps_the_old_file_and_says_so(self):
        ferry = self.start()
        self.one_session(ferry)
        moved = os.path.join(self.dir, "logs.old")
        os.rename(self.logdir, moved)
        old = os.path.join(moved, "ferryd.log")
        ferry.proc.send_signal(signal.SIGUSR1)
        self.wait_file_line(old, r"error: cannot reopen the log file %s: No such file or "
                                 r"directory; still writing to the one open"
                                 % re.escape(self.path))
        self.one_session(ferry)
        wait_for(self, lambda: len(self.sessions_in(old)) == 2)
        # Once the directory is back, the next SIGUSR1 opens the file.
        os.mkdir(self.logdir)
        ferry.proc.send_signal(signal.SIGUSR1)
        self.wait_file_line(self.path, r"log file .* reopened")
        self.one_session(ferry)
        wait_for(self, lambda: len(self.sessions_in(self.path)) == 1)
        self.assertEqual(len(self.sessions_in(old)), 2)

    def test_unopenable_file_stops_ferryd_at_start(self):
        path = os.path.join(self.dir, "missing", "ferryd.log")
        conf = os.path.join(self.dir, "ferryd.conf")
        with open(conf, "w") as f:
            f.write(ft.make_config().replace("log stderr\n", "log file %s\n" % path))
        r = ft.run(ft.ferryd_argv("-f", conf))
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"ferryd: log file %s: No such file or directory\n" % path.encode(),
                      r.stderr)

if __name__ == "__main__":
    ft.main()

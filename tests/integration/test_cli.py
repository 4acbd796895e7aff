"""ferryd's command line: -V, -h, -t with good and bad files, signals, a port already in use;
the long forms, and the quick flags (--listen, --users, --log-level, --user, --group) over the
file's settings, with the safe defaults kept and the flags applied again on reload."""

import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import unittest

import ferrytest as ft


def configure_version():
    with open(os.path.join(ft.SRCDIR, "configure.ac")) as f:
        m = re.search(r"AC_INIT\(\[ferry\],\s*\[([^\]]+)\]", f.read())
    return m.group(1) if m else None


class CLITest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="ferrycli-")

    def write(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def ferryd(self, *args, timeout=10):
        return ft.run(ft.ferryd_argv(*args), timeout=timeout)

    def check(self, path):
        r = self.ferryd("-t", "-f", path)
        return r.returncode, r.stderr.decode("utf-8", "replace")

    def test_version_prints_name_and_version(self):
        r = self.ferryd("-V")
        self.assertEqual(r.returncode, 0)
        out = (r.stdout + r.stderr).decode()
        version = configure_version()
        self.assertIsNotNone(version)
        self.assertRegex(out.strip(), r"^ferryd %s\b" % re.escape(version))

    def test_help_lists_options_and_exits_0(self):
        r = self.ferryd("-h")
        self.assertEqual(r.returncode, 0)
        out = (r.stdout + r.stderr).decode()
        for opt in ("-f", "-t", "-V", "-h"):
            self.assertIn(opt, out)
        self.assertRegex(out.lower(), "usage")

    def test_unknown_option_fails(self):
        r = self.ferryd("--no-such-option")
        self.assertNotEqual(r.returncode, 0)
        self.assertNotEqual(r.stderr, b"")

    def test_check_good_config_exits_0(self):
        users = ft.make_users_file(self, {"alice": "pw"}, self.dir)
        path = self.write("good.conf", """# a comment
listen 127.0.0.1:1080   # trailing comment
listen [::1]:1080
auth password none
users %s
resolver 127.0.0.1:5353,[::1]:5353
resolver-timeout 2s
resolver-tries 2
timeout negotiate 10s
timeout resolve 500ms
timeout connect 10s
timeout idle 5m
log stderr
log-level debug
max-sessions 100
relay buffered
auth-threads 2
""" % users)
        rc, err = self.check(path)
        self.assertEqual(rc, 0, err)

    def test_check_bad_configs_name_file_and_line(self):
        cases = [
            ("listen 127.0.0.1:0\nfrobnicate yes\n", 2),
            ("# comment\n\nlisten 127.0.0.1:99999\n", 3),
            ("listen not-an-address\n", 1),
            ("log stderr\ntimeout idle forever\n", 2),
            ("timeout negotiate\n", 1),
            ("timeout sometimes 1s\n", 1),
            ("log-level loud\n", 1),
            ("relay fast\n", 1),
            ("auth none\nauth kerberos\n", 2),
            ("max-sessions many\n", 1),
            ("resolver-tries lots\n", 1),
            ("log stderr\nlog paper\n", 2),
        ]
        for text, line in cases:
            with self.subTest(text=text):
                path = self.write("bad.conf", text)
                rc, err = self.check(path)
                self.assertEqual(rc, 1, err)
                self.assertIn("bad.conf:%d:" % line, err)

    def test_check_password_without_users_file_fails(self):
        path = self.write("nousers.conf", "auth password\n")
        rc, err = self.check(path)
        self.assertEqual(rc, 1)
        self.assertIn("nousers.conf", err)
        self.assertIn("users", err)

    def test_check_users_file_with_bad_line_names_it(self):
        users = ft.make_users_file(self, {"alice": "pw"}, self.dir)
        with open(users) as f:
            good = f.read()
        bad = self.write("bad-users", "# users\n" + good + "this line has no colon\n")
        os.chmod(bad, 0o600)
        nlines = 1 + good.count("\n") + 1
        path = self.write("u.conf", "auth password\nusers %s\n" % bad)
        rc, err = self.check(path)
        self.assertEqual(rc, 1, err)
        self.assertIn("bad-users:%d:" % nlines, err)

    def test_users_file_others_may_write_is_refused_and_world_readable_warned(self):
        users = ft.make_users_file(self, {"alice": "pw"}, self.dir)
        path = self.write("perm.conf", "auth password\nusers %s\n" % users)
        self.assertEqual(os.stat(users).st_mode & 0o7777, 0o600)  # as ferry-passwd made it
        rc, err = self.check(path)
        self.assertEqual((rc, err), (0, ""))
        for mode, who in ((0o620, "its group"), (0o602, "every user"), (0o666, "every user")):
            os.chmod(users, mode)
            rc, err = self.check(path)
            self.assertEqual(rc, 1, err)
            self.assertIn("%s: writable by %s (mode %04o)" % (users, who, mode), err)
        os.chmod(users, 0o644)
        rc, err = self.check(path)
        self.assertEqual(rc, 0, err)
        self.assertIn("warning: %s is readable by every user (mode 0644)" % users, err)
        os.chmod(users, 0o640)
        self.assertEqual(self.check(path), (0, ""))

    def test_ferry_passwd_tightens_a_loose_users_file(self):
        users = ft.make_users_file(self, {"alice": "pw"}, self.dir)
        os.chmod(users, 0o666)
        r = ft.run([ft.FERRY_PASSWD, users, "bob"], input=b"pw2\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b"mode 0666 tightened to 0640", r.stderr)
        self.assertEqual(os.stat(users).st_mode & 0o7777, 0o640)
        os.chmod(users, 0o600)
        r = ft.run([ft.FERRY_PASSWD, "-d", users, "bob"])
        self.assertEqual((r.returncode, r.stderr), (0, b""))
        self.assertEqual(os.stat(users).st_mode & 0o7777, 0o600)

    def test_check_missing_users_file_fails(self):
        missing = os.path.join(self.dir, "no-such-users")
        path = self.write("m.conf", "auth password\nusers %s\n" % missing)
        rc, err = self.check(path)
        self.assertEqual(rc, 1)
        self.assertIn("no-such-users", err)

    def test_missing_config_file_fails(self):
        rc, err = self.check(os.path.join(self.dir, "absent.conf"))
        self.assertEqual(rc, 1)
        self.assertIn("absent.conf", err)

    def test_shipped_config_passes_check(self):
        shipped = os.path.join(ft.SRCDIR, "etc", "ferryd.conf")
        self.assertTrue(os.path.exists(shipped), shipped)
        rc, err = self.check(shipped)
        self.assertEqual(rc, 0, err)

    def stop_with(self, sig):
        echo = ft.EchoOrigin(self)
        ferry = ft.start_ferryd(self, extra=["shutdown-grace 0"])
        s, rep, _, _ = ft.socks5_open(ferry.addr(), "127.0.0.1", echo.port)
        with s:
            self.assertEqual(rep, ft.REP_SUCCEEDED)
            start = time.monotonic()
            ferry.proc.send_signal(sig)
            try:
                rc = ferry.proc.wait(3)
            except subprocess.TimeoutExpired:
                self.fail("ferryd still running 3 s after signal %d" % sig)
            self.assertEqual(rc, 0)
            self.assertLess(time.monotonic() - start, 3)

    def test_sigterm_exits_0_promptly_with_a_session_open(self):
        self.stop_with(signal.SIGTERM)

    def test_sigint_exits_0_promptly(self):
        self.stop_with(signal.SIGINT)

    def test_second_signal_ends_the_shutdown_grace_at_once(self):
        echo = ft.EchoOrigin(self)
        ferry = ft.start_ferryd(self, extra=["shutdown-grace 30s"])
        s, rep, _, _ = ft.socks5_open(ferry.addr(), "127.0.0.1", echo.port)
        with s:
            self.assertEqual(rep, ft.REP_SUCCEEDED)
            ferry.proc.send_signal(signal.SIGTERM)
            # The listener closes at once while the open session may go on.
            ft.wait_listener_closed(ferry.addr(), 2)
            s.sendall(b"still here\n")
            self.assertEqual(ft.recv_exact(s, 11), b"still here\n")
            self.assertIsNone(ferry.proc.poll())
            start = time.monotonic()
            ferry.proc.send_signal(signal.SIGTERM)
            try:
                rc = ferry.proc.wait(3)
            except subprocess.TimeoutExpired:
                self.fail("ferryd still running 3 s after the second signal")
            self.assertEqual(rc, 0)
            self.assertLess(time.monotonic() - start, 3)
            self.assertEqual(ft.recv_until_eof(s, 64), b"")

    def test_listen_on_port_in_use_exits_1_with_message(self):
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen(1)
            port = busy.getsockname()[1]
            conf = ft.make_config(listen=["127.0.0.1:%d" % port])
            path = self.write("busy.conf", conf)
            r = self.ferryd("-f", path, timeout=10)
            err = r.stderr.decode("utf-8", "replace")
            self.assertEqual(r.returncode, 1, err)
            self.assertIn("in use", err.lower())
            self.assertIn(str(port), err)

    # --- long forms and quick flags ---------------------------------------------------------

    def test_long_forms_match_the_short_ones(self):
        short, long_ = self.ferryd("-V"), self.ferryd("--version")
        self.assertEqual((long_.returncode, long_.stdout), (0, short.stdout))
        r = self.ferryd("--help")
        self.assertEqual(r.returncode, 0)
        out = r.stdout.decode()
        for opt in ("--config", "--check", "--verbose", "--quiet", "--version", "--help",
                    "--listen", "--users", "--log-level", "--user", "--group"):
            self.assertIn(opt, out)
        # The precedence is stated where the flags are listed.
        self.assertIn("A flag replaces the file's matching setting", out)
        path = self.write("ok.conf", "listen 127.0.0.1:0\n")
        for args in (("--check", "--config", path), ("--config=%s" % path, "--check"),
                     ("-t", "-f", path)):
            r = self.ferryd(*args)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn(b"configuration OK", r.stdout)

    def test_bad_flags_are_refused_with_usage(self):
        for args, msg in ((("--listen",), "option --listen needs an argument"),
                          (("--check=yes",), "option --check takes no argument"),
                          (("--users", "a", "--users", "b"), "--users given twice"),
                          (("extra",), "unexpected argument 'extra'")):
            with self.subTest(args=args):
                r = self.ferryd(*args)
                err = r.stderr.decode()
                self.assertEqual(r.returncode, 1, err)
                self.assertIn("ferryd: " + msg, err)
                self.assertIn("usage:", err)

    def test_quick_flags_keep_the_safe_defaults(self):
        users = ft.make_users_file(self, {"alice": "pw"}, self.dir)
        # The command: all it needs, checked without binding a public address.
        r = self.ferryd("--check", "--listen", "0.0.0.0:1080", "--users", users)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b"built-in defaults: configuration OK", r.stdout)
        for args, msg in (
                (("--listen", "0.0.0.0:1080"),
                 "command line: --listen 0.0.0.0:1080 is not a loopback address and auth "
                 "allows 'none': give --users FILE"),
                (("--listen", "127.0.0.1", "--listen", "[::]"),
                 "command line: --listen [::]:1080 is not a loopback address"),
                (("--listen", "nowhere"), "command line: listen: 'nowhere' is not an address"),
                (("--log-level", "loud"), "command line: log-level: unknown level 'loud'"),
                (("--users", os.path.join(self.dir, "absent")), "absent: No such file"),
                (("--user", "no-such-user-of-ferry"),
                 "user no-such-user-of-ferry: no such user"),
                (("--group", "nogroup"), "command line: group needs user"),
                (("--user", "root"), "user root is root")):
            with self.subTest(args=args):
                r = self.ferryd("--check", *args)
                err = r.stderr.decode()
                self.assertEqual(r.returncode, 1, err)
                self.assertIn(msg, err)

    def test_listen_flag_does_not_carry_the_files_unauthenticated_exemption(self):
        path = self.write("open.conf", "listen 10.1.2.3:1080\nallow-unauthenticated yes\n"
                                       "client pass from 10.0.0.0/8\n")
        self.assertEqual(self.check(path), (0, ""))
        r = self.ferryd("--check", "-f", path, "--listen", "0.0.0.0:1080")
        err = r.stderr.decode()
        self.assertEqual(r.returncode, 1, err)
        self.assertIn("--listen 0.0.0.0:1080 is not a loopback address, and %s:2 allows "
                      "unauthenticated clients for the file's own listen lines" % path, err)
        # A loopback --listen is no wider than the file: accepted.
        r = self.ferryd("--check", "-f", path, "--listen", "127.0.0.1:1080")
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_flags_without_a_file_serve_with_passwords_only(self):
        users = ft.make_users_file(self, {"alice": "pw"}, self.dir)
        port = ft.free_port()
        ferry = ft.Ferryd(self, None, listeners=1,
                          args=["--listen", "127.0.0.1:%d" % port, "--users", users])
        self.assertEqual(ferry.addrs, [("127.0.0.1", port)])
        # No authentication is no longer offered.
        with ft.connect("127.0.0.1", port) as s:
            s.sendall(ft.socks5_greeting((ft.METHOD_NOAUTH,)))
            self.assertEqual(ft.read_method(s), ft.METHOD_NONE)
        with self.assertRaisesRegex(AssertionError, "auth status"):
            ft.socks5_open(ferry.addr(), "127.0.0.1", 9, user="alice", password="wrong")
        # The login passes; the loopback target stays blocked, as every safe default does
        # with passwords (trusted-clients none).
        s, rep, _, _ = ft.socks5_open(ferry.addr(), "127.0.0.1", 9, user="alice", password="pw")
        s.close()
        self.assertEqual(rep, ft.REP_NOT_ALLOWED)

    def test_flags_override_the_file_and_again_on_reload(self):
        echo = ft.EchoOrigin(self)
        users = ft.make_users_file(self, {"alice": "pw"}, self.dir)
        file_port, flag_port = ft.free_port(), ft.free_port()
        conf = ("listen 127.0.0.1:%d\nlog-level err\nworkers 1\nresolver 127.0.0.1:%d\n"
                "trusted-clients 127.0.0.0/8\n" % (file_port, ft.closed_port()))
        ferry = ft.Ferryd(self, conf, listeners=1,
                          args=["--listen", "127.0.0.1:%d" % flag_port, "--users", users,
                                "--log-level", "debug"])
        self.assertEqual(ferry.addrs, [("127.0.0.1", flag_port)])
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", file_port), timeout=2).close()

        def roundtrip(payload):
            s, rep, _, _ = ft.socks5_open(ferry.addr(), "127.0.0.1", echo.port, user="alice",
                                          password="pw")
            with s:
                self.assertEqual(rep, ft.REP_SUCCEEDED)
                self.assertEqual(ft.echo_roundtrip(s, payload), payload)

        roundtrip(b"before\n")
        # --log-level debug won over the file's err.
        ferry.wait_line(r"debug: checking the password of user 'alice'")
        start = len(ferry.lines)
        ferry.proc.send_signal(signal.SIGHUP)
        ferry.wait_line(r"reloaded .* \(configuration 2\)", start=start)
        roundtrip(b"after\n")
        ferry.wait_line(r"debug: checking the password of user 'alice'", start=start)
        with ferry.cond:
            self.assertFalse([l for l in ferry.lines[start:] if "listen lines changed" in l],
                             ferry.lines[start:])



class TunnelFlagsTest(unittest.TestCase):
    """The README's "Instead of ssh -D": three commands on each side and no configuration file.
    The server: ferry-keygen, one line into authorized_keys, ferryd --tunnel-listen ... --key
    ... --authorized-keys ...; the client: ferry-keygen, ferryd --tunnel ... --server-key."""

    def test_server_and_client_from_flags_alone(self):
        from ferrytest import keygen, CURL_ENV
        d = tempfile.mkdtemp(prefix="ferrycli-")
        self.addCleanup(__import__("shutil").rmtree, d, True)
        spub = keygen(os.path.join(d, "server.key"))
        cpub = keygen(os.path.join(d, "client.key"))
        with open(os.path.join(d, "authorized_keys"), "w") as f:
            f.write("%s alice\n" % cpub)
        server = ft.Ferryd(self, None, listeners=1, args=(
            "--tunnel-listen", "127.0.0.1:0", "--key", os.path.join(d, "server.key"),
            "--authorized-keys", os.path.join(d, "authorized_keys")))
        # Only the tunnel listener: the built-in loopback SOCKS port is not opened.
        self.assertEqual(len(server.addrs), 1)
        client = ft.Ferryd(self, None, listeners=1, args=(
            "--tunnel", "127.0.0.1:%d" % server.port, "--server-key", spub,
            "--key", os.path.join(d, "client.key"), "--listen", "127.0.0.1:0"))
        origin = ft.HTTPOrigin(self)
        r = subprocess.run(["curl", "-sS", "--max-time", "%d" % (10 * ft.SLOW), "-x",
                            "socks5h://127.0.0.1:%d" % client.port, origin.url("/flags")],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=CURL_ENV,
                           timeout=30 * ft.SLOW)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, ft.HTTPOrigin.body("/flags"))
        line = server.wait_sessions(1)[0]
        self.assertEqual(line["user"], "alice")
        # Plain SOCKS on the tunnel port gets nothing back.
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
            s.sendall(b"\x05\x01\x00")
            s.settimeout(0.5)
            with self.assertRaises(socket.timeout):
                s.recv(10)

    def test_tunnel_listen_without_keys_names_the_flags(self):
        r = subprocess.run(ft.ferryd_argv("-t", "--tunnel-listen", "127.0.0.1:1081"),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10)
        self.assertEqual(r.returncode, 1)
        self.assertIn("needs 'tunnel key PATH' and 'tunnel authorized-keys PATH' (on the command "
                      "line: --key PATH --authorized-keys PATH)", r.stderr.decode())

if __name__ == "__main__":
    ft.main()

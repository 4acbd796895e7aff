"""Running as a service: socket activation through systemd's own systemd-socket-activate (the
passed sockets used instead of binding, checked to be listening stream sockets), the
privilege drop after binding a port below 1024 (checked in /proc/PID/status, with SOCKS
requests and a reload after the drop), and the zero-downtime upgrade on SIGUSR2 (a client loop
through it counts no failed connection)."""

import os
import re
import pwd
import grp
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

import ferrytest as ft

ACTIVATE = shutil.which("systemd-socket-activate") or "/lib/systemd/systemd-socket-activate"
CURL_ENV = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}


def curl_socks5(proxy, url):
    argv = ["curl", "-sS", "--max-time", str(10 * ft.SLOW), "--connect-timeout", "5",
            "--socks5", "%s:%d" % proxy, url]
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=30 * ft.SLOW, env=CURL_ENV)


def status_fields(pid):
    """/proc/PID/status as a dict of its fields."""
    with open("/proc/%d/status" % pid) as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def free_low_port():
    """A port below 1024 that nothing uses on 127.0.0.1 now."""
    for port in range(1023, 900, -1):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise unittest.SkipTest("no free port below 1024 on 127.0.0.1")


@unittest.skipUnless(os.access(ACTIVATE, os.X_OK), "systemd-socket-activate not installed")
class SocketActivationTest(unittest.TestCase):
    def activated(self, port, conf, *activate_args):
        """ferryd under systemd-socket-activate listening on 127.0.0.1:port; it starts ferryd at
        the first connection."""
        prefix = [ACTIVATE, "-l", "127.0.0.1:%d" % port] + list(activate_args)
        ferry = ft.Ferryd(self, conf, listeners=1, wait=False, prefix=prefix)
        ferry.wait_line(r"Listening on 127\.0\.0\.1:%d as 3" % port, timeout=10)
        return ferry

    def test_passed_socket_serves_curl_and_the_listen_lines_are_not_used(self):
        origin = ft.HTTPOrigin(self)
        port, unused = ft.free_port(), ft.free_port()
        conf = ft.make_config(listen=["127.0.0.1:%d" % unused])
        ferry = self.activated(port, conf, "--fdname=socks")
        # The first connection makes systemd-socket-activate start ferryd on its socket.
        r = curl_socks5(("127.0.0.1", port), origin.url("/activated"))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, ft.HTTPOrigin.body("/activated"))
        ferry.wait_listening()
        self.assertEqual(ferry.addrs, [("127.0.0.1", port)])
        ferry.wait_line(r"socket activation: 127\.0\.0\.1:%d \(socks\): 1 socket for 1 worker"
                        % port)
        ferry.wait_line(r"socket activation: 1 socket passed; the configured listen addresses "
                        r"are not used")
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", unused), timeout=2).close()
        # Several requests on the same socket, and the same after a reload.
        r = curl_socks5(("127.0.0.1", port), origin.url("/again"))
        self.assertEqual(r.stdout, ft.HTTPOrigin.body("/again"))
        start = len(ferry.lines)
        ferry.proc.send_signal(signal.SIGHUP)
        ferry.wait_line(r"reloaded .*configuration 2", start=start)
        r = curl_socks5(("127.0.0.1", port), origin.url("/reloaded"))
        self.assertEqual(r.stdout, ft.HTTPOrigin.body("/reloaded"))
        self.assertEqual(len(ferry.wait_sessions(3)), 3)

    def test_a_passed_socket_takes_protocols_from_the_listen_line_of_its_address(self):
        origin = ft.HTTPOrigin(self)
        port = ft.free_port()
        conf = ft.make_config(listen=["127.0.0.1:%d protocols http" % port])
        self.activated(port, conf)
        # The first connection starts ferryd: HTTP CONNECT is served ...
        argv = ["curl", "-sS", "--max-time", str(10 * ft.SLOW), "-p", "-x",
                "http://127.0.0.1:%d" % port, origin.url("/http")]
        r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=30 * ft.SLOW, env=CURL_ENV)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, ft.HTTPOrigin.body("/http"))
        # ... and SOCKS5 is closed without a reply, as on a listener of that line.
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"\x05\x01\x00")
            self.assertEqual(s.recv(10), b"")
        r = curl_socks5(("127.0.0.1", port), origin.url("/socks"))
        self.assertNotEqual(r.returncode, 0)

    def test_workers_share_the_passed_socket(self):
        origin = ft.HTTPOrigin(self)
        port = ft.free_port()
        ferry = self.activated(port, ft.make_config(listen=[], extra=["workers 3"]))
        for i in range(6):
            r = curl_socks5(("127.0.0.1", port), origin.url("/w%d" % i))
            self.assertEqual(r.stdout, ft.HTTPOrigin.body("/w%d" % i), r.stderr)
        ferry.wait_line(r"started with 3 workers")
        ferry.wait_line(r"socket activation: 127\.0\.0\.1:%d: 1 socket for 3 workers" % port)

    def test_datagram_socket_is_refused_clearly(self):
        port = ft.free_port()
        ferry = self.activated(port, ft.make_config(listen=[]), "--datagram")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.sendto(b"wake up", ("127.0.0.1", port))
        rc = ferry.proc.wait(10 * ft.SLOW)
        ferry.expected_rc = 1
        ferry.reader.join(5)
        with ferry.cond:
            text = "\n".join(ferry.lines)
        self.assertEqual(rc, 1, text)
        self.assertIn("socket activation: fd 3 is not a stream socket (ferryd needs "
                      "ListenStream=)", text)

    def test_socket_not_listening_is_refused(self):
        d = tempfile.mkdtemp(prefix="ferryact-")
        path = os.path.join(d, "ferryd.conf")
        with open(path, "w") as f:
            f.write(ft.make_config(listen=["127.0.0.1:%d" % ft.free_port()]))
        # fd 3 a bound TCP socket that does not listen, LISTEN_PID ferryd's own (sh execs it).
        script = ('LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=x; '
                  'export LISTEN_PID LISTEN_FDS LISTEN_FDNAMES; exec "$@"')
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            r = subprocess.run(["/bin/sh", "-c", script, "sh"] + ft.ferryd_argv("-f", path),
                               preexec_fn=lambda: os.dup2(s.fileno(), 3), pass_fds=(3,),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               timeout=20 * ft.SLOW)
        err = r.stderr.decode()
        self.assertEqual(r.returncode, 1, err)
        self.assertIn("socket activation: fd 3 (x) is not listening (Accept=no is needed)", err)


@unittest.skipUnless(os.geteuid() == 0, "the privilege drop needs root")
class PrivilegeDropTest(unittest.TestCase):
    def setUp(self):
        self.nobody = pwd.getpwnam("nobody")
        self.nogroup = grp.getgrnam("nogroup")
        self.dir = tempfile.mkdtemp(prefix="ferrydrop-")
        os.chmod(self.dir, 0o755)
        self.users = ft.make_users_file(self, {"alice": "pw"}, self.dir)
        self.share(self.users)

    def share(self, path):
        """Readable by group nogroup, as ferryd.conf(5) asks for a dropped ferryd."""
        os.chown(path, 0, self.nogroup.gr_gid)
        os.chmod(path, 0o640)

    def conf(self, text):
        path = os.path.join(self.dir, "ferryd.conf")
        with open(path, "w") as f:
            f.write(text)
        self.share(path)
        return path

    def socks_echo(self, ferry, echo, user, password, payload):
        s, rep, _, _ = ft.socks5_open(ferry.addr(), "127.0.0.1", echo.port, user=user,
                                      password=password)
        with s:
            self.assertEqual(rep, ft.REP_SUCCEEDED)
            self.assertEqual(ft.echo_roundtrip(s, payload), payload)

    def test_drop_after_binding_a_low_port_then_serve_and_reload(self):
        echo = ft.EchoOrigin(self)
        port = free_low_port()
        path = self.conf(ft.make_config(listen=["127.0.0.1:%d" % port], auth="password",
                                        users=self.users,
                                        extra=["workers 2", "user nobody", "group nogroup",
                                               "run-as-root no"]))
        ferry = ft.Ferryd(self, None, listeners=1, args=["-f", path])
        self.assertEqual(ferry.addrs, [("127.0.0.1", port)])
        ferry.wait_line(r"running as user nobody \(uid %d\), group nogroup \(gid %d\), "
                        r"no_new_privs set" % (self.nobody.pw_uid, self.nogroup.gr_gid))
        # Every thread: the main one, the workers and their password threads.
        tasks = os.listdir("/proc/%d/task" % ferry.proc.pid)
        self.assertGreater(len(tasks), 2)
        for tid in tasks:
            st = status_fields(int(tid)) if os.path.exists("/proc/%s/status" % tid) else \
                status_fields(ferry.proc.pid)
            with self.subTest(task=tid):
                self.assertEqual(st["Uid"].split(), [str(self.nobody.pw_uid)] * 4)
                self.assertEqual(st["Gid"].split(), [str(self.nogroup.gr_gid)] * 4)
                self.assertEqual(st["Groups"].split(), [str(self.nogroup.gr_gid)])
                self.assertEqual(st["NoNewPrivs"], "1")
                self.assertEqual(int(st["CapEff"], 16), 0)
        self.socks_echo(ferry, echo, "alice", "pw", b"dropped\n")
        # A user added while ferryd runs: the reload reads the users file as nobody.
        r = ft.run([ft.FERRY_PASSWD, self.users, "bob"], input=b"pw2\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.share(self.users)
        start = len(ferry.lines)
        ferry.proc.send_signal(signal.SIGHUP)
        ferry.wait_line(r"reloaded %s \(configuration 2\)" % path, start=start)
        self.socks_echo(ferry, echo, "bob", "pw2", b"reloaded\n")
        self.socks_echo(ferry, echo, "alice", "pw", b"still\n")
        if ft.UNDER_VALGRIND:
            return
        # An upgrade from the dropped process: the new one needs no root (it binds nothing)
        # and runs as nobody with no_new_privs from the start.
        pids = new_process_cleanup(self)
        start = len(ferry.lines)
        ferry.proc.send_signal(signal.SIGUSR2)
        m = ferry.wait_line(r"upgrade: process (\d+) serves", timeout=30, start=start)
        pids.append(int(m.group(1)))
        self.assertEqual(ferry.proc.wait(10 * ft.SLOW), 0)
        st = status_fields(pids[0])
        self.assertEqual(st["Uid"].split(), [str(self.nobody.pw_uid)] * 4)
        self.assertEqual(st["NoNewPrivs"], "1")
        self.socks_echo(ferry, echo, "bob", "pw2", b"upgraded\n")

    def test_files_the_dropped_user_cannot_read_are_refused_at_start(self):
        port = ft.free_port()
        # A configuration in a directory of root's alone: a reload could not read it.
        private = tempfile.mkdtemp(prefix="ferrydrop-private-")
        path = os.path.join(private, "ferryd.conf")
        with open(path, "w") as f:
            f.write(ft.make_config(listen=["127.0.0.1:%d" % port], extra=["user nobody"]))
        r = ft.run(ft.ferryd_argv("-f", path), timeout=10)
        err = r.stderr.decode()
        self.assertEqual(r.returncode, 1, err)
        self.assertIn("%s: Permission denied as user nobody: ferryd reads its configuration "
                      "again on reload (SIGHUP) after dropping privileges" % path, err)
        self.assertIn("chown root:nogroup %s; chmod 640 %s" % (path, path), err)
        # The users file too, with the configuration readable.
        os.chmod(self.users, 0o600)
        path = self.conf(ft.make_config(listen=["127.0.0.1:%d" % port], auth="password",
                                        users=self.users, extra=["user nobody"]))
        r = ft.run(ft.ferryd_argv("-f", path), timeout=10)
        err = r.stderr.decode()
        self.assertEqual(r.returncode, 1, err)
        self.assertIn("%s: Permission denied as user nobody: ferryd reads its users file" %
                      self.users, err)

    def test_tunnel_server_dropping_to_the_owner_of_its_keys(self):
        """The README's tunnel server with --user: root starts it with keys the dropped user
        owns (mode 600), and a reload reads them again as that user; keys only root can read
        are refused at start, naming the chown."""
        from ferrytest import keygen
        skey = os.path.join(self.dir, "server.key")
        keygen(skey)
        ckey = os.path.join(self.dir, "client.key")
        cpub = keygen(ckey)
        ak = os.path.join(self.dir, "authorized_keys")
        with open(ak, "w") as f:
            f.write("%s alice\n" % cpub)
        os.chmod(ak, 0o600)
        argv = ["--tunnel-listen", "127.0.0.1:0", "--key", skey, "--authorized-keys", ak,
                "--user", "nobody"]
        r = ft.run(ft.ferryd_argv(*(argv[:-2] + ["--user", "nobody", "-t"])), timeout=10)
        self.assertEqual(r.returncode, 0, r.stderr)
        r = ft.run(ft.ferryd_argv("--tunnel-listen", "127.0.0.1:%d" % ft.free_port(), "--key",
                                  skey, "--authorized-keys", ak, "--user", "nobody"), timeout=10)
        err = r.stderr.decode()
        self.assertEqual(r.returncode, 1, err)
        self.assertIn("%s: Permission denied as user nobody: ferryd reads its tunnel key again "
                      "on reload (SIGHUP) after dropping privileges; give it to that user "
                      "(chown nobody %s; it stays mode 600)" % (skey, skey), err)
        for path in (skey, ak):
            os.chown(path, self.nobody.pw_uid, self.nogroup.gr_gid)
        ferry = ft.Ferryd(self, None, listeners=1, args=argv)
        ferry.wait_line(r"running as user nobody")
        start = len(ferry.lines)
        ferry.proc.send_signal(signal.SIGHUP)
        ferry.wait_line(r"reloaded built-in defaults \(configuration 2\)", start=start)
        with ferry.cond:
            after = ferry.lines[start:]
        self.assertFalse([l for l in after if "warning" in l or "error" in l], after)

    def test_parent_files_the_dropped_user_cannot_read_are_refused_at_start(self):
        from ferrytest import keygen
        cred = os.path.join(self.dir, "cred")
        with open(cred, "w") as f:
            f.write("u:p\n")
        os.chmod(cred, 0o600)
        key = os.path.join(self.dir, "client.key")
        keygen(key)
        spub = keygen(os.path.join(self.dir, "server.key"))
        path = self.conf(ft.make_config(
            listen=["127.0.0.1:%d" % ft.free_port()],
            extra=["user nobody", "parent p socks5 127.0.0.1:1 credentials %s" % cred,
                   "parent f ferry 127.0.0.1:2 server-key %s key %s" % (spub, key),
                   "route via p,f"]))
        r = ft.run(ft.ferryd_argv("-f", path), timeout=10)
        err = r.stderr.decode()
        self.assertEqual(r.returncode, 1, err)
        self.assertIn("%s: Permission denied as user nobody: ferryd reads its parent credentials "
                      "again on reload" % cred, err)
        os.chown(cred, self.nobody.pw_uid, self.nogroup.gr_gid)
        r = ft.run(ft.ferryd_argv("-f", path), timeout=10)
        err = r.stderr.decode()
        self.assertEqual(r.returncode, 1, err)
        self.assertIn("%s: Permission denied as user nobody: ferryd reads its tunnel key again "
                      "on reload" % key, err)
        os.chown(key, self.nobody.pw_uid, self.nogroup.gr_gid)
        ferry = ft.Ferryd(self, None, listeners=1, args=["-f", path])
        ferry.wait_line(r"running as user nobody")
        start = len(ferry.lines)
        ferry.proc.send_signal(signal.SIGHUP)
        ferry.wait_line(r"reloaded %s \(configuration 2\)" % re.escape(path), start=start)

    def test_root_without_a_user_warns_or_is_refused(self):
        port = ft.free_port()
        ferry = ft.start_ferryd(self, listen=["127.0.0.1:%d" % port])
        ferry.wait_line(r"warning: running as root: name an unprivileged user")
        self.assertEqual(status_fields(ferry.proc.pid)["Uid"].split()[0], "0")
        path = self.conf(ft.make_config(listen=["127.0.0.1:%d" % ft.free_port()],
                                        extra=["run-as-root no"]))
        r = ft.run(ft.ferryd_argv("-f", path), timeout=10)
        err = r.stderr.decode()
        self.assertEqual(r.returncode, 1, err)
        self.assertIn("ferryd runs as root and run-as-root is no", err)
        # --user on the command line satisfies it.
        ferry = ft.Ferryd(self, None, listeners=1, args=["-f", path, "--user", "nobody"])
        self.assertEqual(status_fields(ferry.proc.pid)["Uid"].split()[0],
                         str(self.nobody.pw_uid))


def wait_gone(pid, timeout):
    """Wait until process pid (not our child) has ended; True when it did."""
    deadline = time.monotonic() + timeout * ft.SLOW
    while time.monotonic() < deadline:
        try:
            with open("/proc/%d/status" % pid) as f:
                if "\nState:\tZ" in f.read():
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


def new_process_cleanup(testcase):
    """A list to put an upgrade's new process's pid in; it is stopped when the test ends."""
    pids = []

    def stop():
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            if not wait_gone(pid, 10):
                os.kill(pid, signal.SIGKILL)
                raise AssertionError("the upgraded ferryd %d ignored SIGTERM" % pid)

    testcase.addCleanup(stop)
    return pids


@unittest.skipIf(ft.UNDER_VALGRIND, "the upgrade starts the binary itself, without the wrapper")
class UpgradeTest(unittest.TestCase):
    def test_sigusr2_hands_over_without_a_failed_connection(self):
        echo = ft.EchoOrigin(self)
        ferry = ft.start_ferryd(self, extra=["workers 2", "shutdown-grace 10s"])
        pids = new_process_cleanup(self)
        addr = ferry.addr()
        # A session opened before the upgrade: the old process carries it to its end.
        held, rep, _, _ = ft.socks5_open(addr, "127.0.0.1", echo.port)
        self.assertEqual(rep, ft.REP_SUCCEEDED)
        counts = {"ok": 0}
        failures = []
        stop = threading.Event()

        def client_loop():
            # Bounded in count and time; each connection a full SOCKS5 CONNECT and echo.
            deadline = time.monotonic() + 60 * ft.SLOW
            for i in range(5000):
                if stop.is_set() or time.monotonic() > deadline:
                    return
                payload = b"n%d\n" % i
                try:
                    s, rep, _, _ = ft.socks5_open(addr, "127.0.0.1", echo.port, timeout=5)
                    with s:
                        if rep != ft.REP_SUCCEEDED:
                            failures.append("connection %d: reply %d" % (i, rep))
                        elif ft.echo_roundtrip(s, payload) != payload:
                            failures.append("connection %d: echo differs" % i)
                        else:
                            counts["ok"] += 1
                except Exception as e:  # refused, reset, timeout: all count
                    failures.append("connection %d: %r" % (i, e))

        t = threading.Thread(target=client_loop, daemon=True)
        t.start()
        self.addCleanup(t.join, 60)
        self.addCleanup(stop.set)
        self.assertTrue(ft.wait_until(lambda: counts["ok"] >= 20, 10), failures)
        before = counts["ok"]
        ferry.proc.send_signal(signal.SIGUSR2)
        m = ferry.wait_line(r"upgrade: started \S+ as process (\d+) with 2 listening sockets")
        pids.append(int(m.group(1)))
        ferry.wait_line(r"upgrade: process %d serves; this process stops accepting" % pids[0],
                        timeout=30)
        at_handover = counts["ok"]
        # The old process no longer accepts, but finishes what it has.
        self.assertEqual(ft.echo_roundtrip(held, b"held\n"), b"held\n")
        self.assertIsNone(ferry.proc.poll())
        held.close()
        self.assertEqual(ferry.proc.wait(15 * ft.SLOW), 0)
        # The new process goes on serving the same sockets.
        self.assertTrue(ft.wait_until(lambda: counts["ok"] >= at_handover + 100, 20), failures)
        stop.set()
        t.join(60)
        ft.log("upgrade loop: %d connections (%d before SIGUSR2, %d until the handover), "
               "%d failed" % (counts["ok"], before, at_handover, len(failures)))
        self.assertEqual(failures, [])
        os.kill(pids[0], 0)  # still there

        def served():
            with ferry.cond:
                return [l for l in ferry.lines
                        if "ferryd[%d]" % pids[0] in l and "session client=" in l]
        # A session's access line follows its close: the last ones may still be on their way.
        self.assertTrue(ft.wait_until(lambda: len(served()) >= 100, 10), len(served()))
        ferry.wait_line(r"ferryd\[%d\].*upgrade: took over 2 listening sockets" % pids[0])

    def test_upgrade_under_systemd_hands_over_mainpid_and_the_watchdog(self):
        # A NOTIFY_SOCKET read all the time, as systemd does (its queue is short).
        d = tempfile.mkdtemp(prefix="ferrynotify-")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(os.path.join(d, "notify"))
        sock.settimeout(0.2)
        self.addCleanup(sock.close)
        messages = []
        done = threading.Event()

        def reader():
            while not done.is_set():
                try:
                    raw = sock.recv(4096)
                except socket.timeout:
                    continue
                except OSError:
                    return
                m = dict(l.split("=", 1) for l in raw.decode().split("\n") if "=" in l)
                m["at"] = time.monotonic()
                messages.append(m)

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        self.addCleanup(t.join, 5)
        self.addCleanup(done.set)
        # WATCHDOG_PID as systemd sets it: the main process's own pid.
        prefix = ["/bin/sh", "-c", 'WATCHDOG_PID=$$; export WATCHDOG_PID; exec "$@"', "sh"]
        ferry = ft.Ferryd(self, ft.make_config(), prefix=prefix,
                          env={"NOTIFY_SOCKET": os.path.join(d, "notify"),
                               "WATCHDOG_USEC": "400000"})
        pids = new_process_cleanup(self)
        self.assertTrue(ft.wait_until(lambda: any("WATCHDOG" in m for m in messages), 5))
        ferry.proc.send_signal(signal.SIGUSR2)
        m = ferry.wait_line(r"upgrade: process (\d+) serves", timeout=30)
        pids.append(int(m.group(1)))
        self.assertEqual(ferry.proc.wait(10 * ft.SLOW), 0)
        # The old process named the new one as the main process before it stopped.
        self.assertTrue(ft.wait_until(
            lambda: any(m.get("MAINPID") == str(pids[0]) and "upgraded" in m.get("STATUS", "")
                        for m in messages), 5), messages)
        # Only the new process is left to send WATCHDOG=1, which it does only when
        # WATCHDOG_PID is its own pid.
        gone = time.monotonic()
        self.assertTrue(ft.wait_until(
            lambda: sum(1 for m in messages if "WATCHDOG" in m and m["at"] > gone) >= 2, 3),
            messages[-5:])

    def test_failed_upgrade_keeps_the_old_process_serving(self):
        echo = ft.EchoOrigin(self)
        ferry = ft.start_ferryd(self)
        pids = new_process_cleanup(self)
        with open(ferry.conf_path) as f:
            good = f.read()
        with open(ferry.conf_path, "a") as f:
            f.write("no-such-setting 1\n")
        ferry.proc.send_signal(signal.SIGUSR2)
        m = ferry.wait_line(r"upgrade: started \S+ as process (\d+)")
        pids.append(int(m.group(1)))
        ferry.wait_line(r"ferryd.conf:\d+: unknown keyword 'no-such-setting'")
        ferry.wait_line(r"upgrade: process %d ended before it served; this process keeps "
                        r"serving" % pids[0], timeout=10)
        s, rep, _, _ = ft.socks5_open(ferry.addr(), "127.0.0.1", echo.port)
        with s:
            self.assertEqual(rep, ft.REP_SUCCEEDED)
            self.assertEqual(ft.echo_roundtrip(s, b"on\n"), b"on\n")
        # Fixed, the next SIGUSR2 works.
        with open(ferry.conf_path, "w") as f:
            f.write(good)
        start = len(ferry.lines)
        ferry.proc.send_signal(signal.SIGUSR2)
        m = ferry.wait_line(r"upgrade: process (\d+) serves", timeout=30, start=start)
        pids.append(int(m.group(1)))
        self.assertEqual(ferry.proc.wait(10 * ft.SLOW), 0)

if __name__ == "__main__":
    ft.main()

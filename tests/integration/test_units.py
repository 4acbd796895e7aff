"""The systemd units in etc/: `systemd-analyze verify` accepts ferryd.service (as make built it
from ferryd.service.in) and ferryd.socket, with their Documentation= man pages found; `systemd-
analyze security --offline=yes` rates the service's exposure "OK" or better; and every system
call ferryd makes (a check with -t, then a run that serves password-authenticated CONNECTs by
name relayed with splice, a UDP association, notify and watchdog messages, a reload, its
stats and a stop) is one the unit's SystemCallFilter= lets through,
found with strace. Each part is skipped when its tool (systemd-analyze, strace) is missing."""

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import unittest

import ferrytest as ft

ANALYZE = shutil.which("systemd-analyze")
STRACE = shutil.which("strace")
# verify looks up the Documentation= man pages with man(1) when there is one.
MAN = shutil.which("man")
BUILDDIR = os.path.dirname(os.path.dirname(os.path.abspath(ft.FERRYD)))
SERVICE = os.path.join(BUILDDIR, "etc", "ferryd.service")
SOCKET = os.path.join(ft.SRCDIR, "etc", "ferryd.socket")
# systemd-analyze security's verdicts from the best down; "OK" is the worst one accepted.
ACCEPTED = ("PERFECT", "SAFE", "OK")


def unit_settings(text, key):
    """The values of every key= line of a unit file's text, in order."""
    return [l.split("=", 1)[1].strip() for l in text.splitlines()
            if l.startswith(key + "=")]


class Units(unittest.TestCase):
    def setUp(self):
        if not os.path.exists(SERVICE):
            raise AssertionError("%s not made (make builds it from ferryd.service.in)" % SERVICE)
        self.tmp = tempfile.mkdtemp(prefix="ferryunits-")
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)
        with open(SERVICE) as f:
            self.service_text = f.read()

    def install_units(self, service_text):
        """Both units in a fresh directory, ExecStart= and ExecStartPre= pointing at the built
        ferryd (verify wants the binary to exist, and it is not installed yet), and the man
        pages where man(1) finds them; returns (directory, environment)."""
        d = tempfile.mkdtemp(dir=self.tmp)
        exec_lines = unit_settings(service_text, "ExecStart") + \
            unit_settings(service_text, "ExecStartPre")
        self.assertTrue(exec_lines, "no ExecStart= in ferryd.service")
        for line in exec_lines:
            binary = line.split()[0]
            self.assertTrue(binary.endswith("/ferryd"), line)
            service_text = service_text.replace(binary + " ", ft.FERRYD + " ")
        with open(os.path.join(d, "ferryd.service"), "w") as f:
            f.write(service_text)
        shutil.copy(SOCKET, os.path.join(d, "ferryd.socket"))
        man = os.path.join(d, "man")
        for page in ("ferryd.8", "ferryd.conf.5"):
            sect = os.path.join(man, "man" + page[-1])
            os.makedirs(sect, exist_ok=True)
            shutil.copy(os.path.join(ft.SRCDIR, "man", page), sect)
        return d, dict(os.environ, MANPATH=man, SYSTEMD_LOG_COLOR="0", SYSTEMD_PAGER="")

    def verify(self, service_text):
        d, env = self.install_units(service_text)
        man = [] if MAN else ["--man=no"]
        r = subprocess.run([ANALYZE, "verify"] + man + ["ferryd.service", "ferryd.socket"],
                           cwd=d, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        out = r.stdout.decode("utf-8", "replace")
        ft.log("systemd-analyze verify: rc=%d\n%s" % (r.returncode, out))
        return r.returncode, [l for l in out.splitlines() if "ferryd" in l]

    @unittest.skipUnless(ANALYZE, "systemd-analyze not installed")
    def test_verify_accepts_both_units(self):
        rc, complaints = self.verify(self.service_text)
        self.assertEqual(complaints, [])
        self.assertEqual(rc, 0)

    @unittest.skipUnless(ANALYZE, "systemd-analyze not installed")
    def test_verify_catches_a_broken_unit(self):
        # The check above can fail: a misspelt key, or a man page that is not there.
        rc, complaints = self.verify(self.service_text.replace("\nExecStart=", "\nExecStrat="))
        self.assertNotEqual(rc, 0)
        self.assertTrue(any("ExecStrat" in l for l in complaints), complaints)
        if not MAN:
            return
        rc, complaints = self.verify(self.service_text.replace("man:ferryd.conf(5)",
                                                               "man:ferryd.conf(7)"))
        self.assertNotEqual(rc, 0)
        self.assertTrue(any("ferryd.conf(7)" in l for l in complaints), complaints)

    @unittest.skipUnless(ANALYZE, "systemd-analyze not installed")
    def test_security_exposure_is_ok_or_better(self):
        d, env = self.install_units(self.service_text)
        r = subprocess.run([ANALYZE, "security", "--offline=yes", "--no-pager",
                            os.path.join(d, "ferryd.service")], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        out = r.stdout.decode("utf-8", "replace")
        ft.log("systemd-analyze security:\n%s" % out)
        self.assertEqual(r.returncode, 0, out)
        m = re.search(r"Overall exposure level for ferryd\.service: ([0-9.]+) ([A-Z]+)", out)
        self.assertIsNotNone(m, out)
        ft.log("exposure %s %s" % (m.group(1), m.group(2)))
        self.assertIn(m.group(2), ACCEPTED)
        self.assertLessEqual(float(m.group(1)), 4.9)
        # The settings the sandbox rests on were all counted.
        for ok in ("NoNewPrivileges=", "ProtectSystem=", "MemoryDenyWriteExecute=",
                   "SystemCallFilter=~@privileged", "User=/DynamicUser="):
            self.assertRegex(out, r"✓ " + re.escape(ok))


def syscall_groups():
    """{"@group": set of members} from systemd-analyze syscall-filter (groups unexpanded)."""
    r = subprocess.run([ANALYZE, "syscall-filter", "--no-pager"], stdout=subprocess.PIPE,
                       timeout=60, check=True)
    groups, cur = {}, None
    for line in r.stdout.decode().splitlines():
        if line.startswith("@"):
            cur = groups.setdefault(line.split()[0], set())
        elif cur is not None and line.startswith("    ") and not line.strip().startswith("#"):
            cur.add(line.strip())
        elif not line.strip():
            cur = None
    return groups


def expand(groups, name, seen=None):
    seen = set() if seen is None else seen
    if not name.startswith("@"):
        return {name}
    if name in seen:
        return set()
    seen.add(name)
    out = set()
    for m in groups[name]:
        out |= expand(groups, m, seen)
    return out


def allowed_syscalls(service_text):
    """What the unit's SystemCallFilter= lines allow: the first allow list, less every
    ~deny list after it."""
    groups = syscall_groups()
    allowed = None
    for value in unit_settings(service_text, "SystemCallFilter"):
        deny = value.startswith("~")
        names = set()
        for item in value.lstrip("~").split():
            names |= expand(groups, item)
        if deny:
            allowed = (allowed if allowed is not None else set()) - names
        else:
            allowed = names if allowed is None else allowed | names
    return allowed


# "PID name(" or "PID <... name resumed>" in strace -f -o output.
STRACE_LINE = re.compile(r"^\d+ +(?:<\.\.\. )?([a-z0-9_]+)(?:\(| resumed>)")


def traced_child(pid):
    """The process strace (pid) started."""
    kids = []
    for tid in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
            kids += [int(k) for k in f.read().split()]
    if len(kids) != 1:
        raise AssertionError("strace %d has children %s" % (pid, kids))
    return kids[0]


def kill_quietly(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def sanitized_build():
    with open(ft.FERRYD, "rb") as f:
        return b"__asan_init" in f.read()


@unittest.skipUnless(ANALYZE and STRACE, "systemd-analyze or strace not installed")
@unittest.skipIf(ft.FERRYD_WRAPPER, "ferryd runs under a wrapper (valgrind)")
class SystemCalls(unittest.TestCase):
    def setUp(self):
        if sanitized_build():
            self.skipTest("sanitizer build: its runtime makes system calls ferryd does not")
        with open(SERVICE) as f:
            service = f.read()
        self.allowed = allowed_syscalls(service)
        self.assertIn("epoll_wait", self.allowed)
        self.assertNotIn("setuid", self.allowed)
        self.families = unit_settings(service, "RestrictAddressFamilies")[0].split()
        self.assertIn("AF_NETLINK", self.families)
        self.seen_families = set()
        self.tmp = tempfile.mkdtemp(prefix="ferrystrace-")
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)
        self.n = 0

    def traced(self):
        """A FERRYD_WRAPPER running ferryd under strace -f, and the trace file."""
        self.n += 1
        path = os.path.join(self.tmp, "trace.%d" % self.n)
        return [STRACE, "-f", "-qq", "-o", path], path

    def syscalls(self, path):
        """The system calls in a trace, after checking two more of the unit's settings on
        their arguments: MemoryDenyWriteExecute= (no mapping both writable and executable)
        and RestrictAddressFamilies= (the families of every socket)."""
        names = set()
        families = set()
        with open(path) as f:
            for line in f:
                m = STRACE_LINE.match(line)
                if not m:
                    continue
                names.add(m.group(1))
                if m.group(1) in ("mmap", "mprotect", "pkey_mprotect"):
                    self.assertFalse("PROT_WRITE" in line and "PROT_EXEC" in line, line)
                elif m.group(1) in ("socket", "socketpair"):
                    f = re.search(r"\((AF_\w+)", line)
                    if f:  # not the "<... socket resumed>" half of a call
                        families.add(f.group(1))
        self.assertIn("execve", names)
        self.assertLessEqual(families, set(self.families), path)
        self.seen_families |= families
        return names

    def test_every_system_call_is_in_the_filter(self):
        dns = ft.DNSServer(self)
        dns.add("origin.test", a=["127.0.0.1"])
        echo = ft.EchoOrigin(self)
        users = ft.make_users_file(self, {"alice": "secret"})
        udp_echo = ft.UDPEcho(self)
        conf = ft.make_config(dns=dns, auth="password none", users=users,
                              extra=["workers 2", "relay splice"])
        conf_path = os.path.join(self.tmp, "ferryd.conf")
        with open(conf_path, "w") as f:
            f.write(conf)

        # ExecStartPre=: the check.
        wrapper, check_trace = self.traced()
        r = subprocess.run(wrapper + [ft.FERRYD, "-t", "-f", conf_path], timeout=60,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.assertEqual(r.returncode, 0, r.stdout)
        used = self.syscalls(check_trace)

        # ExecStart=: serve, reload, stats, stop.
        wrapper, run_trace = self.traced()
        # As Type=notify with WatchdogSec= runs it: READY=1, STATUS=, WATCHDOG=1 on a socket.
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(notify.close)
        notify.bind(os.path.join(self.tmp, "notify"))
        env = {"NOTIFY_SOCKET": notify.getsockname(), "WATCHDOG_USEC": "200000"}
        saved = ft.FERRYD_WRAPPER
        ft.FERRYD_WRAPPER = wrapper
        try:
            ferry = ft.Ferryd(self, conf, start_timeout=30, env=env)
        finally:
            ft.FERRYD_WRAPPER = saved
        # Signals go to ferryd itself, strace's child (strace would detach on them), and a
        # failed test does not leave it behind.
        pid = traced_child(ferry.proc.pid)
        self.addCleanup(kill_quietly, pid)
        data = os.urandom(256 * 1024)
        for _ in range(3):
            s, rep, _, _ = ft.socks5_open(ferry.addr(), "origin.test", echo.port,
                                          user="alice", password="secret")
            self.assertEqual(rep, ft.REP_SUCCEEDED)
            for i in range(0, len(data), 16384):
                s.sendall(data[i:i + 16384])
                self.assertEqual(ft.recv_exact(s, 16384), data[i:i + 16384])
            s.close()
        assoc = ft.RawAssoc(self, ferry)
        self.assertEqual(assoc.rep, ft.REP_SUCCEEDED)
        self.assertEqual(assoc.roundtrip(udp_echo, b"datagram")[2], b"datagram")
        assoc.close()
        ferry.wait_sessions(4)
        notify.settimeout(ft.IO_TIMEOUT)
        for _ in range(10):
            if b"WATCHDOG=1" in notify.recv(4096).split(b"\n"):
                break
        else:
            raise AssertionError("no WATCHDOG=1 in 10 notify messages")
        os.kill(pid, signal.SIGHUP)
        ferry.wait_line(r"reloaded ")
        os.kill(pid, signal.SIGUSR1)
        ferry.wait_line(r"stats: ")
        os.kill(pid, signal.SIGTERM)
        ferry.stop(timeout=30)
        used |= self.syscalls(run_trace)
        ft.log("system calls made: %s" % " ".join(sorted(used)))
        ft.log("socket families: %s" % " ".join(sorted(self.seen_families)))
        self.assertLessEqual({"AF_INET", "AF_UNIX", "AF_NETLINK"}, self.seen_families)

        self.assertTrue({"accept", "accept4"} & used)
        self.assertTrue({"splice", "recvmmsg", "sendmmsg"} <= used, used)
        self.assertEqual(sorted(used - self.allowed), [])


if __name__ == "__main__":
    ft.main()

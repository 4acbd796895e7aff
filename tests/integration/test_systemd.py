"""systemd's notify protocol, spoken by ferryd without libsystemd: READY=1 once it serves,
RELOADING=1 with MONOTONIC_USEC and READY=1 again on SIGHUP, WATCHDOG=1 at half of
WATCHDOG_USEC, STATUS= lines, STOPPING=1 on SIGTERM, read from a NOTIFY_SOCKET the test makes
(a path and an abstract name); nothing is sent, and nothing breaks, without one."""

import os
import signal
import socket
import tempfile
import time
import unittest

import ferrytest as ft


class NotifySocket:
    def __init__(self, testcase, abstract=False):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = "ferrytest-notify-%d-%d" % (os.getpid(), id(self))
            self.sock.bind("\0" + name)
            self.env = "@" + name
        else:
            d = tempfile.mkdtemp(prefix="ferrynotify-")
            path = os.path.join(d, "notify")
            self.sock.bind(path)
            self.env = path
        testcase.addCleanup(self.sock.close)
        self.messages = []

    def wait_for(self, key, timeout=5.0):
        """The first message (a dict) holding key, read within timeout."""
        for m in self.messages:
            if key in m:
                self.messages.remove(m)
                return m
        deadline = time.monotonic() + timeout * ft.SLOW
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                raw = self.sock.recv(4096)
            except socket.timeout:
                break
            m = dict(line.split("=", 1) for line in raw.decode().split("\n") if "=" in line)
            if key in m:
                return m
            self.messages.append(m)
        raise AssertionError("no %s within %.1f s; got %r" % (key, timeout, self.messages))


class SystemdNotifyTest(unittest.TestCase):
    def test_ready_reloading_watchdog_status_and_stopping(self):
        ns = NotifySocket(self)
        ferry = ft.start_ferryd(self, env={"NOTIFY_SOCKET": ns.env, "WATCHDOG_USEC": "400000"})
        ready = ns.wait_for("READY")
        self.assertEqual(ready["READY"], "1")
        self.assertRegex(ready.get("STATUS", ""), r"^0 sessions, 1 worker, configuration \d+$")
        self.assertEqual(ns.wait_for("MAINPID")["MAINPID"], str(ferry.proc.pid))
        # Two pings at half of 0.4 s, within a second.
        start = time.monotonic()
        ns.wait_for("WATCHDOG", 1.0)
        ns.wait_for("WATCHDOG", 1.0)
        self.assertLess(time.monotonic() - start, 1.5 * ft.SLOW)
        # A reload: RELOADING=1 with the monotonic clock, then READY=1 again.
        before = time.clock_gettime(time.CLOCK_MONOTONIC)
        ferry.proc.send_signal(signal.SIGHUP)
        reloading = ns.wait_for("RELOADING")
        usec = int(reloading["MONOTONIC_USEC"])
        self.assertGreaterEqual(usec, int(before * 1e6) - 1000)
        self.assertLessEqual(usec, int(time.clock_gettime(time.CLOCK_MONOTONIC) * 1e6) + 1000)
        again = ns.wait_for("READY")
        self.assertRegex(again["STATUS"], r"configuration \d+$")
        self.assertNotEqual(again["STATUS"], ready["STATUS"])  # the generation moved on
        ferry.proc.send_signal(signal.SIGTERM)
        stopping = ns.wait_for("STOPPING")
        self.assertEqual(stopping["STOPPING"], "1")
        self.assertEqual(ferry.proc.wait(10 * ft.SLOW), 0)

    def test_failed_reload_is_ready_again_under_the_running_configuration(self):
        ns = NotifySocket(self)
        ferry = ft.start_ferryd(self, env={"NOTIFY_SOCKET": ns.env})
        ready = ns.wait_for("READY")
        with open(ferry.conf_path, "a") as f:
            f.write("no-such-keyword here\n")
        ferry.proc.send_signal(signal.SIGHUP)
        ns.wait_for("RELOADING")
        again = ns.wait_for("READY")
        ferry.wait_line(r"reload failed")
        # Still serving, and still the configuration it had.
        self.assertEqual(again["STATUS"], ready["STATUS"])
        ferry.proc.send_signal(signal.SIGTERM)
        self.assertRegex(ns.wait_for("STOPPING")["STATUS"], r"^shutting down, 0 sessions$")

    def test_abstract_socket_name_gets_ready(self):
        ns = NotifySocket(self, abstract=True)
        ft.start_ferryd(self, env={"NOTIFY_SOCKET": ns.env})
        self.assertEqual(ns.wait_for("READY")["READY"], "1")

    def test_watchdog_for_another_pid_is_not_ours(self):
        ns = NotifySocket(self)
        ft.start_ferryd(self, env={"NOTIFY_SOCKET": ns.env, "WATCHDOG_USEC": "200000",
                                   "WATCHDOG_PID": "1"})
        ns.wait_for("READY")
        with self.assertRaises(AssertionError):
            ns.wait_for("WATCHDOG", 0.6)

    def test_unusable_notify_socket_warns_and_serves(self):
        ferry = ft.start_ferryd(self, env={"NOTIFY_SOCKET": "relative/path"})
        ferry.wait_line(r"NOTIFY_SOCKET names no socket ferryd can use")
        s, rep, _, _ = ft.socks5_open(ferry.addr(), "127.0.0.1", ft.closed_port())
        s.close()
        self.assertEqual(rep, ft.REP_CONNECTION_REFUSED)


if __name__ == "__main__":
    ft.main()

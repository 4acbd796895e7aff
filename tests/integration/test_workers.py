"""Several workers: one thread and loop each, with their own SO_REUSEPORT listener. Clients
are spread over them, a reload reaches every one, limits count across them, and SIGTERM stops
them all."""

import os
import signal
import unittest

import ferrytest as ft


def worker_threads(pid):
    """{thread name: voluntary context switches} of ferryd's worker threads."""
    out = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        base = "/proc/%d/task/%s" % (pid, tid)
        try:
            with open(base + "/comm") as f:
                name = f.read().strip()
            if not name.startswith("ferryd-w"):
                continue
            with open(base + "/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches:"):
                        out[name] = int(line.split()[1])
        except FileNotFoundError:
            continue
    return out


class WorkersTest(unittest.TestCase):
    def setUp(self):
        self.echo = ft.EchoOrigin(self)

    def session(self, ferry):
        s, rep, _, _ = ft.socks5_open(ferry.addr(), self.echo.host, self.echo.port)
        with s:
            if rep == ft.REP_SUCCEEDED:
                self.assertEqual(ft.echo_roundtrip(s, b"w"), b"w")
            return rep

    def test_clients_are_spread_over_every_worker(self):
        ferry = ft.start_ferryd(self, extra=["workers 3"])
        ferry.wait_line(r"started with 3 workers")
        before = worker_threads(ferry.proc.pid)
        self.assertEqual(sorted(before), ["ferryd-w0", "ferryd-w1", "ferryd-w2"])
        for _ in range(150):
            self.assertEqual(self.session(ferry), ft.REP_SUCCEEDED)
        after = worker_threads(ferry.proc.pid)
        woken = {name: after[name] - before[name] for name in before}
        ft.log("loop wake-ups per worker over 150 sessions: %s" % woken)
        # Each session wakes the loop that serves it several times; an idle loop sleeps.
        for name, n in woken.items():
            self.assertGreater(n, 10, woken)
        self.assertEqual(len(ferry.wait_sessions(150)), 150)

    def test_auto_is_one_worker_per_cpu_ferryd_may_run_on(self):
        cpus = sorted(os.sched_getaffinity(0))
        ferry = ft.start_ferryd(self, extra=["workers auto"])
        want = "1 worker" if len(cpus) == 1 else "%d workers" % len(cpus)
        ferry.wait_line(r"started with %s\b" % want)
        if len(cpus) < 2:
            self.skipTest("one CPU: an affinity cannot be narrower")
        # ferryd inherits the affinity of the process that starts it.
        os.sched_setaffinity(0, cpus[:1])
        try:
            pinned = ft.start_ferryd(self, extra=["workers auto"])
        finally:
            os.sched_setaffinity(0, cpus)
        pinned.wait_line(r"started with 1 worker\b")
        self.assertEqual(sorted(worker_threads(pinned.proc.pid)), ["ferryd-w0"])
        self.assertEqual(self.session(pinned), ft.REP_SUCCEEDED)

    def test_reload_reaches_every_worker(self):
        ferry = ft.start_ferryd(self, extra=["workers 2"])
        text = ft.make_config(listen=("127.0.0.1:%d" % ferry.port,),
                              extra=["workers 2", "request block to 127.0.0.1", "request pass"])
        with open(ferry.conf_path, "w") as f:
            f.write(text)
        lines = len(ferry.lines)
        ferry.proc.send_signal(signal.SIGHUP)
        ferry.wait_line(r"reloaded", start=lines)
        # Posted to both loops; give each a moment to take it, then every new session sees it.
        ft.wait_until(lambda: self.session(ferry) == ft.REP_NOT_ALLOWED)
        reps = [self.session(ferry) for _ in range(60)]
        self.assertEqual(set(reps), {ft.REP_NOT_ALLOWED})

    def test_session_limit_counts_across_workers(self):
        ferry = ft.start_ferryd(self, extra=["workers 2", "limit sessions-per-client 4"])
        held, reps = [], []
        for _ in range(10):
            s, rep, _, _ = ft.socks5_open(ferry.addr(), self.echo.host, self.echo.port)
            self.addCleanup(s.close)
            reps.append(rep)
            if rep == ft.REP_SUCCEEDED:
                held.append(s)
        self.assertEqual(reps.count(ft.REP_SUCCEEDED), 4, reps)
        self.assertEqual(reps.count(ft.REP_GENERAL_FAILURE), 6, reps)

    def test_sigterm_stops_every_worker_and_exits_0(self):
        ferry = ft.start_ferryd(self, extra=["workers 4", "shutdown-grace 5s"])
        s, rep, _, _ = ft.socks5_open(ferry.addr(), self.echo.host, self.echo.port)
        self.assertEqual(rep, ft.REP_SUCCEEDED)
        ferry.proc.send_signal(signal.SIGTERM)
        ferry.wait_line(r"shutting down, 1 sessions may finish")
        # The session in flight still works during the grace, then its close ends ferryd.
        self.assertEqual(ft.echo_roundtrip(s, b"late"), b"late")
        s.close()
        self.assertEqual(ferry.proc.wait(5), 0)
        ferry.wait_line(r"stopped")


    def test_sigusr1_logs_totals_over_every_worker(self):
        ferry = ft.start_ferryd(self, extra=["workers 2", "request block port 9",
                                             "request pass"])
        for i in range(20):
            s, rep, _, _ = ft.socks5_open(ferry.addr(), self.echo.host, self.echo.port)
            with s:
                self.assertEqual(rep, ft.REP_SUCCEEDED)
                self.assertEqual(ft.echo_roundtrip(s, b"x" * 100), b"x" * 100)
        s, rep, _, _ = ft.socks5_open(ferry.addr(), self.echo.host, 9)
        s.close()
        self.assertEqual(rep, ft.REP_NOT_ALLOWED)
        ferry.wait_sessions(21)

        def stats():
            # A worker counts a session before its access line and leaves "live" just after:
            # ask again until the last one is through.
            lines = len(ferry.lines)
            ferry.proc.send_signal(signal.SIGUSR1)
            m = ferry.wait_line(r"stats: sessions live=(\d+) ended=(\d+) refused=(\d+) "
                                r"limited=(\d+) failed=(\d+) bytes up=(\d+) down=(\d+) "
                                r"workers=2", start=lines)
            return [int(x) for x in m.groups()]

        # live, ended, refused, limited, failed, bytes up, down
        expected = [0, 21, 1, 0, 0, 2000, 2000]
        seen = []
        ft.wait_until(lambda: seen.append(stats()) or seen[-1] == expected)
        self.assertEqual(seen[-1], expected)
        # The same totals when ferryd stops.
        ferry.stop()
        ferry.wait_line(r"totals: sessions live=0 ended=21 refused=1 .* up=2000 down=2000")

if __name__ == "__main__":
    ft.main()

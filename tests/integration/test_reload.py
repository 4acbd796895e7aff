"""SIGHUP: ferryd reads its configuration and users file again. A good new configuration is
used by new sessions while running sessions keep transferring under the old one; a broken one
is refused with its error logged, and the old one stays."""

import os
import signal
import unittest

import ferrytest as ft


class ReloadTest(unittest.TestCase):
    def setUp(self):
        self.echo = ft.EchoOrigin(self)
        self.other = ft.EchoOrigin(self, "127.0.0.5")

    def rewrite(self, ferry, extra):
        """Replace ferryd's file with the generated config plus extra lines."""
        text = ft.make_config(listen=("127.0.0.1:%d" % ferry.port,), extra=extra)
        with open(ferry.conf_path, "w") as f:
            f.write(text)

    def hup(self, ferry, expect=r"reloaded .* \(configuration (\d+)\)"):
        lines = len(ferry.lines)
        ferry.proc.send_signal(signal.SIGHUP)
        return ferry.wait_line(expect, start=lines)

    def rep(self, ferry, host, port, **kw):
        s, rep, _, _ = ft.socks5_open(ferry.addr(), host, port, **kw)
        s.close()
        return rep

    def test_new_rule_applies_to_new_sessions_while_an_old_one_keeps_transferring(self):
        ferry = ft.start_ferryd(self)
        old, rep, _, _ = ft.socks5_open(ferry.addr(), self.echo.host, self.echo.port)
        self.addCleanup(old.close)
        self.assertEqual(rep, ft.REP_SUCCEEDED)
        self.assertEqual(ft.echo_roundtrip(old, b"before"), b"before")

        self.rewrite(ferry, ["request block to 127.0.0.1", "request pass"])
        m = self.hup(ferry)
        self.assertEqual(m.group(1), "2")
        self.assertEqual(self.rep(ferry, self.echo.host, self.echo.port), ft.REP_NOT_ALLOWED)
        self.assertEqual(self.rep(ferry, self.other.host, self.other.port), ft.REP_SUCCEEDED)
        # The session from before the reload runs on, under the rules it started with.
        for i in range(50):
            payload = os.urandom(4096) + b"%d" % i
            self.assertEqual(ft.echo_roundtrip(old, payload), payload)
        old.close()
        sess = ferry.wait_sessions(3)
        first = [x for x in sess if x["reply"] == "succeeded" and x["target"].startswith("127.0.0.1")]
        self.assertEqual(len(first), 1)
        self.assertEqual(int(first[0]["up"]), 6 + 50 * 4096 + sum(len(b"%d" % i) for i in range(50)))

        # And back again.
        self.rewrite(ferry, [])
        self.assertEqual(self.hup(ferry).group(1), "3")
        self.assertEqual(self.rep(ferry, self.echo.host, self.echo.port), ft.REP_SUCCEEDED)

    def test_broken_config_is_refused_and_the_old_one_stays(self):
        ferry = ft.start_ferryd(self, extra=["request block to 127.0.0.5", "request pass"])
        self.assertEqual(self.rep(ferry, self.other.host, self.other.port), ft.REP_NOT_ALLOWED)
        text = ft.make_config(listen=("127.0.0.1:%d" % ferry.port,))
        with open(ferry.conf_path, "w") as f:
            f.write(text + "request pass frm 10.0.0.0/8\n")
        lines = text.count("\n") + 1
        m = self.hup(ferry, r"reload failed, keeping the running configuration: (.*)")
        self.assertEqual(m.group(1), "%s:%d: request: unknown condition 'frm' (from, user, "
                         "command, to, port, log, private, sessions, bandwidth)"
                         % (ferry.conf_path, lines))
        # Still the old rules, and still serving.
        self.assertEqual(self.rep(ferry, self.other.host, self.other.port), ft.REP_NOT_ALLOWED)
        self.assertEqual(self.rep(ferry, self.echo.host, self.echo.port), ft.REP_SUCCEEDED)
        # A file that cannot be read is refused the same way.
        os.unlink(ferry.conf_path)
        self.hup(ferry, r"reload failed, keeping the running configuration: .*No such file")
        self.assertEqual(self.rep(ferry, self.echo.host, self.echo.port), ft.REP_SUCCEEDED)

    def test_users_file_is_read_again(self):
        users = ft.make_users_file(self, {"alice": "pa"})
        ferry = ft.start_ferryd(self, auth="password", users=users)
        with self.assertRaises(AssertionError):
            self.rep(ferry, self.echo.host, self.echo.port, user="bob", password="pb")
        # ferry-passwd adds bob (alice stays); the running ferryd knows him after SIGHUP.
        r = ft.run([ft.FERRY_PASSWD, users, "bob"], input=b"pb\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.hup(ferry)
        self.assertEqual(self.rep(ferry, self.echo.host, self.echo.port, user="bob",
                                  password="pb"), ft.REP_SUCCEEDED)
        self.assertEqual(self.rep(ferry, self.echo.host, self.echo.port, user="alice",
                                  password="pa"), ft.REP_SUCCEEDED)

    def test_auth_method_change_applies_on_reload(self):
        users = ft.make_users_file(self, {"alice": "pa"})
        ferry = ft.start_ferryd(self)
        self.assertEqual(self.rep(ferry, self.echo.host, self.echo.port), ft.REP_SUCCEEDED)
        self.rewrite(ferry, ["auth password", "users %s" % users])
        self.hup(ferry)
        with self.assertRaises(AssertionError):  # no acceptable method for a no-auth client
            self.rep(ferry, self.echo.host, self.echo.port)
        self.assertEqual(self.rep(ferry, self.echo.host, self.echo.port, user="alice",
                                  password="pa"), ft.REP_SUCCEEDED)

    def test_settings_that_need_a_restart_are_named(self):
        ferry = ft.start_ferryd(self)
        text = ft.make_config(listen=("127.0.0.1:%d" % ferry.port, "127.0.0.1:0"),
                              extra=["workers 2"])
        with open(ferry.conf_path, "w") as f:
            f.write(text)
        lines = len(ferry.lines)
        ferry.proc.send_signal(signal.SIGHUP)
        ferry.wait_line(r"reload: listen lines changed; they take effect at the next restart",
                        start=lines)
        ferry.wait_line(r"reload: workers changed", start=lines)
        ferry.wait_line(r"reloaded", start=lines)
        self.assertEqual(self.rep(ferry, self.echo.host, self.echo.port), ft.REP_SUCCEEDED)


if __name__ == "__main__":
    ft.main()

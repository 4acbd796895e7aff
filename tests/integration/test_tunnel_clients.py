"""Real clients through the encrypted hop (issue 15): a client ferryd whose route goes through a
`ferry` parent to a server ferryd's tunnel listener, both on loopback, driven by

- ncat (--proxy-type socks5) with half-close: its standard input's end reaches the origin as an
  end of file, and the origin's answer, sent only after it, still comes back;
- ssh with `nc -X 5 -x` (netcat-openbsd) as ProxyCommand, to an sshd on loopback started here
  (host and user keys made here; sshd needs root), running a command;
- netkit ftp in active mode under dante's socksify: BIND through the tunnel, the FTP server
  (pyftpdlib) connecting back to where the server ferryd listens.

Each checks the server ferryd's access lines (the key's user, the command). A test skips only
when its program is missing.
"""

import hashlib
import os
import shutil
import subprocess
import sys
import textwrap
import time
import unittest

import ferrytest as ft
from ferrytest import CURL_ENV, FTP_SERVER, KEYGEN, Proc

SSHD = shutil.which("sshd") or ("/usr/sbin/sshd" if os.access("/usr/sbin/sshd", os.X_OK) else None)
# netcat-openbsd's nc (-X 5 -x): /usr/bin/nc may be ncat, which has neither.
NC_OPENBSD = shutil.which("nc.openbsd")


class TunnelClientsTest(unittest.TestCase):
    def setUp(self):
        if not os.access(KEYGEN, os.X_OK):
            raise AssertionError("ferry-keygen not built: %s" % KEYGEN)
        ft.tunnel_keys(self, "ferrytunnelclients-")
        self.server = ft.start_ferryd(self, extra=[
            "tunnel key %s" % self.skey,
            "tunnel authorized-keys %s" % self.authkeys,
            "request pass to 127.0.0.0/8 private",
        ], listen=("127.0.0.1:0 tunnel",))
        self.client = ft.start_ferryd(self, extra=[
            "parent home ferry 127.0.0.1:%d server-key %s key %s timeout 5s"
            % (self.server.port, self.spub, self.akey),
            "route via home",
        ])

    def server_sessions(self, n, **expect):
        """The server's n access lines, each of the key's user and matching expect."""
        lines = self.server.wait_sessions(n, timeout=10)
        for l in lines:
            self.assertEqual(l["user"], "alice", l)
            for k, v in expect.items():
                self.assertEqual(l.get(k), v, l)
        return lines

    # --- ncat --------------------------------------------------------------------------------

    @unittest.skipUnless(shutil.which("ncat"), "ncat not installed (Debian package ncat)")
    def test_ncat_half_close_reaches_the_origin_and_the_answer_comes_back(self):
        # The origin answers a PUT only once it has read to the end of file: with the SHA-256
        # and length of what came. ncat shuts down its sending side at its input's end.
        data = os.urandom((256 if ft.UNDER_VALGRIND else 4096) * 1024)
        bulk = ft.BulkOrigin(self, data)
        r = ft.run(["ncat", "--wait", "5", "--proxy", "127.0.0.1:%d" % self.client.port,
                    "--proxy-type", "socks5", "127.0.0.1", str(bulk.port)],
                   timeout=60, input=b"PUT\n" + data)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, ("%s %d\n" % (hashlib.sha256(data).hexdigest(), len(data)))
                         .encode())
        self.assertEqual(bulk.results, [("PUT", len(data))])
        line = self.server_sessions(1, cmd="connect", reply="succeeded")[0]
        self.assertGreaterEqual(int(line["up"]), len(data))
        self.client.wait_sessions(1, pred=lambda l: l.get("via") == "home")

    # --- ssh ---------------------------------------------------------------------------------

    @unittest.skipUnless(SSHD and shutil.which("ssh") and shutil.which("ssh-keygen"),
                         "OpenSSH not installed (Debian packages openssh-client, openssh-server)")
    @unittest.skipUnless(NC_OPENBSD, "nc.openbsd not installed (Debian package netcat-openbsd)")
    @unittest.skipUnless(os.geteuid() == 0, "sshd needs root")
    def test_ssh_through_nc_x5_as_proxy_command(self):
        d = os.path.join(self.dir, "ssh")
        os.mkdir(d, 0o700)
        hostkey = os.path.join(d, "host_ed25519")
        userkey = os.path.join(d, "user_ed25519")
        for path in (hostkey, userkey):
            ft.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ferry-test",
                    "-f", path], timeout=30).check_returncode()
        authorized = os.path.join(d, "authorized_keys")
        shutil.copy(userkey + ".pub", authorized)
        port = ft.free_port()
        config = os.path.join(d, "sshd_config")
        with open(config, "w") as f:
            f.write(textwrap.dedent("""\
                ListenAddress 127.0.0.1:%d
                HostKey %s
                AuthorizedKeysFile %s
                PidFile none
                UsePAM no
                StrictModes no
                PermitRootLogin prohibit-password
                PasswordAuthentication no
                KbdInteractiveAuthentication no
                LogLevel VERBOSE
                """ % (port, hostkey, authorized)))
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege separation
        sshd = Proc(self, "sshd", [SSHD, "-D", "-e", "-f", config])
        deadline = time.monotonic() + 10 * ft.SLOW
        while "Server listening" not in sshd.output():
            if sshd.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("sshd did not start:\n%s" % sshd.output())
            time.sleep(0.05)
        known = os.path.join(d, "known_hosts")
        with open(hostkey + ".pub") as f:
            pub = f.read().split()
        with open(known, "w") as f:
            f.write("[127.0.0.1]:%d %s %s\n" % (port, pub[0], pub[1]))
        user = "root"
        r = ft.run(["ssh", "-F", "/dev/null", "-i", userkey, "-p", str(port),
                    "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
                    "-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=%s" % known,
                    "-o", "ConnectTimeout=%d" % (10 * ft.SLOW),
                    "-o", "ProxyCommand=%s -X 5 -x 127.0.0.1:%d %%h %%p"
                    % (NC_OPENBSD, self.client.port),
                    "%s@127.0.0.1" % user,
                    "echo through the tunnel; echo $SSH_CONNECTION; cat"],
                   timeout=60, input=b"and back via stdin\n")
        self.assertEqual(r.returncode, 0, r.stderr.decode("utf-8", "replace"))
        out = r.stdout.decode().splitlines()
        self.assertEqual(out[0], "through the tunnel")
        # sshd sees the server ferryd's connection: from loopback to its port.
        conn = out[1].split()
        self.assertEqual((conn[0], conn[2], conn[3]), ("127.0.0.1", "127.0.0.1", str(port)))
        self.assertEqual(out[2:], ["and back via stdin"])
        line = self.server_sessions(1, cmd="connect", reply="succeeded")[0]
        self.assertEqual(line["target"], "127.0.0.1:%d" % port, line)
        self.assertIn("Accepted publickey for %s" % user, sshd.output())

    # --- BIND: active FTP --------------------------------------------------------------------

    def test_active_ftp_under_socksify_binds_through_the_tunnel(self):
        missing = [what for what, ok in (
            ("dante-client (socksify)", shutil.which("socksify") is not None),
            ("an ftp client (ftp/tnftp)", shutil.which("ftp") is not None),
            ("python3-pyftpdlib", subprocess.run(
                [sys.executable, "-c", "import pyftpdlib"], stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL).returncode == 0),
        ) if not ok]
        if missing:
            self.skipTest("not installed: %s" % ", ".join(missing))
        root = os.path.join(self.dir, "root")
        os.mkdir(root)
        data = os.urandom(300000)
        with open(os.path.join(root, "data.bin"), "wb") as f:
            f.write(data)
        ftpd = Proc(self, "pyftpdlib", [sys.executable, "-u", "-c", FTP_SERVER, "127.0.0.1",
                                        root])
        deadline = time.monotonic() + 10 * ft.SLOW
        while not ftpd.output().strip():
            if ftpd.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("pyftpdlib did not start:\n%s" % ftpd.output())
            time.sleep(0.05)
        ftp_port = int(ftpd.output().split()[0])
        conf = os.path.join(self.dir, "socks.conf")
        with open(conf, "w") as f:
            f.write(textwrap.dedent("""\
                logoutput: stderr
                route {
                    from: 0.0.0.0/0 to: 0.0.0.0/0 via: 127.0.0.1 port = %d
                    proxyprotocol: socks_v5
                    method: none
                    command: connect bind bindreply
                }
                """ % self.client.port))
        env = dict(CURL_ENV, SOCKS_CONF=conf, SOCKS_AUTOADD_LANROUTES="no")
        for k in ("SOCKS_SERVER", "SOCKS4_SERVER", "SOCKS5_SERVER"):
            env.pop(k, None)
        out = os.path.join(self.dir, "out.bin")
        script = "user anonymous ferry@\nbinary\nget data.bin %s\nquit\n" % out
        r = subprocess.run(["socksify", "ftp", "-A", "-n", "-v", "127.0.0.1", str(ftp_port)],
                           input=script.encode(), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, env=env, timeout=60 * ft.SLOW)
        text = (r.stdout + r.stderr).decode("utf-8", "replace")
        ft.log("socksify ftp (rc %d):\n%s" % (r.returncode, text))
        self.assertIn("226", text, "no completed transfer")
        with open(out, "rb") as f:
            self.assertEqual(f.read(), data)
        lines = self.server_sessions(2, reply="succeeded")
        self.assertEqual(sorted(l["cmd"] for l in lines), ["bind", "connect"])
        bind = [l for l in lines if l["cmd"] == "bind"][0]
        # The server ferryd listened for the data connection on its tunnel listener's address,
        # and the file came down through it.
        self.assertTrue(bind["addr"].startswith("127.0.0.1:"), bind)
        self.assertGreaterEqual(int(bind["down"]), len(data))
        via = self.client.wait_sessions(2, timeout=10)
        self.assertEqual(sorted(l["cmd"] for l in via), ["bind", "connect"])
        self.assertTrue(all(l.get("via") == "home" for l in via), via)


if __name__ == "__main__":
    ft.main()

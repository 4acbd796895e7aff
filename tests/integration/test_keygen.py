"""ferry-keygen: a new private key file of mode 0600 (whatever the umask), never an overwrite
without -f, the public key and its fingerprint printed, -y refusing a key file others may read."""

import base64
import hashlib
import os
import shutil
import stat
import subprocess
import tempfile
import unittest

import ferrytest as ft

KEYGEN = os.environ.get("FERRY_KEYGEN",
                        os.path.join(os.path.dirname(ft.FERRY_PASSWD), "ferry-keygen"))


def fingerprint(pub):
    return "BLAKE2b:" + base64.b64encode(hashlib.blake2b(pub).digest()[:8]).decode().rstrip("=")


class KeygenTest(unittest.TestCase):
    def setUp(self):
        if not os.access(KEYGEN, os.X_OK):
            raise AssertionError("ferry-keygen not built: %s" % KEYGEN)
        self.dir = tempfile.mkdtemp(prefix="ferrykeygen-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.key = os.path.join(self.dir, "key")

    def keygen(self, *args, umask=None):
        return subprocess.run([KEYGEN] + list(args), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=30,
                              preexec_fn=(lambda: os.umask(umask)) if umask is not None else None)

    def public(self, r):
        self.assertEqual(r.returncode, 0, r.stderr)
        line = r.stdout.decode()
        self.assertTrue(line.endswith("\n") and line.count("\n") == 1, line)
        self.assertEqual(len(line.strip()), 44)
        pub = base64.b64decode(line.strip(), validate=True)
        self.assertEqual(len(pub), 32)
        self.assertIn(fingerprint(pub), r.stderr.decode())
        return pub

    def test_new_key_is_owner_only_whatever_the_umask_and_y_gives_its_public_key(self):
        pub = self.public(self.keygen(self.key, umask=0))
        self.assertEqual(stat.S_IMODE(os.stat(self.key).st_mode), 0o600)
        self.assertEqual(self.public(self.keygen("-y", self.key)), pub)
        with open(self.key) as f:
            lines = [l for l in f.read().splitlines() if l and not l.startswith("#")]
        self.assertEqual(len(lines), 1)
        priv = base64.b64decode(lines[0], validate=True)
        self.assertEqual(len(priv), 32)
        self.assertNotEqual(priv, pub)
        try:
            from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
            from cryptography.hazmat.primitives import serialization
        except ImportError:
            ft.log("python3-cryptography missing: the public key is not recomputed here")
            return
        raw = X25519PrivateKey.from_private_bytes(priv).public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.assertEqual(raw, pub)

    def test_an_existing_file_is_kept_and_f_replaces_it(self):
        pub = self.public(self.keygen(self.key))
        with open(self.key, "rb") as f:
            before = f.read()
        r = self.keygen(self.key)
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"exists", r.stderr)
        self.assertEqual(r.stdout, b"")
        with open(self.key, "rb") as f:
            self.assertEqual(f.read(), before)
        pub2 = self.public(self.keygen("-f", self.key))
        self.assertNotEqual(pub2, pub)
        self.assertEqual(stat.S_IMODE(os.stat(self.key).st_mode), 0o600)
        self.assertEqual(sorted(os.listdir(self.dir)), ["key"])  # no temporary file left

    def test_a_symbolic_link_is_not_followed(self):
        target = os.path.join(self.dir, "elsewhere")
        os.symlink(target, self.key)
        r = self.keygen(self.key)
        self.assertEqual(r.returncode, 1)
        self.assertFalse(os.path.exists(target))

    def test_y_refuses_a_key_file_others_may_read(self):
        self.public(self.keygen(self.key))
        os.chmod(self.key, 0o644)
        r = self.keygen("-y", self.key)
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stdout, b"")
        self.assertIn(b"UNPROTECTED PRIVATE KEY FILE", r.stderr)
        self.assertIn(b"chmod 600", r.stderr)
        os.chmod(self.key, 0o640)
        self.assertIn(b"its group", self.keygen("-y", self.key).stderr)

    def test_y_refuses_what_is_not_a_key(self):
        with open(self.key, "w") as f:
            f.write("not a key\n")
        os.chmod(self.key, 0o600)
        r = self.keygen("-y", self.key)
        self.assertEqual(r.returncode, 1)
        self.assertIn(("%s:1: not a private key" % self.key).encode(), r.stderr)
        r = self.keygen("-y", os.path.join(self.dir, "missing"))
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"No such file", r.stderr)

    def test_usage_errors(self):
        for args in ([], ["-f", "-y", self.key], ["a", "b"], ["-x", self.key]):
            r = self.keygen(*args)
            self.assertEqual(r.returncode, 1, args)
            self.assertIn(b"usage", r.stderr)
        self.assertEqual(self.keygen("-h").returncode, 0)
        self.assertTrue(self.keygen("-V").stdout.startswith(b"ferry-keygen "))


if __name__ == "__main__":
    ft.main()

"""make check's short soak: 15 s at concurrency 200 with buffered relays and one load process
(so it leaves a core to the tests running beside it), over ::1 when the host has IPv6: the
soak's tens of thousands of connections leave TIME_WAIT sockets on a good part of the
ephemeral ports for a minute, and over IPv6 they cannot collide with the tests that bind fixed
IPv4 ports. See soak.py; `make soak` runs the long one."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import soak  # noqa: E402

if __name__ == "__main__":
    family = "6" if soak.ft.ipv6_available() else "4"
    sys.exit(soak.main(["--seconds", "15", "--concurrency", "200", "--procs", "1",
                        "--relay", "buffered", "--session-timeout", "30", "--family", family,
                        "--interval", "5"]))

#!/usr/bin/python3
"""A bounded soak of ferryd on loopback.

For --seconds, keeps --concurrency SOCKS CONNECT sessions in flight (SOCKS5 and SOCKS4/4a, by
address and by name) to an origin in this process, each moving a random amount of data each way
(0 B to --max-size) with a random order of half-closes:

  duplex        both ends send at once and half-close when done
  client-first  the client sends and half-closes, then the origin answers and half-closes
  origin-first  the origin sends and half-closes, then the client sends after seeing its EOF

and a small share of deliberate aborts (either end resets mid-transfer). Every transfer is
checked byte for byte with sha256 at the receiving end. Beside them, UDP associations come and
go, each echoing a few datagrams off a UDP echo server through ferryd.

At the end every session must have its one access line with the exact byte counts, ferryd's
open fds must be back to the baseline, and its RSS back to the baseline within a tolerance
(see RSS_TOLERANCE_KIB). ferryd must then exit 0 on SIGTERM without a sanitizer report. Prints the
figures; exits 1 on any error or mismatch.

Needs only the standard library and tests/integration/ferrytest.py.
"""

import argparse
import asyncio
import collections
import hashlib
import multiprocessing
import os
import random
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.environ.get("FERRY_TESTS_DIR", os.path.join(HERE, "..", "integration")))
import ferrytest as ft  # noqa: E402

# Header the client sends the origin after the SOCKS reply: session id, bytes up, bytes down,
# order of half-closes, abort mode.
HEADER = struct.Struct("!QQQBB")
ORDERS = ("duplex", "client-first", "origin-first")
ABORT_NONE, ABORT_CLIENT, ABORT_ORIGIN = 0, 1, 2
CHUNK = 256 * 1024
# Waits for ferryd are multiplied by ft.SLOW (10 under valgrind, see ferrytest.py).
UDP_TIMEOUT = 5.0 * ft.SLOW

# RSS. glibc's malloc keeps what ferryd frees in its heap: it gives back only the free top of
# the heap (one live block high up, a DNS cache entry refreshed late say, pins everything below
# it), and blocks under its mmap threshold (128 KiB) come from that heap. The 64 KiB buffers of
# buffered relays are such blocks: after a load at concurrency 1000, RSS then stays near its
# peak (tens of MB) although all of it is free inside ferryd. So the soak starts ferryd with
# MALLOC_MMAP_THRESHOLD_=65536 (GLIBC_TUNABLES' mmap_threshold): relay buffers are mapped
# and unmapped on their own, and what the heap still holds back after the load is its small
# blocks (a session and its negotiation buffer: about 3 KiB) up to the peak concurrency, and
# fragmentation. Hence:
#  - after the load, RSS within RSS_TOLERANCE_KIB + RSS_PER_SESSION_KIB per concurrent session
#    of the baseline (12 MiB at concurrency 1000); a leak of 64 bytes per session over the few
#    hundred thousand sessions of a 5-minute run would already exceed it;
#  - the peak RSS of the second half of the run at most RSS_GROWTH_KIB + RSS_GROWTH_SHARE above
#    that of the first half (the concurrency is constant; a leak grows with the sessions).
# With --malloc-default (glibc's own settings) only the second check is made, and RSS after the
# load may not exceed its peak. LeakSanitizer (an --enable-sanitizers build) catches small
# leaks exactly, at exit; there RSS is not checked (ASan's quarantine holds freed memory).
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536"}
RSS_TOLERANCE_KIB = 8 * 1024
RSS_PER_SESSION_KIB = 4
RSS_GROWTH_KIB = 4 * 1024
RSS_GROWTH_SHARE = 0.10


class Cleanups:
    """Stands in for a unittest.TestCase where ferrytest helpers want addCleanup."""

    def __init__(self):
        self.funcs = []

    def addCleanup(self, func, *args):
        self.funcs.append((func, args))

    def run(self):
        while self.funcs:
            func, args = self.funcs.pop()
            try:
                func(*args)
            except Exception as e:
                print("cleanup: %r" % e, file=sys.stderr)


class UDPEcho:
    """A UDP echo server on a thread of the parent process, which has little else to do: an echo
    in a busy load process would answer late, and the association would be gone by then."""

    def __init__(self, cleanups, host):
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                                  socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.running = True
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()
        cleanups.addCleanup(self.stop)

    def serve(self):
        while self.running:
            try:
                data, peer = self.sock.recvfrom(65535)
                self.sock.sendto(data, peer)
            except OSError:
                pass

    def stop(self):
        self.running = False
        self.thread.join(5)
        self.sock.close()


class Stats:
    def __init__(self):
        self.c = collections.Counter()
        self.errors = []
        # client port -> [(sid, bytes up, bytes down)] of the sessions that finished cleanly
        self.expected = collections.defaultdict(list)

    def error(self, what):
        self.c["errors"] += 1
        if len(self.errors) < 50:
            self.errors.append(what)


class Ferryd:
    """ferryd with its stderr in a file (a soak writes hundreds of thousands of lines)."""

    def __init__(self, path, config, nofile, env=None):
        self.dir = tempfile.mkdtemp(prefix="ferrysoak-")
        self.conf = os.path.join(self.dir, "ferryd.conf")
        self.log_path = os.path.join(self.dir, "ferryd.log")
        with open(self.conf, "w") as f:
            f.write(config)
        self.log = open(self.log_path, "wb")

        def limits():
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        self.proc = subprocess.Popen(ft.FERRYD_WRAPPER + [path, "-f", self.conf],
                                     stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=self.log,
                                     preexec_fn=limits, env=env)
        self.pid = self.proc.pid
        self.addr = None
        deadline = time.monotonic() + 10 * ft.SLOW
        while self.addr is None:
            m = ft.LISTEN_RE.search(self.text())
            if m:
                self.addr = (m.group(1).strip("[]"), int(m.group(2)))
            elif self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("ferryd did not start:\n" + self.text())
            else:
                time.sleep(0.02)

    def text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def sessions(self):
        out = []
        with open(self.log_path, "rb") as f:
            for raw in f:
                line = raw.decode("utf-8", "replace")
                if " session " in line:
                    s = ft.parse_session_line(line)
                    if s is not None:
                        out.append(s)
        return out

    def count_sessions(self):
        with open(self.log_path, "rb") as f:
            return sum(1 for line in f if b" session client=" in line)

    def stop(self, timeout):
        """SIGTERM; returns the exit status (None when it had to be killed)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                return None
        self.log.close()
        return self.proc.returncode


async def read_socks5_reply(reader):
    """(REP, (BND.ADDR, BND.PORT)) after the method reply of a no-auth greeting."""
    head = await reader.readexactly(6)  # method reply, then VER REP RSV ATYP
    if head[:3] != b"\x05\x00\x05" or head[4] != 0 or head[5] not in (1, 4):
        raise ValueError("bad SOCKS5 reply %r" % head)
    family = socket.AF_INET if head[5] == 1 else socket.AF_INET6
    rest = await reader.readexactly((4 if head[5] == 1 else 16) + 2)
    return head[3], (socket.inet_ntop(family, rest[:-2]), struct.unpack("!H", rest[-2:])[0])


def sizes(rng, max_size):
    """A random transfer size: mostly small, some medium, a few large, sometimes nothing."""
    r = rng.random()
    if r < 0.05:
        return 0
    if r < 0.55:
        return rng.randint(1, 16 * 1024)
    if r < 0.88:
        return rng.randint(16 * 1024, min(256 * 1024, max_size))
    return rng.randint(min(256 * 1024, max_size), max_size)


class Load:
    """The load generator: origin, UDP echo and clients in one asyncio loop."""

    def __init__(self, args, ferry_addr, block, dns_name):
        self.args = args
        self.ferry = ferry_addr
        self.block = block
        self.dns_name = dns_name
        self.stats = Stats()
        self.rng = random.Random(args.seed)
        self.next_sid = 0
        self.origin_results = {}  # sid -> future (bytes received, sha256 hex)
        self.deadline = 0.0
        self.active = 0

    def data(self, sid, size):
        off = (sid * 7919 * 4099) % (len(self.block) - size + 1)
        return memoryview(self.block)[off:off + size]

    # --- origin ------------------------------------------------------------------------------

    async def origin(self, reader, writer):
        sid = None
        # drain() then waits until everything is with the kernel, so nothing written is still
        # in the transport's buffer when it is aborted below.
        writer.transport.set_write_buffer_limits(high=0)
        try:
            head = await reader.readexactly(HEADER.size)
            sid, _, down, order, abort = HEADER.unpack(head)

            async def receive():
                h = hashlib.sha256()
                n = 0
                while True:
                    chunk = await reader.read(CHUNK)
                    if not chunk:
                        return n, h.hexdigest()
                    h.update(chunk)
                    n += len(chunk)

            async def send():
                data = self.data(sid, down)
                for i in range(0, len(data), CHUNK):
                    if abort == ABORT_ORIGIN and i >= len(data) // 2:
                        sock = writer.get_extra_info("socket")
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                        struct.pack("ii", 1, 0))
                        writer.transport.abort()
                        return
                    writer.write(data[i:i + CHUNK])
                    await writer.drain()
                await writer.drain()
                writer.write_eof()

            order = ORDERS[order]
            if order == "client-first":
                got = await receive()
                await send()
            elif order == "origin-first":
                await send()
                got = await receive()
            else:
                got = (await asyncio.gather(receive(), send()))[0]
            fut = self.origin_results.get(sid)
            if fut is not None and not fut.done():
                fut.set_result(got)
            # Wait for the client's close before closing (it may still be reading).
            await reader.read(1)
        except (ConnectionError, asyncio.IncompleteReadError, OSError) as e:
            if sid is not None:
                fut = self.origin_results.get(sid)
                if fut is not None and not fut.done():
                    fut.set_result(e)
        finally:
            writer.transport.abort()

    # --- TCP sessions -------------------------------------------------------------------------

    async def tcp_session(self, sid):
        args, rng, st = self.args, self.rng, self.stats
        kind = rng.random()
        if kind < 0.4:
            up, down = rng.randint(0, 1024), sizes(rng, args.max_size)
        elif kind < 0.7:
            up, down = sizes(rng, args.max_size), rng.randint(0, 1024)
        else:
            up, down = sizes(rng, args.max_size), sizes(rng, args.max_size)
        order = rng.randrange(len(ORDERS))
        abort = ABORT_NONE
        if rng.random() < args.abort_ratio:
            abort = rng.choice((ABORT_CLIENT, ABORT_ORIGIN))
            down = max(down, 2 * CHUNK)  # enough to be cut in the middle
            if order == ORDERS.index("origin-first"):
                order = ORDERS.index("duplex")
        by_name = rng.random() < 0.3
        socks4 = rng.random() < 0.1
        if socks4 and args.family == 6:
            by_name = True  # SOCKS4a: plain SOCKS4 carries only IPv4 addresses
        host = self.dns_name if by_name else args.host

        try:
            reader, writer = await asyncio.open_connection(*self.ferry)
        except OSError as e:
            st.error("connect to ferryd: %r" % e)
            return
        st.c["sessions"] += 1
        port = writer.get_extra_info("sockname")[1]
        fut = self.origin_results.setdefault(sid, asyncio.get_running_loop().create_future())
        try:
            if socks4:
                writer.write(ft.socks4_request(host, self.origin_port, b"soak"))
                reply = await reader.readexactly(8)
                ok = reply[1] == ft.SOCKS4_GRANTED
            else:
                writer.write(ft.socks5_greeting()
                             + ft.socks5_request(ft.CMD_CONNECT, host, self.origin_port))
                reply, _ = await read_socks5_reply(reader)
                ok = reply == ft.REP_SUCCEEDED
            if not ok:
                st.error("session %d: SOCKS reply %r" % (sid, reply))
                return
            writer.write(HEADER.pack(sid, up, down, order, abort))
            up_data = self.data(sid + 1, up)

            async def send():
                for i in range(0, len(up_data), CHUNK):
                    writer.write(up_data[i:i + CHUNK])
                    await writer.drain()
                writer.write_eof()

            async def receive():
                h = hashlib.sha256()
                n = 0
                while True:
                    if abort == ABORT_CLIENT and n >= down // 2:
                        sock = writer.get_extra_info("socket")
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                        struct.pack("ii", 1, 0))
                        writer.transport.abort()
                        return n, None
                    chunk = await reader.read(CHUNK)
                    if not chunk:
                        return n, h.hexdigest()
                    h.update(chunk)
                    n += len(chunk)

            name = ORDERS[order]
            if abort != ABORT_NONE:
                try:
                    await asyncio.gather(send(), receive())
                except (ConnectionError, OSError):
                    pass
                st.c["aborted"] += 1
                return
            if name == "client-first":
                await send()
                got = await receive()
            elif name == "origin-first":
                got = await receive()
                await send()
            else:
                got = (await asyncio.gather(receive(), send()))[0]
            want = self.data(sid, down)
            if got != (down, hashlib.sha256(want).hexdigest()):
                st.error("session %d (%s): received %d bytes, sha256 %s; expected %d"
                         % (sid, name, got[0], "ok" if got[1] == hashlib.sha256(want).hexdigest()
                            else "mismatch", down))
                return
            origin_got = await fut
            if origin_got != (up, hashlib.sha256(up_data).hexdigest()):
                st.error("session %d (%s): origin got %r, expected %d bytes"
                         % (sid, name, origin_got, up))
                return
            st.c["ok"] += 1
            st.c["bytes_up"] += up
            st.c["bytes_down"] += down
            st.c["order_" + name] += 1
            st.c["by_name" if by_name else "by_address"] += 1
            if socks4:
                st.c["socks4"] += 1
            st.expected[port].append((sid, HEADER.size + up, down))
        except (ConnectionError, asyncio.IncompleteReadError, OSError, asyncio.TimeoutError,
                ValueError) as e:
            st.error("session %d: %r" % (sid, e))
        finally:
            writer.transport.abort()
            self.origin_results.pop(sid, None)

    async def tcp_worker(self):
        while time.monotonic() < self.deadline:
            sid = self.next_sid
            self.next_sid += 2
            self.active += 1
            try:
                await asyncio.wait_for(self.tcp_session(sid), self.args.session_timeout)
            except asyncio.TimeoutError:
                self.stats.error("session %d: no end within %.0f s"
                                 % (sid, self.args.session_timeout))
            finally:
                self.active -= 1

    # --- UDP associations ------------------------------------------------------------------

    async def udp_association(self, aid):
        st, rng = self.stats, self.rng
        loop = asyncio.get_running_loop()
        try:
            reader, writer = await asyncio.open_connection(*self.ferry)
        except OSError as e:
            st.error("udp %d: connect to ferryd: %r" % (aid, e))
            return
        st.c["sessions"] += 1
        st.c["udp_assocs"] += 1
        transport = None
        try:
            writer.write(ft.socks5_greeting()
                         + ft.socks5_request(ft.CMD_UDP_ASSOCIATE, self.args.any, 0))
            reply, relay = await asyncio.wait_for(read_socks5_reply(reader), 10 * ft.SLOW)
            if reply != ft.REP_SUCCEEDED:
                st.error("udp %d: reply %#x" % (aid, reply))
                return
            queue = asyncio.Queue()

            class Proto(asyncio.DatagramProtocol):
                def datagram_received(self, data, addr):
                    queue.put_nowait(data)

            transport, _ = await loop.create_datagram_endpoint(
                Proto, local_addr=(self.args.host, 0))
            # RSV FRAG, then the echo server's address: what goes out and what comes back.
            head = b"\0\0\0" + ft.encode_dest5(self.args.host, self.args.udp_echo)

            async def echo_of(k, want):
                """True when want comes back within UDP_TIMEOUT; late echoes of datagrams
                sent before are skipped, anything else is an error."""
                deadline = loop.time() + UDP_TIMEOUT
                while True:
                    try:
                        data = await asyncio.wait_for(queue.get(), deadline - loop.time())
                    except asyncio.TimeoutError:
                        return False
                    if data == want:
                        return True
                    if data[:len(head)] != head or len(data) < len(head) + 12:
                        raise ValueError("datagram %d came back as %r" % (k, data[:40]))
                    late_aid, late_k = struct.unpack("!QI", data[len(head):len(head) + 12])
                    if late_aid != aid or late_k > k:
                        raise ValueError("datagram %d came back as %r" % (k, data[:40]))

            echoed = 0
            for k in range(rng.randint(1, 20)):
                payload = struct.pack("!QI", aid, k) + os.urandom(rng.randint(0, 1400))
                for _ in range(3):
                    transport.sendto(head + payload, relay)
                    st.c["udp_sent"] += 1
                    if await echo_of(k, head + payload):
                        echoed += 1
                        st.c["udp_echoed"] += 1
                        break
                    st.c["udp_lost"] += 1
            if echoed == 0:
                st.error("udp %d: nothing came back" % aid)
                return
            st.c["udp_ok"] += 1
        except (ConnectionError, asyncio.IncompleteReadError, OSError, asyncio.TimeoutError,
                ValueError) as e:
            st.error("udp %d: %r" % (aid, e))
        finally:
            if transport is not None:
                transport.close()
            writer.transport.abort()

    async def udp_worker(self, first):
        aid = first
        while time.monotonic() < self.deadline:
            await self.udp_association(aid)
            aid += 1000
            await asyncio.sleep(self.rng.random() * 0.2)

    # --- running ---------------------------------------------------------------------------

    async def run(self, seconds, report):
        server = await asyncio.start_server(self.origin, self.args.host, 0,
                                            backlog=4096, limit=CHUNK)
        self.origin_port = server.sockets[0].getsockname()[1]

        self.deadline = time.monotonic() + seconds
        tasks = [asyncio.create_task(self.tcp_worker()) for _ in range(self.args.concurrency)]
        tasks += [asyncio.create_task(self.udp_worker(i)) for i in range(self.args.udp)]
        reporter = asyncio.create_task(report(self))
        await asyncio.gather(*tasks)
        reporter.cancel()
        server.close()
        await server.wait_closed()


def uses_asan(pid):
    with open("/proc/%d/maps" % pid) as f:
        return "libasan" in f.read()


def proc_cpu(pid):
    try:
        return ft.cpu_seconds(pid)
    except OSError:
        return 0.0


def cpu_self():
    """CPU seconds of this process and of its finished children (the load processes)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        r = resource.getrusage(who)
        total += r.ru_utime + r.ru_stime
    return total


def load_process(index, args, ferry_addr, dns_name, queue):
    """One load generator (a process of its own, so the load can use more than one core):
    reports its counters every second and, at the end, everything the parent checks."""
    args.seed += index
    block = random.Random(args.seed).randbytes(2 * args.max_size + 4096)
    load = Load(args, ferry_addr, block, dns_name)
    load.next_sid = index << 48

    async def report(load):
        while True:
            await asyncio.sleep(1)
            queue.put(("progress", index, dict(load.stats.c), load.active))

    try:
        asyncio.run(load.run(args.seconds, report))
    except BaseException as e:
        load.stats.error("load process %d: %r" % (index, e))
    st = load.stats
    queue.put(("done", index, dict(st.c), st.errors, dict(st.expected)))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=300)
    p.add_argument("--concurrency", type=int, default=1000)
    p.add_argument("--udp", type=int, default=None,
                   help="concurrent UDP associations (default: concurrency / 50, at least 2)")
    p.add_argument("--procs", type=int, default=min(4, os.cpu_count() or 1),
                   help="load generator processes (default: CPUs, at most 4)")
    p.add_argument("--max-size", type=int, default=4 << 20)
    p.add_argument("--abort-ratio", type=float, default=0.02)
    p.add_argument("--session-timeout", type=float, default=120,
                   help="seconds a session may take before it counts as hung (times "
                        "FERRY_SLOW: 10 under valgrind)")
    p.add_argument("--relay", choices=("auto", "splice", "buffered"), default=None,
                   help="ferryd's relay mode (default: ferryd's own default)")
    p.add_argument("--workers", type=int, default=None,
                   help="ferryd's workers (default: 1, as in the other tests)")
    p.add_argument("--family", type=int, choices=(4, 6), default=4,
                   help="run everything over 127.0.0.1 (4) or ::1 (6)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--malloc-default", action="store_true",
                   help="run ferryd with glibc's malloc settings (see MALLOC_ENV)")
    p.add_argument("--ferryd", default=ft.FERRYD)
    p.add_argument("--interval", type=float, default=10, help="seconds between progress lines")
    args = p.parse_args(argv)
    if args.udp is None:
        args.udp = max(2, args.concurrency // 50)
    if args.seed is None:
        args.seed = random.randrange(1 << 32)
    args.session_timeout *= ft.SLOW
    args.procs = max(1, min(args.procs, args.concurrency))
    if args.family == 6 and not ft.ipv6_available():
        raise SystemExit("--family 6: no IPv6 loopback here")
    args.host, args.any = ("::1", "::") if args.family == 6 else ("127.0.0.1", "0.0.0.0")

    # Each CONNECT takes 2 sockets here (client and origin) and up to 6 fds in ferryd (2 sockets
    # and 2 pipes); each UDP association 2 here and 3 there.
    need_self = 3 * (args.concurrency + args.udp) + 256
    need_ferryd = 6 * (args.concurrency + args.udp) + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < max(need_self, need_ferryd):
        try:
            hard = max(need_self, need_ferryd)
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            raise SystemExit("RLIMIT_NOFILE: hard limit %d, %d needed (lower --concurrency)"
                             % (resource.getrlimit(resource.RLIMIT_NOFILE)[1],
                                max(need_self, need_ferryd)))
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, need_self), hard))
    nofile = need_ferryd

    cleanups = Cleanups()
    args.udp_echo = UDPEcho(cleanups, args.host).port
    dns = ft.DNSServer(cleanups)
    dns_name = "origin.soak.test"
    # A short TTL: the resolver's cache expires and refills all through the run.
    if args.family == 6:
        dns.add(dns_name, aaaa=["::1"], ttl=2)
    else:
        dns.add(dns_name, a=["127.0.0.1"], ttl=2)
    extra = [
        "max-sessions %d" % (args.concurrency + args.udp + 1024),
        "udp max-per-client %d" % (args.udp + 16),
        "udp max-total %d" % (args.udp + 16),
        "shutdown-grace 2s",
    ]
    if args.relay:
        extra.append("relay %s" % args.relay)
    if args.workers:
        extra.append("workers %d" % args.workers)
    # Every load process is the same client IP: the per-client defaults would cap it.
    extra.append("limit sessions-per-client off")
    extra.append("limit negotiating-per-client off")
    listen = "[::1]:0" if args.family == 6 else "127.0.0.1:0"
    config = ft.make_config(listen=[listen], dns=dns, extra=extra)
    env = dict(os.environ, **({} if args.malloc_default else MALLOC_ENV))
    ferry = Ferryd(args.ferryd, config, nofile, env=env)
    cleanups.addCleanup(lambda: ferry.proc.poll() is None and ferry.proc.kill())
    print("soak: ferryd %d on %s port %d, %.0f s, concurrency %d, udp %d, %d load processes, "
          "max size %d, seed %d, relay %s"
          % (ferry.pid, ferry.addr[0], ferry.addr[1], args.seconds, args.concurrency, args.udp,
             args.procs, args.max_size, args.seed, args.relay or "default"), flush=True)
    try:
        rc = run(args, ferry, dns_name)
    finally:
        cleanups.run()
    return rc


def run(args, ferry, dns_name):
    pid = ferry.pid
    failures = []

    # Warm up: a short load, then the baseline once ferryd is idle.
    warm_args = argparse.Namespace(**vars(args))
    warm_args.concurrency, warm_args.udp, warm_args.max_size = 4, 1, 1 << 20
    warm = Load(warm_args, ferry.addr, random.Random(0).randbytes(2 << 20), dns_name)
    warm.next_sid = 1 << 60
    asyncio.run(warm.run(1.0, lambda load: asyncio.sleep(3600)))
    if warm.stats.c["errors"]:
        print("warm-up errors: %s" % warm.stats.errors)
        return 1
    started_warm = warm.stats.c["sessions"]
    ft.wait_until(lambda: ferry.count_sessions() == started_warm, 10)
    time.sleep(0.3)
    base_fds = ft.open_fds(pid)
    base_rss = ft.rss_kib(pid)
    base_lines = ferry.count_sessions()
    base_cpu = ft.cpu_seconds(pid)
    print("soak: baseline after %d warm-up sessions: %d fds, RSS %d KiB"
          % (started_warm, base_fds, base_rss), flush=True)

    # The load processes.
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = []
    for i in range(args.procs):
        share = argparse.Namespace(**vars(args))
        share.concurrency = args.concurrency // args.procs + (i < args.concurrency % args.procs)
        share.udp = args.udp // args.procs + (i < args.udp % args.procs)
        procs.append(ctx.Process(target=load_process, args=(i, share, ferry.addr, dns_name, queue),
                                 daemon=True))
    start = time.monotonic()
    self_cpu0 = cpu_self()
    for proc in procs:
        proc.start()

    progress = {}
    done = {}
    peak = {"rss": base_rss, "fds": base_fds}
    rss_samples = []  # (seconds into the run, RSS KiB)
    last = start
    last_ferry_cpu, last_self_cpu = ft.cpu_seconds(pid), cpu_self()
    next_print = start + args.interval
    give_up = start + args.seconds + args.session_timeout + 60
    while len(done) < len(procs):
        try:
            msg = queue.get(timeout=0.25)
        except Exception:
            msg = None
        if msg is not None and msg[0] == "progress":
            progress[msg[1]] = (collections.Counter(msg[2]), msg[3])
        elif msg is not None and msg[0] == "done":
            done[msg[1]] = msg[2:]
            progress[msg[1]] = (collections.Counter(msg[2]), 0)
        if ferry.proc.poll() is None:
            rss = ft.rss_kib(pid)
            rss_samples.append((time.monotonic() - start, rss))
            peak["rss"] = max(peak["rss"], rss)
            peak["fds"] = max(peak["fds"], ft.open_fds(pid))
        now = time.monotonic()
        if now > give_up:
            failures.append("load processes did not finish")
            break
        if any(not p.is_alive() and i not in done for i, p in enumerate(procs)):
            time.sleep(1)  # its last message may still be in the queue
            continue
        if now >= next_print and ferry.proc.poll() is None:
            c = sum((pc for pc, _ in progress.values()), collections.Counter())
            active = sum(a for _, a in progress.values())
            fc = ft.cpu_seconds(pid)
            sc = cpu_self() + sum(proc_cpu(p.pid) for p in procs if p.is_alive())
            print("soak: %5.0f s  sessions %d (active %d)  ok %d  udp %d  %.0f MB  errors %d"
                  "  ferryd CPU %3.0f%%  load CPU %3.0f%%  RSS %d KiB  fds %d"
                  % (now - start, c["sessions"], active, c["ok"], c["udp_ok"],
                     (c["bytes_up"] + c["bytes_down"]) / 1e6, c["errors"],
                     100 * (fc - last_ferry_cpu) / (now - last),
                     100 * (sc - last_self_cpu) / (now - last),
                     ft.rss_kib(pid), ft.open_fds(pid)), flush=True)
            last, last_ferry_cpu, last_self_cpu = now, fc, sc
            next_print = now + args.interval
    for proc in procs:
        proc.join(10)
        if proc.is_alive():
            proc.kill()
            proc.join(5)
    elapsed = time.monotonic() - start
    self_cpu = cpu_self() - self_cpu0
    ferry_cpu = ft.cpu_seconds(pid) - base_cpu if ferry.proc.poll() is None else float("nan")

    st = Stats()
    for i in range(len(procs)):
        if i not in done:
            st.error("load process %d sent no results" % i)
            continue
        counts, errors, expected = done[i]
        st.c.update(counts)
        st.errors.extend(errors)
        for port, items in expected.items():
            st.expected[port].extend(items)
    c = st.c

    # Every session ends with one access line; then the fds and memory come back.
    started = c["sessions"]
    if ferry.proc.poll() is not None:
        print("soak: FAIL: ferryd died: status %s; its log: %s"
              % (ferry.proc.returncode, ferry.log_path))
        return 1
    ft.wait_until(lambda: ferry.count_sessions() >= base_lines + started, 30)
    time.sleep(0.5)
    lines = ferry.count_sessions() - base_lines
    final_fds = ft.wait_fds(pid, base_fds, 30)
    time.sleep(0.5)
    final_rss = ft.rss_kib(pid)
    if lines != started:
        failures.append("%d sessions started, %d access lines" % (started, lines))
    if final_fds != base_fds:
        failures.append("ferryd has %d fds open, baseline %d" % (final_fds, base_fds))
    half = args.seconds / 2
    first = max([r for t, r in rss_samples if t < half] or [base_rss])
    second = max([r for t, r in rss_samples if half <= t <= args.seconds] or [base_rss])
    growth_limit = RSS_GROWTH_KIB + int(RSS_GROWTH_SHARE * first)
    if uses_asan(pid):
        # AddressSanitizer holds freed memory in its quarantine (256 MB by default): RSS says
        # nothing about leaks there; LeakSanitizer reports them when ferryd exits.
        rss_verdict = "not checked: ASan build (LeakSanitizer checks at exit)"
    elif ft.UNDER_VALGRIND:
        # valgrind's allocator ignores MALLOC_ENV, keeps freed blocks aside and adds its shadow
        # memory to RSS; memcheck reports leaks when ferryd exits.
        rss_verdict = "not checked: under valgrind (memcheck checks leaks at exit)"
    else:
        if second - first > growth_limit:
            failures.append("RSS grew from a peak of %d KiB in the first half of the run to %d "
                            "KiB in the second (limit +%d KiB)" % (first, second, growth_limit))
        if args.malloc_default:
            rss_verdict = ("glibc defaults: second half at most first half + %d KiB, final at "
                           "most the peak" % growth_limit)
            if final_rss > peak["rss"]:
                failures.append("RSS %d KiB after the load, above its peak %d KiB"
                                % (final_rss, peak["rss"]))
        else:
            tolerance = RSS_TOLERANCE_KIB + RSS_PER_SESSION_KIB * (args.concurrency + args.udp)
            rss_verdict = ("%s: final at most baseline + %d KiB, second half at most first "
                           "half + %d KiB" % (" ".join("%s=%s" % kv for kv in MALLOC_ENV.items()),
                                              tolerance, growth_limit))
            if final_rss - base_rss > tolerance:
                failures.append("RSS %d KiB after the load, baseline %d KiB (tolerance %d KiB)"
                                % (final_rss, base_rss, tolerance))

    # The access lines carry exactly the bytes each clean session moved.
    sessions = ferry.sessions()[base_lines:]
    by_port = {}
    for s in sessions:
        client = s.get("client", "")
        ip, _, port = client.rpartition(":")
        if ip.strip("[]") == args.host and s.get("cmd") in ("connect", "socks4-connect"):
            by_port.setdefault(int(port), []).append(s)
    checked = mismatched = 0
    for port, expected in st.expected.items():
        # A long run reuses client ports: each clean session on a port needs a line of its own
        # with its byte counts.
        found = collections.Counter((int(s.get("up", -1)), int(s.get("down", -1)))
                                    for s in by_port.get(port, []) if s.get("reply") == "succeeded")
        for sid, up, down in expected:
            if found[(up, down)] > 0:
                found[(up, down)] -= 1
                checked += 1
            else:
                mismatched += 1
                if mismatched <= 5:
                    st.error("session %d: no access line for port %d with up=%d down=%d: %r"
                             % (sid, port, up, down, by_port.get(port)))
    udp_lines = sum(1 for s in sessions if s.get("cmd") == "udp")
    if udp_lines != c["udp_assocs"]:
        failures.append("%d UDP associations, %d UDP access lines" % (c["udp_assocs"], udp_lines))
    ends = collections.Counter(s.get("end") for s in sessions)

    status = ferry.stop(10 * ft.SLOW)
    text = ferry.text()
    if status != 0:
        failures.append("ferryd exit status %s after SIGTERM" % status)
    if "Sanitizer" in text or "runtime error:" in text:
        failures.append("sanitizer report in ferryd's log %s" % ferry.log_path)

    total_bytes = c["bytes_up"] + c["bytes_down"]
    print("soak: figures")
    print("  duration            %.1f s" % elapsed)
    print("  sessions            %d started, %d access lines (%.0f/s)"
          % (started, lines, started / elapsed))
    print("  connect sessions    %d checked clean (%d by name, %d SOCKS4/4a), %d aborted on "
          "purpose" % (c["ok"], c["by_name"], c["socks4"], c["aborted"]))
    print("  half-close orders   duplex %d, client-first %d, origin-first %d"
          % (c["order_duplex"], c["order_client-first"], c["order_origin-first"]))
    print("  udp associations    %d (%d clean), datagrams %d sent, %d echoed, %d lost"
          % (c["udp_assocs"], c["udp_ok"], c["udp_sent"], c["udp_echoed"], c["udp_lost"]))
    print("  bytes               %d up, %d down, %.1f MB/s"
          % (c["bytes_up"], c["bytes_down"], total_bytes / elapsed / 1e6))
    print("  access-line bytes   %d sessions match exactly, %d do not" % (checked, mismatched))
    print("  session ends        %s" % ", ".join("%s %d" % kv for kv in ends.most_common()))
    print("  errors              %d" % c["errors"])
    print("  ferryd RSS          baseline %d KiB, peak %d KiB (first half %d, second half %d),"
          " final %d KiB" % (base_rss, peak["rss"], first, second, final_rss))
    print("                      %s" % rss_verdict)
    print("  ferryd fds          baseline %d, peak %d, final %d"
          % (base_fds, peak["fds"], final_fds))
    print("  CPU                 ferryd %.1f s (%.0f%%), load %.1f s (%.0f%%)"
          % (ferry_cpu, 100 * ferry_cpu / elapsed, self_cpu, 100 * self_cpu / elapsed))
    print("  ferryd exit         %s" % status)
    for e in st.errors[:20]:
        print("  error: %s" % e)
    if c["errors"]:
        failures.append("%d errors" % c["errors"])
    for f in failures:
        print("soak: FAIL: %s" % f)
    if failures:
        print("soak: ferryd's log: %s" % ferry.log_path)
        return 1
    print("soak: PASS")
    shutil.rmtree(ferry.dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

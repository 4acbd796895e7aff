"""What no real client sends: split and pipelined messages, bad lengths, wrong versions, unknown
commands and address types, half-close, and the negotiate and idle timeouts."""

import socket
import struct
import threading
import time
import unittest

import ferrytest as ft

LONG_NAME_253 = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])
assert len(LONG_NAME_253) == 253


def send_slowly(s, data, delay=0.01):
    for i in range(len(data)):
        s.send(data[i:i + 1])
        time.sleep(delay)


class RawTest(unittest.TestCase):
    def setUp(self):
        self.echo = ft.EchoOrigin(self)
        self.dns = ft.DNSServer(self)
        self.dns.add("echo.ferry.test", a=["127.0.0.1"])
        self.dns.add(LONG_NAME_253, a=["127.0.0.1"])
        self.ferry = ft.start_ferryd(self, dns=self.dns, extra=["timeout negotiate 1s"])

    def client(self):
        return ft.connect(*self.ferry.addr(), timeout=5)

    def negotiated(self):
        s = self.client()
        s.sendall(ft.socks5_greeting())
        self.assertEqual(ft.read_method(s), ft.METHOD_NOAUTH)
        return s

    def assert_reply_then_closed(self, s, rep):
        got, _, _ = ft.read_socks5_reply(s)
        self.assertEqual(got, rep)
        closed, data, _ = ft.wait_closed(s, 3)
        self.assertTrue(closed, "connection still open after error reply %#x" % rep)
        self.assertEqual(data, b"")

    # --- message boundaries ---------------------------------------------------------------

    def test_greeting_and_request_split_byte_by_byte(self):
        with self.client() as s:
            send_slowly(s, ft.socks5_greeting((ft.METHOD_NOAUTH, ft.METHOD_USERPASS)))
            self.assertEqual(ft.read_method(s), ft.METHOD_NOAUTH)
            send_slowly(s, ft.socks5_request(ft.CMD_CONNECT, "echo.ferry.test", self.echo.port))
            rep, baddr, bport = ft.read_socks5_reply(s)
            self.assertEqual(rep, ft.REP_SUCCEEDED)
            self.assertEqual(ft.echo_roundtrip(s, b"split"), b"split")
        self.assertEqual((baddr, bport), self.echo.peers[0])

    def test_greeting_request_and_data_pipelined_in_one_send(self):
        payload = b"early bytes sent before any reply\n"
        with self.client() as s:
            s.sendall(ft.socks5_greeting()
                      + ft.socks5_request(ft.CMD_CONNECT, "127.0.0.1", self.echo.port) + payload)
            self.assertEqual(ft.read_method(s), ft.METHOD_NOAUTH)
            self.assertEqual(ft.read_socks5_reply(s)[0], ft.REP_SUCCEEDED)
            self.assertEqual(ft.recv_exact(s, len(payload)), payload)
            s.shutdown(socket.SHUT_WR)
            self.assertEqual(ft.recv_until_eof(s), b"")
        self.assertEqual(self.echo.received, [payload])

    def test_pipelined_with_name_and_half_close(self):
        payload = b"x" * 3000
        with self.client() as s:
            s.sendall(ft.socks5_greeting()
                      + ft.socks5_request(ft.CMD_CONNECT, "echo.ferry.test", self.echo.port)
                      + payload)
            s.shutdown(socket.SHUT_WR)
            self.assertEqual(ft.read_method(s), ft.METHOD_NOAUTH)
            self.assertEqual(ft.read_socks5_reply(s)[0], ft.REP_SUCCEEDED)
            self.assertEqual(ft.recv_until_eof(s), payload)

    def test_half_close_propagates_and_echo_comes_back(self):
        payload = bytes(range(256)) * 400
        with self.negotiated() as s:
            s.sendall(ft.socks5_request(ft.CMD_CONNECT, "127.0.0.1", self.echo.port))
            self.assertEqual(ft.read_socks5_reply(s)[0], ft.REP_SUCCEEDED)
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
            self.assertEqual(ft.recv_until_eof(s), payload)
        sess = self.ferry.wait_sessions(1)[-1]
        self.assertEqual(int(sess["up"]), len(payload), sess)
        self.assertEqual(int(sess["down"]), len(payload), sess)

    def check_target_half_closes_first(self, ferry):
        """The origin answers and half-closes at once, then still reads what the client sends
        after it has seen EOF: the relay must keep the other direction open."""
        late = []

        def handler(conn):
            conn.sendall(b"banner then EOF\n")
            conn.shutdown(socket.SHUT_WR)
            late.append(ft.recv_until_eof(conn))

        origin = ft.TCPOrigin(self, handler)
        s, rep, _, _ = ft.socks5_open(ferry.addr(), "127.0.0.1", origin.port)
        with s:
            self.assertEqual(rep, ft.REP_SUCCEEDED)
            self.assertEqual(ft.recv_until_eof(s), b"banner then EOF\n")
            s.sendall(b"sent after the target's EOF")
            s.shutdown(socket.SHUT_WR)
            closed, data, _ = ft.wait_closed(s, 5)
            self.assertTrue(closed)
            self.assertEqual(data, b"")
        ft.wait_until(lambda: late, 5)
        self.assertEqual(late, [b"sent after the target's EOF"])
        self.assertEqual(origin.errors, [])

    def test_target_half_closes_first_splice(self):
        self.check_target_half_closes_first(
            ft.start_ferryd(self, extra=["relay splice"]))

    def test_target_half_closes_first_buffered(self):
        self.check_target_half_closes_first(
            ft.start_ferryd(self, extra=["relay buffered"]))

    def test_client_half_close_buffered(self):
        ferry = ft.start_ferryd(self, extra=["relay buffered"])
        payload = b"y" * 100000
        s, rep, _, _ = ft.socks5_open(ferry.addr(), "127.0.0.1", self.echo.port)
        with s:
            self.assertEqual(rep, ft.REP_SUCCEEDED)
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
            self.assertEqual(ft.recv_until_eof(s), payload)

    def test_large_pipelined_payload_during_slow_resolve(self):
        self.dns.add("slow.ferry.test", a=["127.0.0.1"])
        self.dns.set_action("slow.ferry.test", "delay", 0.3)
        payload = bytes(range(256)) * 4096  # 1 MiB, far more than any negotiation buffer
        got = bytearray()
        with self.client() as s:
            s.settimeout(10)
            head = (ft.socks5_greeting()
                    + ft.socks5_request(ft.CMD_CONNECT, "slow.ferry.test", self.echo.port))

            def reader():
                try:
                    ft.recv_exact(s, 2)
                    ft.read_socks5_reply(s)
                    got.extend(ft.recv_exact(s, len(payload)))
                except Exception as e:  # reported below through got's length
                    ft.log("reader: %r" % e)

            t = threading.Thread(target=reader)
            t.start()
            s.sendall(head + payload)
            t.join(20)
        self.assertEqual(len(got), len(payload))
        self.assertTrue(got == payload)

    def test_target_reset_closes_client(self):
        def handler(conn):
            conn.sendall(b"about to reset")
            time.sleep(0.2)
            ft.reset(conn)

        origin = ft.TCPOrigin(self, handler)
        s, rep, _, _ = ft.socks5_open(self.ferry.addr(), "127.0.0.1", origin.port)
        with s:
            self.assertEqual(rep, ft.REP_SUCCEEDED)
            self.assertEqual(ft.recv_exact(s, 14), b"about to reset")
            closed, _, elapsed = ft.wait_closed(s, 3)
            self.assertTrue(closed, "client still open after the target reset")
        self.ferry.wait_sessions(1)

    def test_client_reset_closes_target(self):
        seen = []

        def handler(conn):
            conn.sendall(b"hi")
            seen.append(ft.wait_closed(conn, 5))

        origin = ft.TCPOrigin(self, handler)
        s, rep, _, _ = ft.socks5_open(self.ferry.addr(), "127.0.0.1", origin.port)
        self.assertEqual(rep, ft.REP_SUCCEEDED)
        self.assertEqual(ft.recv_exact(s, 2), b"hi")
        ft.reset(s)
        ft.wait_until(lambda: seen, 6)
        self.assertTrue(seen and seen[0][0], "target still open after the client reset: %r" % seen)
        self.assertLess(seen[0][2], 3)

    def test_target_speaks_first(self):
        def handler(conn):
            conn.sendall(b"220 hello from the target\r\n")
            data = ft.recv_exact(conn, 4)
            conn.sendall(data.upper())

        origin = ft.TCPOrigin(self, handler)
        s, rep, _, _ = ft.socks5_open(self.ferry.addr(), "127.0.0.1", origin.port)
        with s:
            self.assertEqual(rep, ft.REP_SUCCEEDED)
            self.assertEqual(ft.recv_exact(s, 27), b"220 hello from the target\r\n")
            s.sendall(b"quit")
            self.assertEqual(ft.recv_exact(s, 4), b"QUIT")

    def test_many_concurrent_sessions(self):
        socks = []
        try:
            for i in range(60):
                s = ft.connect(*self.ferry.addr())
                socks.append(s)
                s.sendall(ft.socks5_greeting()
                          + ft.socks5_request(ft.CMD_CONNECT, "127.0.0.1", self.echo.port))
            for s in socks:
                self.assertEqual(ft.read_method(s), ft.METHOD_NOAUTH)
                self.assertEqual(ft.read_socks5_reply(s)[0], ft.REP_SUCCEEDED)
            for i, s in enumerate(socks):
                s.sendall(b"session %03d" % i)
            for i, s in enumerate(socks):
                self.assertEqual(ft.recv_exact(s, 11), b"session %03d" % i)
        finally:
            for s in socks:
                s.close()
        self.assertEqual(len(self.ferry.wait_sessions(60, timeout=10)), 60)

    def test_max_sessions_refuses_requests_over_the_limit(self):
        # Over the limit a client is still negotiated, but its request gets 0x01 at once.
        ferry = ft.start_ferryd(self, extra=["max-sessions 2"])
        first = [ft.socks5_open(ferry.addr(), "127.0.0.1", self.echo.port) for _ in range(2)]
        try:
            for s, rep, _, _ in first:
                self.assertEqual(rep, ft.REP_SUCCEEDED)
            s, rep, _, _ = ft.socks5_open(ferry.addr(), "127.0.0.1", self.echo.port)
            s.close()
            self.assertEqual(rep, ft.REP_GENERAL_FAILURE)
            ft.wait_until(lambda: len(self.echo.peers) >= 2)
            self.assertEqual(len(self.echo.peers), 2)
            # A session ends: the next client is served.
            first[0][0].close()
            ferry.wait_sessions(2, timeout=5)
            s, rep, _, _ = ft.socks5_open(ferry.addr(), "127.0.0.1", self.echo.port)
            with s:
                self.assertEqual(rep, ft.REP_SUCCEEDED)
                self.assertEqual(ft.echo_roundtrip(s, b"third"), b"third")
        finally:
            for s, _, _, _ in first:
                s.close()

    # --- lengths --------------------------------------------------------------------------

    def test_greeting_with_255_methods(self):
        methods = [m for m in range(1, 256)]
        methods[-1] = ft.METHOD_NOAUTH
        with self.client() as s:
            s.sendall(bytes([5, 255]) + bytes(methods))
            self.assertEqual(ft.read_method(s), ft.METHOD_NOAUTH)
            s.sendall(ft.socks5_request(ft.CMD_CONNECT, "127.0.0.1", self.echo.port))
            self.assertEqual(ft.read_socks5_reply(s)[0], ft.REP_SUCCEEDED)

    def test_domain_of_255_bytes_gets_a_proper_reply(self):
        name = ".".join(["e" * 63, "f" * 63, "g" * 63, "h" * 63])
        self.assertEqual(len(name), 255)
        with self.negotiated() as s:
            s.sendall(ft.socks5_request(ft.CMD_CONNECT, name, self.echo.port))
            head = ft.recv_exact(s, 4)
            self.assertEqual(head[0], 5)
            self.assertIn(head[1], (ft.REP_HOST_UNREACHABLE, ft.REP_GENERAL_FAILURE))
            self.assertEqual(head[3], 1, "error replies carry an IPv4 BND")
            ft.recv_exact(s, 6)

    def test_domain_of_253_chars_served_by_dns_connects(self):
        s, rep, _, _ = ft.socks5_open(self.ferry.addr(), LONG_NAME_253, self.echo.port)
        with s:
            self.assertEqual(rep, ft.REP_SUCCEEDED)
            self.assertEqual(ft.echo_roundtrip(s, b"long"), b"long")
        self.assertGreater(self.dns.count(LONG_NAME_253), 0)

    def test_zero_length_domain_is_general_failure(self):
        with self.negotiated() as s:
            s.sendall(b"\x05\x01\x00\x03\x00" + struct.pack("!H", self.echo.port))
            self.assert_reply_then_closed(s, ft.REP_GENERAL_FAILURE)

    # --- versions, commands, address types --------------------------------------------------

    def test_wrong_version_in_greeting_closes_without_reply(self):
        with self.client() as s:
            s.sendall(b"\x06\x01\x00")
            closed, data, elapsed = ft.wait_closed(s, 3)
            self.assertTrue(closed)
            self.assertEqual(data, b"")
            self.assertLess(elapsed, 0.9, "closed by the negotiate timeout, not the bad version")

    def test_http_request_for_us_as_a_server_gets_400_then_close(self):
        # An upper-case first byte is HTTP's (the proxy front end): a request that names no
        # host to proxy to is answered 400, and the connection closed at once.
        with self.client() as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            closed, data, elapsed = ft.wait_closed(s, 3)
            self.assertTrue(closed)
            self.assertTrue(data.startswith(b"HTTP/1.1 400 "), data)
            self.assertLess(elapsed, 0.9)

    def test_tls_hello_instead_of_greeting_closes_without_reply(self):
        with self.client() as s:
            s.sendall(b"\x16\x03\x01\x00\x05hello")
            closed, data, elapsed = ft.wait_closed(s, 3)
            self.assertTrue(closed)
            self.assertEqual(data, b"")
            self.assertLess(elapsed, 0.9)

    def test_wrong_version_in_request_is_general_failure(self):
        with self.negotiated() as s:
            s.sendall(b"\x04\x01\x00\x01\x7f\x00\x00\x01" + struct.pack("!H", self.echo.port))
            self.assert_reply_then_closed(s, ft.REP_GENERAL_FAILURE)
        self.assertEqual(self.echo.peers, [])

    def test_unknown_atyp_is_address_type_not_supported(self):
        with self.negotiated() as s:
            s.sendall(b"\x05\x01\x00\x02\x7f\x00\x00\x01" + struct.pack("!H", self.echo.port))
            self.assert_reply_then_closed(s, ft.REP_ADDRESS_TYPE_NOT_SUPPORTED)

    def test_unknown_command_is_command_not_supported(self):
        with self.negotiated() as s:
            s.sendall(b"\x05\x09\x00\x01\x7f\x00\x00\x01" + struct.pack("!H", self.echo.port))
            self.assert_reply_then_closed(s, ft.REP_COMMAND_NOT_SUPPORTED)

    def test_closed_port_is_connection_refused(self):
        port = ft.closed_port()
        with self.negotiated() as s:
            s.sendall(ft.socks5_request(ft.CMD_CONNECT, "127.0.0.1", port))
            self.assert_reply_then_closed(s, ft.REP_CONNECTION_REFUSED)
        sess = self.ferry.wait_sessions(1)[-1]
        self.assertEqual(sess.get("reply"), "connection-refused", sess)
        self.assertEqual(sess.get("target"), "127.0.0.1:%d" % port, sess)

    def test_greeting_with_zero_methods_gets_ff(self):
        with self.client() as s:
            s.sendall(b"\x05\x00")
            self.assertEqual(ft.read_method(s), ft.METHOD_NONE)
            closed, _, _ = ft.wait_closed(s, 3)
            self.assertTrue(closed)

    # --- SOCKS4 / SOCKS4a ---------------------------------------------------------------------

    def test_socks4_request_split_byte_by_byte(self):
        with self.client() as s:
            send_slowly(s, ft.socks4_request("127.0.0.1", self.echo.port, b"someone"))
            cd, port, ip = ft.read_socks4_reply(s)
            self.assertEqual(cd, ft.SOCKS4_GRANTED)
            self.assertEqual(ft.echo_roundtrip(s, b"four"), b"four")
        self.assertEqual((ip, port), self.echo.peers[0])

    def test_socks4a_hostname_connects(self):
        with self.client() as s:
            s.sendall(ft.socks4_request("echo.ferry.test", self.echo.port, b"user4a"))
            cd, _, _ = ft.read_socks4_reply(s)
            self.assertEqual(cd, ft.SOCKS4_GRANTED)
            self.assertEqual(ft.echo_roundtrip(s, b"four-a"), b"four-a")
        sess = self.ferry.wait_sessions(1)[-1]
        self.assertEqual(sess.get("target"), "echo.ferry.test:%d" % self.echo.port, sess)

    def test_socks4a_split_with_pipelined_data(self):
        with self.client() as s:
            send_slowly(s, ft.socks4_request("echo.ferry.test", self.echo.port), 0.005)
            s.sendall(b"after")
            cd, _, _ = ft.read_socks4_reply(s)
            self.assertEqual(cd, ft.SOCKS4_GRANTED)
            self.assertEqual(ft.recv_exact(s, 5), b"after")

    def test_socks4_unknown_name_is_rejected(self):
        with self.client() as s:
            s.sendall(ft.socks4_request("nx.ferry.test", self.echo.port))
            cd, _, _ = ft.read_socks4_reply(s)
            self.assertEqual(cd, ft.SOCKS4_REJECTED)

    def test_socks4_closed_port_is_rejected(self):
        with self.client() as s:
            s.sendall(ft.socks4_request("127.0.0.1", ft.closed_port()))
            cd, _, _ = ft.read_socks4_reply(s)
            self.assertEqual(cd, ft.SOCKS4_REJECTED)

    def test_socks4_userid_of_300_bytes_is_rejected_not_hung(self):
        with self.client() as s:
            s.sendall(struct.pack("!BBH", 4, 1, self.echo.port) + b"\x7f\0\0\x01" + b"u" * 300
                      + b"\0")
            closed, data, elapsed = ft.wait_closed(s, 3)
            self.assertTrue(closed, "no answer to an over-long USERID")
            self.assertIn(data, (b"", b"\x00\x5b" + data[2:8]))
            if data:
                self.assertEqual(len(data), 8)
            self.assertLess(elapsed, 0.9, "closed by the negotiate timeout only")
        self.assertEqual(self.echo.peers, [])

    def test_socks4a_empty_hostname_is_rejected(self):
        with self.client() as s:
            s.sendall(struct.pack("!BBH", 4, 1, self.echo.port) + b"\0\0\0\x01" + b"\0" + b"\0")
            closed_or_reply = s.recv(8)
            if closed_or_reply:
                self.assertEqual(closed_or_reply[:2], b"\x00\x5b")
        self.assertEqual(self.echo.peers, [])

    def test_socks4_userid_of_255_bytes_is_accepted(self):
        with self.client() as s:
            s.sendall(ft.socks4_request("127.0.0.1", self.echo.port, b"u" * 255))
            cd, _, _ = ft.read_socks4_reply(s)
            self.assertEqual(cd, ft.SOCKS4_GRANTED)
            self.assertEqual(ft.echo_roundtrip(s, b"ok"), b"ok")

    def test_domain_with_nul_byte_is_general_failure(self):
        with self.negotiated() as s:
            s.sendall(b"\x05\x01\x00\x03\x05ab\0cd" + struct.pack("!H", self.echo.port))
            self.assert_reply_then_closed(s, ft.REP_GENERAL_FAILURE)
        self.assertEqual(self.dns.count(), 0)

    def test_socks4_unknown_command_is_rejected(self):
        with self.client() as s:
            s.sendall(ft.socks4_request("127.0.0.1", self.echo.port, cmd=3))
            cd, _, _ = ft.read_socks4_reply(s)
            self.assertEqual(cd, ft.SOCKS4_REJECTED)
            closed, _, _ = ft.wait_closed(s, 3)
            self.assertTrue(closed)
        self.assertEqual(self.echo.peers, [])

    # --- timeouts ---------------------------------------------------------------------------

    def test_silent_client_dropped_after_negotiate_timeout(self):
        with self.client() as s:
            closed, data, elapsed = ft.wait_closed(s, 5)
            self.assertTrue(closed, "silent client still connected after 5 s")
            self.assertEqual(data, b"")
            self.assertGreaterEqual(elapsed, 0.8)
            self.assertLess(elapsed, 3.0)

    def test_client_stalling_mid_request_dropped_after_negotiate_timeout(self):
        with self.negotiated() as s:
            s.sendall(b"\x05\x01\x00\x03\x20abc")
            closed, _, elapsed = ft.wait_closed(s, 5)
            self.assertTrue(closed)
            self.assertLess(elapsed, 3.0)

    def test_idle_relay_closed_after_idle_timeout(self):
        ferry = ft.start_ferryd(self, extra=["timeout idle 1s"])
        s, rep, _, _ = ft.socks5_open(ferry.addr(), "127.0.0.1", self.echo.port)
        with s:
            self.assertEqual(rep, ft.REP_SUCCEEDED)
            # Activity keeps it open past the timeout.
            for _ in range(4):
                self.assertEqual(ft.echo_roundtrip(s, b"keep"), b"keep")
                time.sleep(0.4)
            closed, data, elapsed = ft.wait_closed(s, 5)
            self.assertTrue(closed, "idle relay not closed")
            self.assertEqual(data, b"")
            self.assertGreaterEqual(elapsed, 0.5)
            self.assertLess(elapsed, 3.0)


if __name__ == "__main__":
    ft.main()

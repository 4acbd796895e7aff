#!/usr/bin/env python3
"""Write the hand-made seed inputs (corpus/<harness>/seed-*) of the fuzz harnesses.

Valid messages of every kind and the edge cases around them; the fuzzer's own finds sit beside
them in the same directories. Run from anywhere: python3 tests/fuzz/make_seeds.py
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def write(harness, name, data):
    d = os.path.join(HERE, "corpus", harness)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def s5_greeting():
    h = "socks5_greeting"
    write(h, "noauth", b"\x05\x01\x00")
    write(h, "noauth-userpass", b"\x05\x02\x00\x02")
    write(h, "zero-methods", b"\x05\x00")
    write(h, "all-methods", b"\x05\xff" + bytes(range(255)))
    write(h, "pipelined", b"\x05\x01\x02\x05\x02\x00\x02")
    write(h, "truncated", b"\x05\x03\x00")
    write(h, "socks4-version", b"\x04\x01\x00\x50")
    write(h, "offers-ff", b"\x05\x01\xff")


def s5_userpass():
    h = "socks5_userpass"
    write(h, "alice", b"\x01\x05alice\x06secret")
    write(h, "empty", b"\x01\x00\x00")
    write(h, "long", b"\x01\xff" + b"u" * 255 + b"\xff" + b"p" * 255)
    write(h, "nul-in-user", b"\x01\x03a\x00b\x01x")
    write(h, "nul-in-pass", b"\x01\x01a\x03x\x00y")
    write(h, "bad-version", b"\x05\x01a\x01b")
    write(h, "pipelined", b"\x01\x01a\x01b\x01\x01c\x01d")
    write(h, "truncated", b"\x01\x05ali")


def s5_req(cmd, atyp, addr, port, rsv=0):
    return bytes([5, cmd, rsv, atyp]) + addr + struct.pack(">H", port)


def s5_request():
    h = "socks5_request"
    v4 = bytes([192, 0, 2, 1])
    v6 = bytes.fromhex("20010db8000000000000000000000001")
    mapped = bytes.fromhex("00000000000000000000ffffc0000201")
    name = b"example.com"
    write(h, "connect-ipv4", s5_req(1, 1, v4, 80))
    write(h, "connect-ipv6", s5_req(1, 4, v6, 443))
    write(h, "connect-mapped", s5_req(1, 4, mapped, 443))
    write(h, "connect-name", s5_req(1, 3, bytes([len(name)]) + name, 80))
    write(h, "bind-ipv4", s5_req(2, 1, bytes(4), 0))
    write(h, "udp-ipv4-zero", s5_req(3, 1, bytes(4), 0))
    write(h, "resolve-name", s5_req(0xF0, 3, bytes([len(name)]) + name, 0))
    write(h, "resolve-ptr-ipv4", s5_req(0xF1, 1, v4, 0))
    write(h, "resolve-ptr-name", s5_req(0xF1, 3, bytes([len(name)]) + name, 0))
    write(h, "name-255", s5_req(1, 3, b"\xff" + b"a" * 255, 65535))
    write(h, "name-empty", s5_req(1, 3, b"\x00", 80))
    write(h, "name-nul", s5_req(1, 3, b"\x03a\x00b", 80))
    write(h, "name-control", s5_req(1, 3, b"\x05a\nb\\c", 80))
    write(h, "rsv-set", s5_req(1, 1, v4, 80, rsv=0xFF))
    write(h, "bad-version", b"\x04\x01\x00\x01" + v4 + b"\x00\x50")
    write(h, "bad-cmd", s5_req(9, 1, v4, 80))
    write(h, "bad-atyp", s5_req(1, 2, v4, 80))
    write(h, "pipelined", s5_req(1, 1, v4, 80) + s5_req(1, 3, b"\x01x", 1))
    write(h, "truncated", s5_req(1, 4, v6, 443)[:12])


def s4_request():
    h = "socks4_request"
    write(h, "connect", b"\x04\x01\x00\x50\xc0\x00\x02\x01\x00")
    write(h, "connect-user", b"\x04\x01\x00\x50\xc0\x00\x02\x01alice\x00")
    write(h, "bind", b"\x04\x02\x00\x00\x00\x00\x00\x00\x00")
    write(h, "4a-connect", b"\x04\x01\x01\xbb\x00\x00\x00\x01\x00example.com\x00")
    write(h, "4a-user", b"\x04\x01\x01\xbb\x00\x00\x00\xffbob\x00example.com\x00")
    write(h, "4a-resolve", b"\x04\xf0\x00\x00\x00\x00\x00\x01\x00example.com\x00")
    write(h, "resolve-not-4a", b"\x04\xf0\x00\x00\xc0\x00\x02\x01\x00")
    write(h, "4a-empty-host", b"\x04\x01\x00\x50\x00\x00\x00\x01\x00\x00")
    write(h, "userid-255", b"\x04\x01\x00\x50\xc0\x00\x02\x01" + b"u" * 255 + b"\x00")
    write(h, "userid-256", b"\x04\x01\x00\x50\xc0\x00\x02\x01" + b"u" * 256 + b"\x00")
    write(h, "4a-host-255", b"\x04\x01\x00\x50\x00\x00\x00\x01\x00" + b"h" * 255 + b"\x00")
    write(h, "4a-host-256", b"\x04\x01\x00\x50\x00\x00\x00\x01\x00" + b"h" * 256 + b"\x00")
    write(h, "bad-version", b"\x05\x01\x00\x50\xc0\x00\x02\x01\x00")
    write(h, "bad-cmd", b"\x04\x03\x00\x50\xc0\x00\x02\x01\x00")
    write(h, "pipelined", b"\x04\x01\x00\x50\xc0\x00\x02\x01\x00\x04\x02\x00\x01\x01\x01\x01\x01x\x00")
    write(h, "truncated", b"\x04\x01\x00\x50\x00\x00\x00\x01ab\x00exa")


def udp_header():
    h = "udp_header"
    v4 = bytes([192, 0, 2, 1])
    v6 = bytes.fromhex("20010db8000000000000000000000001")
    mapped = bytes.fromhex("00000000000000000000ffffc0000201")
    write(h, "ipv4", b"\x00\x00\x00\x01" + v4 + b"\x00\x35" + b"payload")
    write(h, "ipv4-empty-payload", b"\x00\x00\x00\x01" + v4 + b"\x00\x35")
    write(h, "ipv6", b"\x00\x00\x00\x04" + v6 + b"\x00\x35" + b"data")
    write(h, "mapped", b"\x00\x00\x00\x04" + mapped + b"\x00\x35" + b"data")
    write(h, "name", b"\x00\x00\x00\x03\x0bexample.com\x00\x35" + b"q")
    write(h, "name-1", b"\x00\x00\x00\x03\x01a\x00\x35")
    write(h, "name-255", b"\x00\x00\x00\x03\xff" + b"n" * 255 + b"\x00\x35")
    write(h, "name-empty", b"\x00\x00\x00\x03\x00\x00\x35")
    write(h, "name-nul", b"\x00\x00\x00\x03\x03a\x00b\x00\x35")
    write(h, "frag", b"\x00\x00\x01\x01" + v4 + b"\x00\x35" + b"x")
    write(h, "rsv-set", b"\xff\xff\x00\x01" + v4 + b"\x00\x35")
    write(h, "bad-atyp", b"\x00\x00\x00\x05" + v4 + b"\x00\x35")
    write(h, "truncated", b"\x00\x00\x00\x04" + v6[:7])


def conf():
    h = "conf"
    write(h, "empty", "")
    write(h, "comments", "# nothing\n\n   # indented\n")
    write(h, "shipped", """listen 127.0.0.1:1080
listen [::1]:1080
auth none
resolver system
resolver-timeout 2s
resolver-tries 2
timeout negotiate 10s
timeout resolve 10s
timeout connect 10s
timeout idle 5m
timeout udp 2m
timeout bind 1m
udp port-range ephemeral
udp filter address
udp max-per-client 16
udp max-total 1024
bind port-range 0-0
bind peer expected
log stderr
log-level info
max-sessions 4096
shutdown-grace 5s
relay auto
auth-threads 2
private-destinations block
trusted-clients 127.0.0.0/8 ::1
""")
    write(h, "password", """listen 0.0.0.0:1080 advertise 198.51.100.7
auth password none
users ferry.users
resolver 127.0.0.1:5353,[::1]:53
udp address 192.0.2.10
udp port-range 40000-40100
bind port-range 41000-41100
log syslog local3
""")
    write(h, "open-proxy-rules", """listen 0.0.0.0
auth none
allow-unauthenticated yes
client pass from 10.0.0.0/8,192.168.0.0/16 listener 0.0.0.0:1080 log
client block
request block to .internal.example,169.254.0.0/16 port 1-1024 log
request pass user alice,bob command connect,udp to any port 80,443,8000-8999
request pass command resolve
trusted-clients none
""")
    write(h, "udp-address-port", "udp filter address-port\nudp address ::1\n")
    write(h, "routes", """parent tor socks5 127.0.0.1:9050 timeout 2s retry 1m
parent corp http proxy.corp.example:3128
parent old socks4a [2001:db8::1]:1080 user-id ferry
route to .onion via tor
route from 10.0.0.0/8 user alice command connect,bind port 443 via corp>tor,old,direct resolve local
route via direct
metrics 127.0.0.1:9180
""")
    write(h, "route-errors", "route via a>a\nparent a socks5 [::1:1\nroute via x,,y\n")
    write(h, "errors", "listen 1.2.3.4:99999\n")
    write(h, "unknown", "frobnicate yes\n")
    write(h, "duplicate", "max-sessions 1\nmax-sessions 2\n")
    write(h, "durations", "timeout idle 0\nshutdown-grace 0.25\nresolver-timeout 250ms\ntimeout connect 1h\n")
    write(h, "too-many-args", "request pass " + " ".join(["log"] * 20) + "\n")
    write(h, "long-line", "listen " + "1" * 5000 + "\n")
    write(h, "crlf", "auth none\r\nrelay buffered\r\n")
    write(h, "connections", """max-negotiating 10:30:100
limit negotiating-per-client 4
limit client-prefix-ipv6 56
timeout half-closed 30s
tune rcvbuf 64K
tune sndbuf off
tcp-keepalive on 60s 10 5
""")
    write(h, "connections-errors", "max-negotiating 10::100\nmax-negotiating 5:200:1\n"
          "tcp-keepalive on 1\ntune rcvbuf 1\n")


def auth_users():
    h = "auth_users"
    hash1 = "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Y3qE8wKd0nH2nEN1b1cQd4l9j1V0O5zS4Yw3p9xk0Zc"
    hash2 = "$argon2i$v=19$m=4096,t=3,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"
    write(h, "one", "alice:" + hash1 + "\n")
    write(h, "two-crlf", "alice:" + hash1 + "\r\nbob:" + hash2 + "\r\n")
    write(h, "comments", "# users\n\n  # x\nalice:" + hash1 + "   \n")
    write(h, "duplicate", "alice:" + hash1 + "\nalice:" + hash2 + "\n")
    write(h, "no-colon", "alice\n")
    write(h, "empty-user", ":" + hash1 + "\n")
    write(h, "bad-hash", "alice:$2y$10$abcdefghijklmnopqrstuv\n")
    write(h, "space-in-name", "al ice:" + hash1 + "\n")
    write(h, "colon-in-hash", "alice:" + hash1 + ":x\n")
    write(h, "long-name", "u" * 256 + ":" + hash1 + "\n")
    write(h, "many", "".join("user%d:%s\n" % (i, hash1) for i in range(40)))


ACL_HEAD_FIELDS = struct.Struct(">BBHH16s16s16s")


def frontend():
    # First byte: bits 0-1 the methods (noauth; userpass; both, userpass first; both, noauth
    # first), bit 2 whether a login is accepted. Then the client's bytes.
    h = "frontend"
    req = b"\x05\x01\x00\x03\x0bexample.com\x00\x50"
    login = b"\x01\x05alice\x06secret"
    write(h, "noauth-connect", b"\x00" + b"\x05\x01\x00" + req + b"GET / HTTP/1.0\r\n")
    write(h, "login-ok-connect", b"\x05" + b"\x05\x01\x02" + login + req)
    write(h, "login-refused", b"\x01" + b"\x05\x01\x02" + login + req)
    write(h, "no-method", b"\x01" + b"\x05\x01\x00")
    write(h, "both-udp", b"\x06" + b"\x05\x02\x00\x02" + login +
          b"\x05\x03\x00\x01\x00\x00\x00\x00\x00\x00")
    write(h, "ptr", b"\x00" + b"\x05\x01\x00\x05\xf1\x00\x04" + bytes(15) + b"\x01\x00\x00")
    write(h, "socks4", b"\x00" + b"\x04\x01\x00\x50\x7f\x00\x00\x01user\x00")
    write(h, "socks4a-resolve", b"\x00" + b"\x04\xf0\x00\x00\x00\x00\x00\x01\x00example.com\x00")
    write(h, "socks4-no-noauth", b"\x01" + b"\x04\x01\x00\x50\x7f\x00\x00\x01\x00")
    write(h, "http", b"\x00" + b"GET http://example.com/ HTTP/1.1\r\n\r\n")
    write(h, "bad-command", b"\x00" + b"\x05\x01\x00\x05\x09\x00\x01\x7f\x00\x00\x01\x00\x50")


def upstream():
    h = "upstream_socks5_reply"
    write(h, "noauth-ok", b"\x05\x00" + b"\x05\x00\x00\x01\x7f\x00\x00\x01\x10\x92")
    write(h, "userpass-ok-v6", b"\x05\x02\x01\x00" + b"\x05\x00\x00\x04" + bytes(15) + b"\x01\x00\x50")
    write(h, "userpass-refused", b"\x05\x02\x01\x01")
    write(h, "refused", b"\x05\x00\x05\x05\x00\x01\x00\x00\x00\x00\x00\x00")
    write(h, "bind-two", b"\x05\x00" + (b"\x05\x00\x00\x01\x7f\x00\x00\x01\x10\x92") * 2)
    write(h, "name", b"\x05\x00\x05\x00\x00\x03\x0bexample.com\x00\x00")
    write(h, "no-method", b"\x05\xff")
    h = "upstream_socks4_reply"
    write(h, "granted", b"\x00\x5a\x10\x92\x7f\x00\x00\x01")
    write(h, "rejected", b"\x00\x5b\x00\x00\x00\x00\x00\x00")
    write(h, "bind-two", b"\x00\x5a\x10\x92\x7f\x00\x00\x01\x04\x5a\x00\x15\x0a\x00\x00\x02")
    h = "upstream_http_response"
    write(h, "200", "HTTP/1.1 200 Connection established\r\n\r\n")
    write(h, "200-data", "HTTP/1.0 200 OK\r\nProxy-Agent: x\r\n\r\nSSH-2.0-x\r\n")
    write(h, "407", "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"x\"\r\nContent-Length: 0\r\n\r\n")
    write(h, "100-then-200", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n")
    write(h, "bare-lf", "HTTP/1.1 502 Bad Gateway\nX: y\n\n")
    write(h, "not-http", "SSH-2.0-OpenSSH_9.2\r\n")


def http_request():
    # First two bytes: the buffer capacity (a big-endian number, 16 + n % 12000).
    h = "http_request"
    cap = b"\x07\xf0"
    write(h, "connect", cap + b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
    write(h, "connect-auth", cap + b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nProxy-Authorization: Basic YWxpY2U6c2VjcmV0\r\n\r\nSSH-2.0")
    write(h, "connect-v6", cap + b"CONNECT [2001:db8::1]:80 HTTP/1.0\n\n")
    write(h, "get-absolute", cap + b"GET http://example.com/a?b=c HTTP/1.1\r\nHost: example.com\r\nConnection: keep-alive\r\n\r\n")
    write(h, "post-chunked", cap + b"POST http://h:8080/ HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n")
    write(h, "smuggle", cap + b"POST http://h/ HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n")
    write(h, "https-absolute", cap + b"GET https://h/ HTTP/1.1\r\n\r\n")
    write(h, "obs-fold", cap + b"GET http://h/ HTTP/1.1\r\nX: a\r\n b\r\n\r\n")
    write(h, "http2", cap + b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    write(h, "small-cap", b"\x00\x10" + b"CONNECT example.com:443 HTTP/1.1\r\n\r\n")


def http_frame():
    # First byte: 0 response head (then two bytes of capacity), 1 body (then kind and length),
    # 2 rewrite (then flags and two bytes of output size).
    h = "http_frame"
    cap = b"\x00\x40\x00"
    write(h, "head-200", cap + b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
    write(h, "head-chunked", cap + b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n")
    write(h, "head-10-keepalive", cap + b"HTTP/1.0 200 OK\nConnection: keep-alive\nContent-Length: 0\n\n")
    write(h, "head-100-204", cap + b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n")
    write(h, "head-bad", cap + b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
    write(h, "body-chunked", b"\x01\x01\x00" + b"5;a=b\r\nhello\r\n1a\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX: y\r\n\r\nGET")
    write(h, "body-chunked-bad", b"\x01\x01\x00" + b"5\nhello\r\n")
    write(h, "body-length", b"\x01\x00\x07" + b"0123456789")
    write(h, "rewrite-request", b"\x02\x00\x04\x00" + b"GET http://h/x HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, X-A\r\nX-A: 1\r\nProxy-Authorization: Basic YTpi\r\nTE: trailers\r\nAccept: */*\r\n\r\n")
    write(h, "rewrite-response", b"\x02\x01\x04\x00" + b"HTTP/1.1 200 OK\nTransfer-Encoding: chunked\nContent-Length: 3\nKeep-Alive: 5\nUpgrade: h2c\n\n")
    write(h, "rewrite-small", b"\x02\x00\x00\x10" + b"GET http://h/ HTTP/1.1\r\nA: b\r\n\r\n")


def acl_head(flags, cmd, port, lport, client, dest, listener):
    def ip(b):
        return b.ljust(16, b"\x00")
    return ACL_HEAD_FIELDS.pack(flags, cmd, port, lport, ip(client), ip(dest), ip(listener))


def acl():
    h = "acl"
    v4c = bytes([10, 1, 2, 3])
    v4d = bytes([192, 0, 2, 1])
    v6d = bytes.fromhex("20010db8000000000000000000000001")
    lst = bytes([127, 0, 0, 1])
    known = 0x80 | 0x20  # client and listener known
    rules = """client pass from 10.0.0.0/8 listener 127.0.0.1:1080 log
client block
request block to .internal.example,169.254.0.0/16 port 1-1024 log
request pass user alice,bob command connect,udp to any port 80,443,8000-8999
request pass command resolve
request block to 192.0.2.0/24
request pass to example.com,[2001:db8::]/32
name www.internal.example
user alice
"""
    write(h, "rules-v4", acl_head(known | 0x04 | 0x10, 0, 80, 1080, v4c, v4d, lst) + rules.encode())
    write(h, "rules-name", acl_head(known | 0x08 | 0x10, 0, 443, 1080, v4c, v4d, lst) + rules.encode())
    write(h, "rules-v6", acl_head(known | 0x02 | 0x04, 2, 8080, 1080, v4c, v6d, lst) + rules.encode())
    write(h, "udp-unknown", acl_head(known, 2, 0, 1080, v4c, b"", lst) + rules.encode())
    write(h, "empty", acl_head(known | 0x04, 0, 80, 1080, v4c, v4d, lst))
    write(h, "errors", acl_head(0, 0, 0, 0, b"", b"", b"") + b"""request pass to *.example.com
request pass port 2000-1000
request pass from any,10.0.0.0/8
request pass to
request pass user
client pass command connect
request maybe
request pass log log
request pass to a..b
request pass to 1.2.3
request pass port 65536
client pass listener [::1]:1080
""")
    write(h, "mapped", acl_head(known | 0x02 | 0x04 | 0x01, 0, 80, 0,
                                bytes.fromhex("00000000000000000000ffff0a010203"),
                                bytes.fromhex("00000000000000000000ffffc0000201"), lst)
          + b"client pass from ::ffff:10.0.0.0/104\nrequest block to ::ffff:192.0.2.0/120\n")


def addr():
    h = "addr"
    for i, text in enumerate(["192.0.2.1", "192.0.2.1:80", "[2001:db8::1]:443", "[::1]", "::1",
                              "::ffff:192.0.2.1", "10.0.0.0/8", "2001:db8::/32",
                              "[2001:db8::]/32", "10.1.2.3/8", "1.2.3.4/33", "::/0", "10s",
                              "250ms", "1.5m", "1h", "0", "1e9", "[::1]:", "1.2.3.4:65536",
                              "1.2.3.4:00080", "[fe80::1%eth0]:1"]):
        write(h, "%02d" % i, struct.pack(">H", 1080) + text.encode())


def access():
    """Byte 0: flags (1 udp, 2 user, 4 target, 8 via; bits 4-5 limit/rule), byte 1: where the
    rest splits into user and target, bytes 2-9: counters."""
    h = "access"
    counters = struct.pack("<Q", 123456789)
    write(h, "plain", bytes([0x0E, 128]) + counters + b"alice" + b"example.com:80")
    write(h, "nothing", bytes([0x00, 0]) + counters)
    write(h, "udp-limit", bytes([0x17, 0]) + counters + b":0")
    write(h, "hostile", bytes([0x3E, 100]) + counters
          + b'ev"il\\ \n{"msg":"x"}\r\x01\x1b[31m\x7f\xff\xc3(\xe2\x82 jos\xc3\xa9 \xc2\x9b=x'
          + b'a"b\\c\nd.\xed\xa0\x80.\xf0\x9f\x9a\xa2 q=1.example:443')
    write(h, "all-bytes", bytes([0x2F, 128]) + counters + bytes(range(256)) * 2)
    write(h, "long", bytes([0x0F, 128]) + counters + b"\x01" * 1000)


def tunnel_authkeys():
    h = "tunnel_authkeys"
    k0 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
    k1 = "//////////////////////////////////////////8="
    write(h, "key-user", k0 + " alice\n")
    write(h, "user-key-crlf", "alice " + k0 + "\r\nbob\t" + k1 + "\r\n")
    write(h, "comments", "# keys\n\n  # x\n" + k0 + " alice  # laptop\n")
    write(h, "duplicate", k0 + " alice\nbob " + k0 + "\n")
    write(h, "both-keys", k0 + " " + k1 + "\n")
    write(h, "no-key", "alice bob\n")
    write(h, "one-field", k0 + "\n")
    write(h, "three-fields", k0 + " alice bob\n")
    write(h, "bad-user", k0 + " al:ice\n")
    write(h, "non-canonical", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh9= alice\n")
    write(h, "private", "# ferry-keygen X25519 private key\n" + k0 + "\n")
    write(h, "private-two", k0 + "\n" + k1 + "\n")


def tunnel_record():
    h = "tunnel_record"

    def rec(t, stream, payload=b""):
        return bytes([t, stream, len(payload)]) + payload

    clean = b"\x00\x00\x00\x10"
    write(h, "data-eof-close", clean + rec(1, 1, b"hello") + rec(4, 1) + rec(10, 0))
    write(h, "open-reply", clean + rec(2, 1, b"\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x50") +
          rec(3, 1, b"\x05\x00\x00\x01\x7f\x00\x00\x01\x00\x50"))
    write(h, "many-rekeys", b"\x00\x00\x00\x00" + b"".join(rec(1, i + 1, b"x" * i) for i in range(12)))
    write(h, "control", clean + rec(5, 3, b"\x01") + rec(6, 3, b"\x00\x00\x10\x00") +
          rec(7, 0, b"12345678") + rec(8, 0, b"12345678") + rec(9, 0))
    write(h, "invalid", clean + rec(0, 1, b"x") + rec(11, 1) + rec(1, 0, b"x") + rec(4, 1, b"x"))
    write(h, "after-close", clean + rec(10, 0) + rec(1, 1, b"late"))
    write(h, "flip-header", b"\x00\x05\x80\x07" + rec(1, 1, b"abc") + rec(1, 1, b"def"))
    write(h, "flip-body", b"\x00\x30\x01\xff" + rec(1, 1, b"abc") + rec(1, 1, b"def"))
    write(h, "flip-second", b"\x00\x40\x01\x00" + rec(1, 1, b"abc") + rec(1, 1, b"def"))
    write(h, "long", b"\x00\x00\x00\x40" + rec(1, 9, bytes(range(255))))
    # msg1 prefixes (doc 2.2): ChaChaPoly, AESGCM and an undefined suite code, each before 110
    # bytes that are no first message.
    for name, prefix in (("msg1-chacha", b"\x00\x6e"), ("msg1-aesgcm", b"\x10\x6e"),
                         ("msg1-suite-7", b"\x70\x6e")):
        write(h, name, prefix + bytes(range(110)))
    write(h, "handshake-size", bytes(96) + b"ferry")


def tunnel_udp():
    h = "tunnel_udp"

    def seal(n, a=1, b=3):
        return bytes([0, n, a, b])

    def deliver(i, pos=0, mask=0):
        return bytes([1, i, pos, mask])

    def skip(n, shift):
        return bytes([2, n, shift, 0])

    write(h, "in-order", b"".join(seal(10 * i) for i in range(4)) +
          b"".join(deliver(i) for i in range(4)))
    write(h, "reordered-duplicates", b"".join(seal(5) for i in range(6)) +
          b"".join(deliver(i) for i in (5, 1, 3, 0, 2, 4, 4, 1, 0)))
    write(h, "tampered", seal(20) + deliver(0, 3, 0x01) + deliver(0, 31, 0x80) + deliver(0) +
          deliver(0, 0, 0xff))
    write(h, "old", seal(1) + skip(9, 8) + seal(2) + deliver(1) + deliver(0) +
          skip(255, 3) + skip(7, 0) + seal(3) + deliver(2) + deliver(1))
    write(h, "window-edge", seal(1) + skip(255, 3) + skip(6, 0) + seal(1) + deliver(1) + deliver(0) +
          skip(0, 0) + seal(1) + deliver(2) + deliver(0))
    write(h, "counter-end", skip(255, 56) + seal(4) + skip(255, 63) + seal(4) + seal(0) +
          deliver(0) + deliver(1))
    write(h, "raw", bytes([3]) + bytes(range(40)))
    write(h, "empty-plaintext", seal(0) + deliver(0) + deliver(0, 27, 1))


def noise_ik_messages(aesgcm=False):
    """The fixed msg1 and msg2 of fuzz_tunnel_handshake.c (its keys, ephemeral keys, hello and
    welcome), made here from python3-cryptography's X25519 and AEADs and hashlib's BLAKE2b, as
    Noise_IK_25519_ChaChaPoly_BLAKE2b (or _AESGCM_) with the prologue ferry-tunnel/1."""
    import hashlib
    import hmac
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.x25519 import (X25519PrivateKey,
                                                                  X25519PublicKey)
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

    def pub(priv):
        return X25519PrivateKey.from_private_bytes(priv).public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    def dh(priv, peer):
        return X25519PrivateKey.from_private_bytes(priv).exchange(
            X25519PublicKey.from_public_bytes(peer))

    def mac(key, data):
        return hmac.new(key, data, hashlib.blake2b).digest()

    def hkdf(ck, ikm):
        temp = mac(ck, ikm)
        o1 = mac(temp, b"\x01")
        return o1, mac(temp, o1 + b"\x02")

    class State:
        def __init__(self):
            name = b"Noise_IK_25519_%s_BLAKE2b" % (b"AESGCM" if aesgcm else b"ChaChaPoly")
            self.h = name.ljust(64, b"\0")
            self.ck = self.h
            self.k = None
            self.n = 0

        def mix_hash(self, data):
            self.h = hashlib.blake2b(self.h + data).digest()

        def mix_key(self, ikm):
            self.ck, temp = hkdf(self.ck, ikm)
            self.k, self.n = temp[:32], 0

        def encrypt_and_hash(self, plain):
            if aesgcm:
                out = AESGCM(self.k).encrypt(b"\0" * 4 + self.n.to_bytes(8, "big"), plain,
                                             self.h)
            else:
                out = ChaCha20Poly1305(self.k).encrypt(b"\0" * 4 + self.n.to_bytes(8, "little"),
                                                       plain, self.h)
            self.n += 1
            self.mix_hash(out)
            return out

    s_priv, c_priv = b"\x53" * 32, b"\x43" * 32
    ie_priv, re_priv = b"\x45" * 32, b"\x65" * 32
    s_pub, c_pub, ie_pub, re_pub = pub(s_priv), pub(c_priv), pub(ie_priv), pub(re_priv)
    # 2023-11-14T22:13:20Z as TAI64N, no nanoseconds; flags 0.
    hello = ((1 << 62) + 10 + 1700000000).to_bytes(8, "big") + bytes(4) + b"\0\0"
    st = State()
    st.mix_hash(b"ferry-tunnel/1")
    st.mix_hash(s_pub)
    # -> e, es, s, ss (the initiator's view; the responder computes the same DHs).
    msg1 = ie_pub
    st.mix_hash(ie_pub)
    st.mix_key(dh(ie_priv, s_pub))
    msg1 += st.encrypt_and_hash(c_pub)
    st.mix_key(dh(c_priv, s_pub))
    msg1 += st.encrypt_and_hash(hello)
    # <- e, ee, se (the responder's view).
    msg2 = re_pub
    st.mix_hash(re_pub)
    st.mix_key(dh(re_priv, ie_pub))
    st.mix_key(dh(re_priv, c_pub))
    msg2 += st.encrypt_and_hash(b"\0\0")
    return msg1, msg2, hello


def tunnel_handshake():
    h = "tunnel_handshake"
    try:
        msg1, msg2, hello = noise_ik_messages()
    except ImportError:
        print("make_seeds: python3-cryptography missing: no valid tunnel handshake seeds")
        msg1 = msg2 = None
        hello = ((1 << 62) + 10 + 1700000000).to_bytes(8, "big") + bytes(6)
    if msg1 is not None:
        write(h, "msg1-valid", b"\x00" + msg1)
        write(h, "msg2-valid", b"\x01" + msg2)
        write(h, "msg1-flip-static", b"\x00" + msg1[:40] + bytes([msg1[40] ^ 1]) + msg1[41:])
        write(h, "msg2-flip-tag", b"\x01" + msg2[:-1] + bytes([msg2[-1] ^ 0x80]))
        write(h, "msg1-truncated", b"\x00" + msg1[:-1])
        write(h, "msg2-padded", b"\x01" + msg2 + b"\0")
        try:
            gcm1, gcm2, _ = noise_ik_messages(aesgcm=True)
            write(h, "aesgcm-msg1-valid", b"\x04" + gcm1)
            write(h, "aesgcm-msg2-valid", b"\x05" + gcm2)
        except ImportError:
            pass
    write(h, "msg1-short", b"\x00" + bytes(95))
    write(h, "msg1-zero-keys", b"\x00" + bytes(110))
    write(h, "msg2-short", b"\x01" + bytes(47))
    write(h, "msg2-zero-key", b"\x01" + bytes(50))
    write(h, "made-msg1", b"\x02\x00\x00\x00" + hello)
    write(h, "made-msg1-padded", b"\x02\x00\x00\x00" + hello + bytes(1010))
    write(h, "made-msg1-short-hello", b"\x02\x00\x00\x00" + hello[:13])
    write(h, "made-msg1-flip-e", b"\x02\x00\x05\x01" + hello)
    write(h, "made-msg1-flip-payload", b"\x02\x00\x70\x80" + hello)
    write(h, "made-msg2", b"\x03\x00\x00\x00\x00\x00")
    write(h, "made-msg2-flip", b"\x03\x00\x21\x04\x00\x00")
    write(h, "made-aesgcm-msg1", b"\x06\x00\x00\x00" + hello)
    write(h, "made-aesgcm-msg2-flip", b"\x07\x00\x31\x01\x00\x00")


if __name__ == "__main__":
    s5_greeting()
    s5_userpass()
    s5_request()
    s4_request()
    udp_header()
    conf()
    auth_users()
    acl()
    addr()
    frontend()
    upstream()
    http_request()
    access()
    http_frame()
    tunnel_authkeys()
    tunnel_record()
    tunnel_udp()
    tunnel_handshake()

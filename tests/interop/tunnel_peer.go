// Both ends of ferry's tunnel protocol (doc/tunnel-protocol.md) written from the document alone,
// on an independent Noise implementation (github.com/flynn/noise, Debian's
// golang-github-flynn-noise-dev): tests/integration/test_tunnel_interop.py runs it against
// ferryd.
//
// Client (the default): connects to -server, sends msg1 (the hello: TAI64N timestamp and flags)
// and reads msg2, then opens one stream with a SOCKS5 CONNECT to -target, sends -bytes of
// random data as DATA (under the stream's window, section 4.2), sends EOF, reads REPLY, the
// data echoed back and the server's EOF, returns window credit as it goes, and ends the
// connection with CLOSE. Exit status: 0 the echo came back byte-exact; 3 the server closed
// without a byte of handshake (it stays silent to an unauthorized key, section 2.4); 1 anything
// else.
//
// Server (-serve ADDR): prints "listening PORT", accepts one connection from the client key
// -client-key, answers msg2 under the suite msg1's prefix names, then answers every OPEN with a
// successful REPLY and echoes the stream's DATA and EOF itself, until CLOSE; prints what it saw.
//
// Build offline: GOPATH=/usr/share/gocode GO111MODULE=off go build tunnel_peer.go.
package main

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/flynn/noise"
	"golang.org/x/crypto/curve25519"
)

const (
	prologue      = "ferry-tunnel/1"
	headerLen     = 7
	tagLen        = 16
	payloadMax    = 16384
	streamWindow  = 262144
	windowReturn  = 65536
	recData       = 0x01
	recOpen       = 0x02
	recReply      = 0x03
	recEOF        = 0x04
	recReset      = 0x05
	recWindow     = 0x06
	recPing       = 0x07
	recPong       = 0x08
	recRekey      = 0x09
	recClose      = 0x0a
	suiteChaCha   = 0
	suiteAESGCM   = 1
	exitSilent    = 3
	streamID      = 1
	tai64Base     = uint64(1) << 62
	tai64UnixDiff = 10
)

var errSilent = errors.New("the server closed without answering the handshake")

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "tunnel_client: "+format+"\n", args...)
	os.Exit(1)
}

// decodeKey reads one key: 44 characters of standard base64 with padding, 32 bytes.
func decodeKey(text string) ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(text))
	if err != nil || len(k) != 32 {
		return nil, fmt.Errorf("not a key: %q", text)
	}
	return k, nil
}

// readPrivateKey reads a private key file: one key line, '#' comments and blank lines ignored.
func readPrivateKey(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		return decodeKey(line)
	}
	return nil, fmt.Errorf("%s: no key", path)
}

// tai64n is the hello's timestamp (section 2.2): 2^62 + 10 + Unix seconds, then nanoseconds.
func tai64n(t time.Time) []byte {
	out := make([]byte, 12)
	binary.BigEndian.PutUint64(out, tai64Base+tai64UnixDiff+uint64(t.Unix()))
	binary.BigEndian.PutUint32(out[8:], uint32(t.Nanosecond()))
	return out
}

// conn is the record layer of section 3 over one TCP connection.
type conn struct {
	tcp  net.Conn
	wmu  sync.Mutex // sealing and writing: the stream's sender and the reader's replies
	send *noise.CipherState
	recv *noise.CipherState
}

// seal writes one record: the sealed 7-byte header, then the sealed payload when not empty.
func (c *conn) seal(typ byte, stream uint32, payload []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	var hdr [headerLen]byte
	hdr[0] = typ
	binary.BigEndian.PutUint32(hdr[1:5], stream)
	binary.BigEndian.PutUint16(hdr[5:7], uint16(len(payload)))
	out, err := c.send.Encrypt(nil, nil, hdr[:])
	if err != nil {
		return err
	}
	if len(payload) > 0 {
		if out, err = c.send.Encrypt(out, nil, payload); err != nil {
			return err
		}
	}
	_, err = c.tcp.Write(out)
	if err == nil && typ == recRekey {
		c.send.Rekey()
	}
	return err
}

type record struct {
	typ     byte
	stream  uint32
	payload []byte
}

// open reads and authenticates the next record; REKEY moves the receiving key on.
func (c *conn) open() (record, error) {
	var r record
	sealed := make([]byte, headerLen+tagLen)
	if _, err := io.ReadFull(c.tcp, sealed); err != nil {
		return r, fmt.Errorf("reading a record header: %v", err)
	}
	hdr, err := c.recv.Decrypt(nil, nil, sealed)
	if err != nil {
		return r, fmt.Errorf("record header: %v", err)
	}
	r.typ = hdr[0]
	r.stream = binary.BigEndian.Uint32(hdr[1:5])
	n := int(binary.BigEndian.Uint16(hdr[5:7]))
	if n > payloadMax {
		return r, fmt.Errorf("record of %d bytes", n)
	}
	if n > 0 {
		body := make([]byte, n+tagLen)
		if _, err := io.ReadFull(c.tcp, body); err != nil {
			return r, fmt.Errorf("reading a record payload: %v", err)
		}
		if r.payload, err = c.recv.Decrypt(nil, nil, body); err != nil {
			return r, fmt.Errorf("record payload: %v", err)
		}
	}
	if r.typ == recRekey {
		c.recv.Rekey()
	}
	return r, nil
}

// handshake runs section 2 as the initiator; the suite code goes in msg1's length prefix (2.2).
func handshake(tcp net.Conn, suite int, priv, serverKey []byte) (*conn, error) {
	pub, err := curve25519.X25519(priv, curve25519.Basepoint)
	if err != nil {
		return nil, err
	}
	cipher := noise.CipherChaChaPoly
	if suite == suiteAESGCM {
		cipher = noise.CipherAESGCM
	}
	hs, err := noise.NewHandshakeState(noise.Config{
		CipherSuite:   noise.NewCipherSuite(noise.DH25519, cipher, noise.HashBLAKE2b),
		Pattern:       noise.HandshakeIK,
		Initiator:     true,
		Prologue:      []byte(prologue),
		StaticKeypair: noise.DHKey{Private: priv, Public: pub},
		PeerStatic:    serverKey,
	})
	if err != nil {
		return nil, err
	}
	hello := append(tai64n(time.Now()), 0, 0) // flags 0
	msg1, _, _, err := hs.WriteMessage(nil, hello)
	if err != nil {
		return nil, err
	}
	prefix := []byte{byte(suite<<4) | byte(len(msg1)>>8), byte(len(msg1))}
	if _, err := tcp.Write(append(prefix, msg1...)); err != nil {
		return nil, err
	}
	var lenbuf [2]byte
	if n, err := io.ReadFull(tcp, lenbuf[:]); err != nil {
		if n == 0 && (err == io.EOF || isReset(err)) {
			return nil, errSilent
		}
		return nil, fmt.Errorf("reading msg2's length: %v", err)
	}
	n := int(binary.BigEndian.Uint16(lenbuf[:]))
	if n < 48+2 || n > 48+1024 {
		return nil, fmt.Errorf("msg2 of %d bytes", n)
	}
	msg2 := make([]byte, n)
	if _, err := io.ReadFull(tcp, msg2); err != nil {
		return nil, fmt.Errorf("reading msg2: %v", err)
	}
	welcome, cs1, cs2, err := hs.ReadMessage(nil, msg2)
	if err != nil {
		return nil, fmt.Errorf("msg2 (wrong server key?): %v", err)
	}
	if len(welcome) < 2 || cs1 == nil || cs2 == nil {
		return nil, fmt.Errorf("malformed welcome (%d bytes)", len(welcome))
	}
	// The initiator sends with the first CipherState of Split, receives with the second.
	return &conn{tcp: tcp, send: cs1, recv: cs2}, nil
}

func isReset(err error) bool {
	return strings.Contains(err.Error(), "connection reset")
}

// socks5Connect is the OPEN payload: RFC 1928's request for an IPv4 or IPv6 address and port.
func socks5Connect(target string) ([]byte, error) {
	host, port, err := net.SplitHostPort(target)
	if err != nil {
		return nil, err
	}
	p, err := strconv.Atoi(port)
	if err != nil || p <= 0 || p > 65535 {
		return nil, fmt.Errorf("bad port %q", port)
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return nil, fmt.Errorf("not an address: %q", host)
	}
	req := []byte{5, 1, 0}
	if ip4 := ip.To4(); ip4 != nil {
		req = append(append(req, 1), ip4...)
	} else {
		req = append(append(req, 4), ip.To16()...)
	}
	return append(req, byte(p>>8), byte(p)), nil
}

// echo runs one stream: OPEN, DATA under the window and EOF from one goroutine, while this one
// reads REPLY, DATA, WINDOW and EOF; returns the bytes that came back.
func echo(c *conn, target string, data []byte) ([]byte, error) {
	req, err := socks5Connect(target)
	if err != nil {
		return nil, err
	}
	if err := c.seal(recOpen, streamID, req); err != nil {
		return nil, err
	}
	var mu sync.Mutex
	cond := sync.NewCond(&mu)
	window := streamWindow
	done := false
	sendErr := make(chan error, 1)
	go func() {
		for off := 0; off < len(data); {
			mu.Lock()
			for window == 0 && !done {
				cond.Wait()
			}
			if done {
				mu.Unlock()
				sendErr <- nil
				return
			}
			n := len(data) - off
			if n > payloadMax {
				n = payloadMax
			}
			if n > window {
				n = window
			}
			window -= n
			mu.Unlock()
			if err := c.seal(recData, streamID, data[off:off+n]); err != nil {
				sendErr <- err
				return
			}
			off += n
		}
		sendErr <- c.seal(recEOF, streamID, nil)
	}()
	stop := func() {
		mu.Lock()
		done = true
		cond.Broadcast()
		mu.Unlock()
	}
	defer stop()

	var got bytes.Buffer
	replied := false
	unreturned := 0
	for {
		r, err := c.open()
		if err != nil {
			return nil, err
		}
		switch r.typ {
		case recReply:
			if len(r.payload) < 2 || r.payload[0] != 5 {
				return nil, fmt.Errorf("REPLY is not a SOCKS5 reply")
			}
			if r.payload[1] != 0 {
				return nil, fmt.Errorf("CONNECT refused: REP %d", r.payload[1])
			}
			replied = true
		case recData:
			if !replied {
				return nil, fmt.Errorf("DATA before REPLY")
			}
			got.Write(r.payload)
			unreturned += len(r.payload)
			if unreturned >= windowReturn {
				var credit [4]byte
				binary.BigEndian.PutUint32(credit[:], uint32(unreturned))
				if err := c.seal(recWindow, streamID, credit[:]); err != nil {
					return nil, err
				}
				unreturned = 0
			}
		case recWindow:
			mu.Lock()
			window += int(binary.BigEndian.Uint32(r.payload))
			cond.Broadcast()
			mu.Unlock()
		case recPing:
			if err := c.seal(recPong, 0, r.payload); err != nil {
				return nil, err
			}
		case recEOF:
			if err := <-sendErr; err != nil {
				return nil, err
			}
			return got.Bytes(), nil
		case recReset:
			return nil, fmt.Errorf("stream reset by the server (reason %d)", r.payload[0])
		case recClose:
			return nil, fmt.Errorf("CLOSE before the stream ended")
		case recPong, recRekey:
		default:
			return nil, fmt.Errorf("unexpected record type %d", r.typ)
		}
	}
}

// --- the responder ------------------------------------------------------------------------

// respond runs section 2 as the responder: the suite from msg1's prefix, the client's key
// checked against want, the hello parsed; then msg2.
func respond(tcp net.Conn, priv, want []byte) (*conn, int, error) {
	pub, err := curve25519.X25519(priv, curve25519.Basepoint)
	if err != nil {
		return nil, 0, err
	}
	var prefix [2]byte
	if _, err := io.ReadFull(tcp, prefix[:]); err != nil {
		return nil, 0, fmt.Errorf("reading msg1's prefix: %v", err)
	}
	suite := int(prefix[0] >> 4)
	n := int(binary.BigEndian.Uint16(prefix[:]) & 0x0fff)
	cipher := noise.CipherChaChaPoly
	switch suite {
	case suiteChaCha:
	case suiteAESGCM:
		cipher = noise.CipherAESGCM
	default:
		return nil, suite, fmt.Errorf("unknown suite code %d", suite)
	}
	if n < 96+14 || n > 96+1024 {
		return nil, suite, fmt.Errorf("msg1 of %d bytes", n)
	}
	msg1 := make([]byte, n)
	if _, err := io.ReadFull(tcp, msg1); err != nil {
		return nil, suite, fmt.Errorf("reading msg1: %v", err)
	}
	hs, err := noise.NewHandshakeState(noise.Config{
		CipherSuite:   noise.NewCipherSuite(noise.DH25519, cipher, noise.HashBLAKE2b),
		Pattern:       noise.HandshakeIK,
		Initiator:     false,
		Prologue:      []byte(prologue),
		StaticKeypair: noise.DHKey{Private: priv, Public: pub},
	})
	if err != nil {
		return nil, suite, err
	}
	hello, _, _, err := hs.ReadMessage(nil, msg1)
	if err != nil {
		return nil, suite, fmt.Errorf("msg1: %v", err)
	}
	if !bytes.Equal(hs.PeerStatic(), want) {
		return nil, suite, fmt.Errorf("client key %s is not the one expected",
			base64.StdEncoding.EncodeToString(hs.PeerStatic()))
	}
	if len(hello) < 14 || len(hello) > 1024 {
		return nil, suite, fmt.Errorf("hello of %d bytes", len(hello))
	}
	sec := binary.BigEndian.Uint64(hello[:8]) - tai64Base - tai64UnixDiff
	if skew := time.Since(time.Unix(int64(sec), 0)); skew > time.Minute || skew < -time.Minute {
		return nil, suite, fmt.Errorf("hello timestamp %d s away from our clock", int64(skew.Seconds()))
	}
	msg2, cs1, cs2, err := hs.WriteMessage(nil, []byte{0, 0})
	if err != nil {
		return nil, suite, err
	}
	out := append([]byte{byte(len(msg2) >> 8), byte(len(msg2))}, msg2...)
	if _, err := tcp.Write(out); err != nil {
		return nil, suite, err
	}
	// The responder sends with the second CipherState of Split.
	return &conn{tcp: tcp, send: cs2, recv: cs1}, suite, nil
}

// echoStream is one stream of the responder: the bytes it owes the client, its window.
type echoStream struct {
	pending    []byte
	window     int
	unreturned int
	eof        bool // the client's EOF came: ours follows the pending bytes
	done       bool
}

// flush sends what the window allows, then EOF once everything went.
func (c *conn) flush(id uint32, s *echoStream) error {
	for len(s.pending) > 0 && s.window > 0 {
		n := len(s.pending)
		if n > payloadMax {
			n = payloadMax
		}
		if n > s.window {
			n = s.window
		}
		if err := c.seal(recData, id, s.pending[:n]); err != nil {
			return err
		}
		s.pending = s.pending[n:]
		s.window -= n
	}
	if s.eof && len(s.pending) == 0 && !s.done {
		s.done = true
		return c.seal(recEOF, id, nil)
	}
	return nil
}

func serve(addr string, priv, want []byte, timeout time.Duration) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	defer l.Close()
	fmt.Printf("listening %d\n", l.Addr().(*net.TCPAddr).Port)
	tcp, err := l.Accept()
	if err != nil {
		return err
	}
	defer tcp.Close()
	tcp.SetDeadline(time.Now().Add(timeout))
	c, suite, err := respond(tcp, priv, want)
	if err != nil {
		return fmt.Errorf("handshake: %v", err)
	}
	names := map[int]string{suiteChaCha: "chacha20-poly1305", suiteAESGCM: "aes-256-gcm"}
	fmt.Printf("handshake ok, cipher %s\n", names[suite])
	streams := map[uint32]*echoStream{}
	var last uint32
	total := 0
	for {
		r, err := c.open()
		if err != nil {
			return err
		}
		s := streams[r.stream]
		switch r.typ {
		case recOpen:
			if r.stream <= last {
				return fmt.Errorf("OPEN of stream %d after %d", r.stream, last)
			}
			last = r.stream
			if len(r.payload) < 4 || r.payload[0] != 5 || r.payload[1] != 1 {
				return fmt.Errorf("OPEN is not a SOCKS5 CONNECT: % x", r.payload)
			}
			fmt.Printf("stream %d: OPEN % x\n", r.stream, r.payload)
			streams[r.stream] = &echoStream{window: streamWindow}
			if err := c.seal(recReply, r.stream, []byte{5, 0, 0, 1, 0, 0, 0, 0, 0, 0}); err != nil {
				return err
			}
		case recData:
			if s == nil || s.eof {
				return fmt.Errorf("DATA on stream %d not open", r.stream)
			}
			total += len(r.payload)
			s.pending = append(s.pending, r.payload...)
			s.unreturned += len(r.payload)
			if s.unreturned >= windowReturn {
				var credit [4]byte
				binary.BigEndian.PutUint32(credit[:], uint32(s.unreturned))
				if err := c.seal(recWindow, r.stream, credit[:]); err != nil {
					return err
				}
				s.unreturned = 0
			}
			if err := c.flush(r.stream, s); err != nil {
				return err
			}
		case recWindow:
			if s != nil {
				s.window += int(binary.BigEndian.Uint32(r.payload))
				if err := c.flush(r.stream, s); err != nil {
					return err
				}
			}
		case recEOF:
			if s != nil {
				s.eof = true
				if err := c.flush(r.stream, s); err != nil {
					return err
				}
			}
		case recReset:
			delete(streams, r.stream)
		case recPing:
			if err := c.seal(recPong, 0, r.payload); err != nil {
				return err
			}
		case recClose:
			fmt.Printf("CLOSE after %d streams, %d bytes echoed\n", last, total)
			return nil
		case recPong, recRekey:
		default:
			return fmt.Errorf("unexpected record type %d", r.typ)
		}
	}
}

func main() {
	server := flag.String("server", "", "the tunnel listener, HOST:PORT")
	serverKey := flag.String("server-key", "", "its public key (base64)")
	keyPath := flag.String("key", "", "our private key file (ferry-keygen)")
	target := flag.String("target", "", "the echo origin, IP:PORT")
	size := flag.Int("bytes", 300000, "bytes to send through the stream")
	cipherName := flag.String("cipher", "chacha20-poly1305", "chacha20-poly1305 or aes-256-gcm")
	timeout := flag.Duration("timeout", 20*time.Second, "for the whole exchange")
	listen := flag.String("serve", "", "be the server (responder) on this address")
	clientKey := flag.String("client-key", "", "-serve: the one client public key accepted")
	flag.Parse()

	suite := suiteChaCha
	switch *cipherName {
	case "chacha20-poly1305":
	case "aes-256-gcm":
		suite = suiteAESGCM
	default:
		fail("unknown cipher %q", *cipherName)
	}
	if *listen != "" {
		priv, err := readPrivateKey(*keyPath)
		if err != nil {
			fail("-key: %v", err)
		}
		want, err := decodeKey(*clientKey)
		if err != nil {
			fail("-client-key: %v", err)
		}
		if err := serve(*listen, priv, want, *timeout); err != nil {
			fail("%v", err)
		}
		return
	}
	skey, err := decodeKey(*serverKey)
	if err != nil {
		fail("-server-key: %v", err)
	}
	priv, err := readPrivateKey(*keyPath)
	if err != nil {
		fail("-key: %v", err)
	}
	tcp, err := net.DialTimeout("tcp", *server, *timeout)
	if err != nil {
		fail("%v", err)
	}
	defer tcp.Close()
	tcp.SetDeadline(time.Now().Add(*timeout))
	c, err := handshake(tcp, suite, priv, skey)
	if err == errSilent {
		fmt.Fprintln(os.Stderr, "tunnel_client:", err)
		os.Exit(exitSilent)
	}
	if err != nil {
		fail("handshake: %v", err)
	}
	data := make([]byte, *size)
	if _, err := rand.Read(data); err != nil {
		fail("%v", err)
	}
	got, err := echo(c, *target, data)
	if err != nil {
		fail("%v", err)
	}
	if !bytes.Equal(got, data) {
		fail("the echo differs: %d bytes sent, %d came back", len(data), len(got))
	}
	if err := c.seal(recClose, 0, nil); err != nil {
		fail("CLOSE: %v", err)
	}
	fmt.Printf("ok %d bytes echoed, cipher %s\n", len(got), *cipherName)
}

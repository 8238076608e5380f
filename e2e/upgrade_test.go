package e2e

import (
	"bufio"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/testutil"
)

// wsConn is a WebSocket client connection to fakemodel's /ws, through the
// proxy.
type wsConn struct {
	net.Conn
	br *bufio.Reader
}

// dialWebSocket opens a WebSocket to the instance's /ws. It returns the
// connection on 101 (with its Sec-WebSocket-Accept checked), or the status
// the proxy answered instead.
func dialWebSocket(t *testing.T, in *instance) (*wsConn, int) {
	t.Helper()
	conn, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(in.port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	// Past the deadline a test fails rather than hangs: before upgrades left their slot the
	// 17th socket on 2 replicas waited the whole queue timeout.
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	var k [16]byte
	_, _ = rand.Read(k[:])
	key := base64.StdEncoding.EncodeToString(k[:])
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n", key)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("WebSocket handshake: %v", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		resp.Body.Close()
		conn.Close()
		return nil, resp.StatusCode
	}
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	if got := resp.Header.Get("Sec-WebSocket-Accept"); got != base64.StdEncoding.EncodeToString(sum[:]) {
		t.Fatalf("Sec-WebSocket-Accept %q does not answer the key", got)
	}
	return &wsConn{conn, br}, resp.StatusCode
}

// echo sends msg as a masked text frame and checks that it comes back.
func (c *wsConn) echo(t *testing.T, msg string) {
	t.Helper()
	if len(msg) > 125 {
		t.Fatal("echo sends short messages only")
	}
	mask := [4]byte{1, 2, 3, 4}
	frame := append([]byte{0x81, 0x80 | byte(len(msg))}, mask[:]...)
	for i := 0; i < len(msg); i++ {
		frame = append(frame, msg[i]^mask[i%4])
	}
	if _, err := c.Write(frame); err != nil {
		t.Fatalf("sending %q: %v", msg, err)
	}
	var h [2]byte
	if _, err := io.ReadFull(c.br, h[:]); err != nil {
		t.Fatalf("reading the echo of %q: %v", msg, err)
	}
	n := int(h[1] & 0x7F)
	if n == 126 {
		var ext [2]byte
		_, _ = io.ReadFull(c.br, ext[:])
		n = int(binary.BigEndian.Uint16(ext[:]))
	}
	got := make([]byte, n)
	if _, err := io.ReadFull(c.br, got); err != nil || h[0] != 0x81 || string(got) != msg {
		t.Fatalf("echo of %q: frame %#x %q, %v", msg, h[0], got, err)
	}
}

// upgradedInflight sums the replicas' upgraded connections and requests in
// flight.
func (in *instance) upgradedInflight() (upgraded, inflight int64) {
	for _, r := range in.status().Replicas {
		upgraded += r.Upgraded
		inflight += r.Inflight
	}
	return upgraded, inflight
}

// TestIdleWebSocketsHoldNoSlot is the WebSocket case: 40 idle
// WebSockets through 2 replicas at --max-inflight 8 (16 slots). Before,
// each held a slot for its life and the 17th waited 30 s for a 503; now
// all 40 connect, ordinary requests still flow, and status counts them as
// upgraded, not in flight, until they close.
func TestIdleWebSocketsHoldNoSlot(t *testing.T) {
	t.Parallel()
	in := start(t, 2, "--max-inflight", "8", "--", fakemodel)
	in.waitReady(2)
	conns := make([]*wsConn, 40)
	for i := range conns {
		c, code := dialWebSocket(t, in)
		if code != http.StatusSwitchingProtocols {
			t.Fatalf("WebSocket %d: %d, want 101", i+1, code)
		}
		c.echo(t, "hello "+strconv.Itoa(i))
		conns[i] = c
	}
	// Ordinary requests, more than the 16 slots at once, all answered.
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for i := 0; i < 32; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := get(in.url("/?sleep=100ms")); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("ordinary request with 40 WebSockets open: %v", err)
	}
	testutil.WaitFor(t, 10*time.Second, "40 upgraded, none in flight", func() bool {
		up, fl := in.upgradedInflight()
		return up == 40 && fl == 0
	})
	st := in.status()
	for _, r := range st.Replicas {
		if r.Upgraded < 10 {
			t.Errorf("%s has %d of the 40 WebSockets; least-conn should share them", r.Name, r.Upgraded)
		}
	}
	if out, _, _ := in.ctl("status"); !strings.Contains(out, "UPGRADED") {
		t.Errorf("status table has no UPGRADED column with 40 open:\n%s", out)
	}
	for i, c := range conns {
		c.echo(t, "still there "+strconv.Itoa(i))
		c.Close()
	}
	testutil.WaitFor(t, 10*time.Second, "every WebSocket counted closed", func() bool {
		up, _ := in.upgradedInflight()
		return up == 0
	})
	if out, _, _ := in.ctl("status"); strings.Contains(out, "UPGRADED") {
		t.Errorf("status table keeps the UPGRADED column with none open:\n%s", out)
	}
}

// TestMaxUpgraded: with --max-upgraded 3 a fourth WebSocket gets 503
// before reaching a replica, ordinary requests do not count, and a closed
// socket makes room.
func TestMaxUpgraded(t *testing.T) {
	t.Parallel()
	in := start(t, 2, "--max-upgraded", "3", "--", fakemodel)
	in.waitReady(2)
	var conns []*wsConn
	for i := 0; i < 3; i++ {
		c, code := dialWebSocket(t, in)
		if code != http.StatusSwitchingProtocols {
			t.Fatalf("WebSocket %d of 3: %d, want 101", i+1, code)
		}
		conns = append(conns, c)
	}
	if _, code := dialWebSocket(t, in); code != http.StatusServiceUnavailable {
		t.Fatalf("WebSocket 4 at --max-upgraded 3: %d, want 503", code)
	}
	if _, err := get(in.url("/")); err != nil {
		t.Fatalf("ordinary request at --max-upgraded: %v", err)
	}
	st := in.status()
	var requests uint64
	for _, r := range st.Replicas {
		requests += r.Requests
	}
	if requests != 4 || st.Rejected != 1 {
		t.Errorf("replicas saw %d requests, %d rejected; want 4 (3 handshakes, 1 GET) and 1", requests, st.Rejected)
	}
	conns[0].Close()
	testutil.WaitFor(t, 10*time.Second, "a WebSocket counted closed", func() bool {
		up, _ := in.upgradedInflight()
		return up == 2
	})
	// The proxy stops counting the socket as its handler ends, just
	// after the replica's count: poll.
	testutil.WaitFor(t, 10*time.Second, "room for a WebSocket", func() bool {
		c, code := dialWebSocket(t, in)
		if c != nil {
			c.echo(t, "room again")
		}
		return code == http.StatusSwitchingProtocols
	})
}

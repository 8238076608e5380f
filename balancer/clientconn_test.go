package balancer

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/mattingctl/mattingctl/internal/testutil"
)

// rapidReset opens an HTTP/2 connection to addr and sends up to n
// requests, each reset at once (HEADERS, then RST_STREAM), as fast as it
// can. It returns how many it sent before the connection broke, and
// whether it did.
func rapidReset(t *testing.T, addr string, n int) (sent int, closed bool) {
	return rapidResetFrom(t, "127.0.0.1", addr, n)
}

// rapidResetFrom is rapidReset from the loopback address ip.
func rapidResetFrom(t *testing.T, ip, addr string, n int) (sent int, closed bool) {
	t.Helper()
	conn, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}).Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(conn, conn)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	// Drain what the server sends, until it closes the connection.
	gone := make(chan struct{})
	go func() {
		defer close(gone)
		_, _ = io.Copy(io.Discard, conn)
	}()
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for i := range n {
		select {
		case <-gone:
			return i, true
		default:
		}
		id := uint32(2*i + 1)
		hb.Reset()
		for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "x"}, {":path", "/r"}} {
			_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
		}
		if fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true}) != nil ||
			fr.WriteRSTStream(id, http2.ErrCodeCancel) != nil {
			return i, true
		}
	}
	select {
	case <-gone:
		return n, true
	case <-time.After(2 * time.Second):
		return n, false
	}
}

// TestRapidResetClosesTheConnection: a client that opens and resets
// requests as fast as it can has its connection closed once it has
// cancelled prematureMin of them, most of what it sent; few reach the
// replica, and another client is served meanwhile.
func TestRapidResetClosesTheConnection(t *testing.T) {
	be := newTestBackend(t, 1, nil)
	bal := New(testOptions(func(o *Options) { o.MaxInflight = 4; o.Queue = 100 }))
	bal.Add(be.Backend)
	addr := serveBalancer(t, bal)
	const n = 5000
	sent, closed := rapidReset(t, addr, n)
	t.Logf("sent %d requests, each reset at once; %d reached the replica", sent, be.hits.Load())
	if !closed {
		t.Errorf("the connection was not closed after %d requests reset at once", sent)
	}
	if hits := be.hits.Load(); hits > prematureMin {
		t.Errorf("%d cancelled requests reached the replica, want at most %d", hits, prematureMin)
	}
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("another client: %d", resp.StatusCode)
	}
	testutil.WaitFor(t, settle, "the rapid reset in the summary", func() bool { return bal.outcomes.rapidResets.Load() == 1 })
}

// TestRapidResetAddressRemembered: an address whose connection was closed
// for rapid reset has its next connections closed after prematureAgain
// early cancels, fewer than prematureMin; another address keeps the
// ordinary threshold.
func TestRapidResetAddressRemembered(t *testing.T) {
	be := newTestBackend(t, 1, nil)
	bal := New(testOptions(func(o *Options) { o.MaxInflight = 4; o.Queue = 100 }))
	bal.Add(be.Backend)
	addr := serveBalancer(t, bal)
	if _, closed := rapidReset(t, addr, 5000); !closed {
		t.Fatal("the first connection was not closed")
	}
	const fewer = prematureMin / 2
	if _, closed := rapidResetFrom(t, "127.0.0.2", addr, fewer); closed {
		t.Errorf("another address's connection was closed after %d early cancels, fewer than %d", fewer, prematureMin)
	}
	if _, closed := rapidResetFrom(t, "127.0.0.1", addr, fewer); !closed {
		t.Errorf("the same address's next connection was not closed after %d early cancels", fewer)
	}
}

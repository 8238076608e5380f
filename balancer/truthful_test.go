package balancer

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/testutil"
)

// The proxy never writes a 2xx that no replica sent: these tests speak raw
// TCP, as `printf ... | nc` does, and shut down their writing half when
// they are done writing.

// rawExchange sends raw to srv's address, half-closes the connection unless
// keepOpen, and returns all the proxy wrote back before closing it.
func rawExchange(t *testing.T, srv *httptest.Server, raw string, keepOpen bool) string {
	t.Helper()
	conn := dialRaw(t, srv)
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	if !keepOpen {
		if err := conn.CloseWrite(); err != nil {
			t.Fatal(err)
		}
	}
	_ = conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	got, err := io.ReadAll(conn)
	if err != nil {
		t.Fatalf("reading the answer: %v (got %q)", err, got)
	}
	return string(got)
}

func dialRaw(t *testing.T, srv *httptest.Server) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

func statusOf(t *testing.T, answer string) int {
	t.Helper()
	resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(answer)), nil)
	if err != nil {
		t.Fatalf("answer %q is not an HTTP response: %v", answer, err)
	}
	return resp.StatusCode
}

func TestMalformedBodyIs400(t *testing.T) {
	be := newTestBackend(t, 1, echo)
	_, srv := newTestBalancer(t, testOptions(nil), be.Backend)
	for name, body := range map[string]string{
		"chunk length not hex":         "zz\r\nabc\r\n0\r\n\r\n",
		"chunk data not ended by CRLF": "3\r\nabcXY\r\n0\r\n\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			answer := rawExchange(t, srv, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"+body, false)
			if code := statusOf(t, answer); code != http.StatusBadRequest {
				t.Errorf("status %d, want 400; answer %q", code, answer)
			}
			if !strings.Contains(answer, "malformed request body") {
				t.Errorf("answer %q does not say what was wrong", answer)
			}
		})
	}
	if n := be.hits.Load(); n != 0 {
		t.Errorf("the backend saw %d malformed requests", n)
	}
}

// TestBrokenOffUploadGetsNoAnswer: a client that ends its connection before
// its body is whole gets the connection closed, with no status line.
func TestBrokenOffUploadGetsNoAnswer(t *testing.T) {
	be := newTestBackend(t, 1, echo)
	_, srv := newTestBalancer(t, testOptions(nil), be.Backend)
	for name, raw := range map[string]string{
		"shorter than Content-Length": "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly 14 bytes.",
		"chunked, no last chunk":      "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
		"chunked, cut in a chunk":     "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nhello",
	} {
		t.Run(name, func(t *testing.T) {
			if answer := rawExchange(t, srv, raw, false); answer != "" {
				t.Errorf("the proxy answered %q; want the connection closed with no answer", answer)
			}
		})
	}
	if n := be.hits.Load(); n != 0 {
		t.Errorf("the backend saw %d incomplete requests", n)
	}
}

// TestHalfClosedRequestIsCancelled: a client that sends a whole request
// and then shuts down its writing half has gone, as nginx takes it (and
// HAProxy with abortonclose): its request leaves the queue, or is
// cancelled at the backend, and it gets no answer, never one the replica
// did not send.
func TestHalfClosedRequestIsCancelled(t *testing.T) {
	g := newGate()
	defer g.open()
	var cancelled atomic.Int64
	be := newTestBackend(t, 1, func(w http.ResponseWriter, r *http.Request) {
		g.handler(w, r)
		if r.Context().Err() != nil {
			cancelled.Add(1)
		}
	})
	bal, srv := newTestBalancer(t, testOptions(func(o *Options) { o.MaxInflight = 1; o.Queue = 10 }), be.Backend)
	held := dialRaw(t, srv)
	if _, err := io.WriteString(held, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	g.waitArrivals(t, 1)
	queued := dialRaw(t, srv)
	if _, err := io.WriteString(queued, "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, settle, "1 queued", func() bool { return bal.Stats().Queued == 1 })
	// The queued client half-closes, then the one in flight (the other
	// way round, the slot it frees could go to the queued request before
	// its FIN is read).
	for _, c := range []struct {
		name string
		conn *net.TCPConn
		gone func() bool
	}{
		{"queued", queued, func() bool { return bal.Stats().Queued == 0 }},
		{"in flight", held, func() bool { return cancelled.Load() == 1 }},
	} {
		_ = c.conn.CloseWrite()
		_ = c.conn.SetReadDeadline(time.Now().Add(15 * time.Second))
		if got, err := io.ReadAll(c.conn); err != nil || len(got) != 0 {
			t.Errorf("%s: answer %q, %v; want the connection closed with none", c.name, got, err)
		}
		testutil.WaitFor(t, settle, "the "+c.name+" request to be cancelled", c.gone)
	}
	g.open()
	if n := be.hits.Load(); n != 1 {
		t.Errorf("the backend saw %d requests, want 1: the queued one left without reaching it", n)
	}
}

// TestClientLeavesQueue: a client that resets its connection while queued
// leaves the queue, and its request never reaches a backend.
func TestClientLeavesQueue(t *testing.T) {
	g := newGate()
	defer g.open()
	be := newTestBackend(t, 1, g.handler)
	bal, srv := newTestBalancer(t, testOptions(func(o *Options) { o.MaxInflight = 1; o.Queue = 10 }), be.Backend)
	go send(srv.Client(), srv.URL)
	g.waitArrivals(t, 1)

	c := dialRaw(t, srv)
	if _, err := io.WriteString(c, "GET /gone HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, settle, "1 queued", func() bool { return bal.Stats().Queued == 1 })
	_ = c.SetLinger(0) // close with RST
	c.Close()
	testutil.WaitFor(t, settle, "the queue to empty", func() bool { return bal.Stats().Queued == 0 })
	g.open()
	// The departed request never reaches the backend, and is no rejection.
	testutil.WaitFor(t, settle, "in flight 0", func() bool { return be.InFlight() == 0 })
	if n := be.hits.Load(); n != 1 {
		t.Errorf("backend saw %d requests, want 1 (the queued one left)", n)
	}
	if s := bal.Stats(); s.Rejected != 0 {
		t.Errorf("Rejected = %d for a client that left", s.Rejected)
	}
}

package balancer

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/mattingctl/mattingctl/internal/testutil"
)

// serveBalancer runs bal.Serve, with its connection limit and tracking, on
// a loopback port and returns the port's address.
func serveBalancer(t *testing.T, bal *Balancer) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- bal.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = bal.Shutdown(ctx)
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String()
}

// h2cResponse is one HTTP/2 response read off the wire.
type h2cResponse struct {
	status string
	header http.Header
	body   bytes.Buffer
}

// h2cConn is a client connection upgraded to HTTP/2 by hand, frame by
// frame, since no HTTP/2 client in Go takes a connection whose stream 1
// was sent as an HTTP/1.1 request.
type h2cConn struct {
	t    *testing.T
	conn net.Conn
	fr   *http2.Framer
	enc  *hpack.Encoder
	hbuf bytes.Buffer
	got  map[uint32]*h2cResponse
	away bool // a GOAWAY came
}

// upgradeH2C opens a connection to addr, sends GET path with
// "Upgrade: h2c" and, once answered 101, the HTTP/2 preface.
func upgradeH2C(t *testing.T, addr, path string) *h2cConn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	settings := base64.RawURLEncoding.EncodeToString([]byte{0, 3, 0, 0, 0, 100}) // MAX_CONCURRENT_STREAMS 100
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: %s\r\n\r\n", path, addr, settings)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Upgrade") != "h2c" {
		t.Fatalf("upgrade answered %s, Upgrade %q; want 101 Switching Protocols to h2c", resp.Status, resp.Header.Get("Upgrade"))
	}
	c := &h2cConn{t: t, conn: conn, got: map[uint32]*h2cResponse{}}
	c.fr = http2.NewFramer(conn, br)
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.enc = hpack.NewEncoder(&c.hbuf)
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := c.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	return c
}

// get sends GET path on stream id.
func (c *h2cConn) get(id uint32, path string) {
	c.t.Helper()
	c.hbuf.Reset()
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "proxy"}, {":path", path}} {
		_ = c.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.hbuf.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
		c.t.Fatal(err)
	}
}

// readUntil reads frames until stream id's response has ended, and
// returns it.
func (c *h2cConn) readUntil(id uint32) *h2cResponse {
	c.t.Helper()
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			c.t.Fatalf("reading stream %d's response: %v", id, err)
		}
		r := c.got[f.Header().StreamID]
		if r == nil && f.Header().StreamID != 0 {
			r = &h2cResponse{header: http.Header{}}
			c.got[f.Header().StreamID] = r
		}
		ended := false
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = c.fr.WriteSettingsAck()
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				_ = c.fr.WritePing(true, f.Data)
			}
		case *http2.GoAwayFrame:
			c.away = true
		case *http2.MetaHeadersFrame:
			for _, hf := range f.Fields {
				if hf.Name == ":status" {
					r.status = hf.Value
				} else {
					r.header.Add(hf.Name, hf.Value)
				}
			}
			ended = f.StreamEnded()
		case *http2.DataFrame:
			r.body.Write(f.Data())
			ended = f.StreamEnded()
		case *http2.RSTStreamFrame:
			c.t.Fatalf("stream %d reset: %v", f.StreamID, f.ErrCode)
		}
		if ended && f.Header().StreamID == id {
			return r
		}
	}
}

func TestH2CUpgradeAnswersOnStream1AndServesMoreStreams(t *testing.T) {
	be := newTestBackend(t, 1, echo)
	bal := New(testOptions(nil))
	bal.Add(be.Backend)
	addr := serveBalancer(t, bal)

	c := upgradeH2C(t, addr, "/first")
	first := c.readUntil(1)
	if first.status != "200" {
		t.Fatalf("stream 1 (the upgrade request) answered %q, want 200", first.status)
	}
	var seen echoed
	if err := json.Unmarshal(first.body.Bytes(), &seen); err != nil {
		t.Fatalf("stream 1's body %q: %v", first.body.String(), err)
	}
	if seen.Method != http.MethodGet || seen.RequestURI != "/first" {
		t.Errorf("the replica saw %s %s, want GET /first", seen.Method, seen.RequestURI)
	}
	for _, h := range []string{"Upgrade", "Http2-Settings"} {
		if v := seen.Header.Get(h); v != "" {
			t.Errorf("the replica saw %s: %q; the upgrade is the proxy's, not the replica's", h, v)
		}
	}
	c.get(3, "/second")
	if second := c.readUntil(3); second.status != "200" {
		t.Fatalf("stream 3 answered %q, want 200", second.status)
	}
	if got := be.hits.Load(); got != 2 {
		t.Errorf("the replica got %d requests, want 2", got)
	}
	// The upgraded connection is still a client connection: it holds its
	// MaxConns slot until it closes.
	if got := bal.Stats().Conns; got != 1 {
		t.Errorf("Stats().Conns = %d with one upgraded connection open, want 1", got)
	}
	c.conn.Close()
	testutil.WaitFor(t, 5*time.Second, "the upgraded connection to be counted closed", func() bool {
		return bal.Stats().Conns == 0
	})
	if s := bal.Stats(); s.Retried != 0 || s.Failed != 0 {
		t.Errorf("retried %d, failed %d; want 0 and 0", s.Retried, s.Failed)
	}
}

func TestH2CUpgradeHoldsItsConnectionSlot(t *testing.T) {
	be := newTestBackend(t, 1, nil)
	bal := New(testOptions(func(o *Options) { o.MaxConns = 1 }))
	bal.Add(be.Backend)
	addr := serveBalancer(t, bal)

	c := upgradeH2C(t, addr, "/")
	if r := c.readUntil(1); r.status != "200" {
		t.Fatalf("stream 1 answered %q, want 200", r.status)
	}
	// A second connection waits in the backlog while the upgraded one is
	// open, and is served once it closes.
	answered := make(chan error, 1)
	go func() {
		resp, err := http.Get("http://" + addr + "/")
		if err == nil {
			resp.Body.Close()
		}
		answered <- err
	}()
	select {
	case err := <-answered:
		t.Fatalf("a second connection was served past MaxConns 1 while the upgraded one was open (err %v)", err)
	case <-time.After(300 * time.Millisecond):
	}
	c.conn.Close()
	select {
	case err := <-answered:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the second connection was not served after the upgraded one closed")
	}
}

func TestH2CUpgradeWithBodyIsServedAsHTTP1(t *testing.T) {
	be := newTestBackend(t, 1, echo)
	bal := New(testOptions(nil))
	bal.Add(be.Backend)
	addr := serveBalancer(t, bal)

	for _, tc := range []struct {
		name, extra, body string
	}{
		{"content-length", "Content-Length: 5\r\n", "hello"},
		{"chunked", "Transfer-Encoding: chunked\r\n", "5\r\nhello\r\n0\r\n\r\n"},
		{"no settings", "Content-Length: 0\r\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
			settings := "HTTP2-Settings: AAMAAABk\r\n"
			if tc.name == "no settings" {
				settings = ""
			}
			fmt.Fprintf(conn, "POST /up HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings, keep-alive\r\nUpgrade: h2c\r\n%s%s\r\n%s", settings, tc.extra, tc.body)
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 1 {
				t.Fatalf("answered %s %s, want HTTP/1.1 200: the upgrade is declined", resp.Proto, resp.Status)
			}
			var seen echoed
			if err := json.NewDecoder(resp.Body).Decode(&seen); err != nil {
				t.Fatal(err)
			}
			want := map[string]bool{"content-length": true, "chunked": true}
			if got := string(seen.Body); want[tc.name] && got != "hello" {
				t.Errorf("the replica got body %q, want hello", got)
			}
			for _, h := range []string{"Upgrade", "Http2-Settings"} {
				if v := seen.Header.Get(h); v != "" {
					t.Errorf("the replica saw %s: %q, want it taken out", h, v)
				}
			}
		})
	}
	if got := bal.Stats(); got.Retried != 0 || got.Failed != 0 {
		t.Errorf("retried %d, failed %d; want 0 and 0", got.Retried, got.Failed)
	}
}

func TestH2CUpgradedConnectionDrainsOnShutdown(t *testing.T) {
	g := newGate()
	defer g.open()
	be := newTestBackend(t, 1, g.handler)
	bal := New(testOptions(nil))
	bal.Add(be.Backend)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- bal.Serve(ln) }()

	c := upgradeH2C(t, ln.Addr().String(), "/slow")
	g.waitArrivals(t, 1)
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- bal.Shutdown(ctx)
	}()
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned (%v) while the upgraded connection's request was in flight", err)
	case <-time.After(200 * time.Millisecond):
	}
	g.open()
	if r := c.readUntil(1); r.status != "200" || r.body.String() != "released" {
		t.Fatalf("the request in flight at Shutdown got %q %q, want 200 released", r.status, r.body.String())
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	// The client was told: a GOAWAY, then the connection closed.
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			break
		}
		if _, ok := f.(*http2.GoAwayFrame); ok {
			c.away = true
		}
	}
	if !c.away {
		t.Error("the upgraded connection closed without a GOAWAY")
	}
}

// TestH2ClientLeavingWithFINCancelsItsStreams: an HTTP/2 connection that
// ends, even with a FIN, takes its streams with it, as an HTTP/1 client's
// FIN takes its request (clientconn.go): the replica's request is
// cancelled, not served for nobody.
func TestH2ClientLeavingWithFINCancelsItsStreams(t *testing.T) {
	arrived, cancelled := make(chan struct{}), make(chan struct{})
	be := newTestBackend(t, 1, func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		select {
		case <-r.Context().Done():
			close(cancelled)
		case <-time.After(10 * time.Second):
		}
	})
	bal := New(testOptions(func(o *Options) { o.MaxInflight = 4; o.Queue = 4 }))
	bal.Add(be.Backend)
	addr := serveBalancer(t, bal)
	conn, err := net.Dial("tcp", addr)
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
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "x"}, {":path", "/slow"}} {
		_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, arrived, 5*time.Second, "the request to reach the replica")
	if err := conn.(*net.TCPConn).CloseWrite(); err != nil { // a FIN, not a reset
		t.Fatal(err)
	}
	waitClosed(t, cancelled, 5*time.Second, "the replica's request to be cancelled after the HTTP/2 client left")
}

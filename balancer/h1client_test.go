package balancer

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/testutil"
)

// scriptedBackend accepts connections on loopback and, for each request
// read on one, calls answer, which writes the raw response (and may close
// the connection by returning false). It counts the connections and
// keeps the requests' heads and bodies.
type scriptedBackend struct {
	ln     net.Listener
	answer func(c net.Conn, r *http.Request, body []byte) bool
	conns  atomic.Int32

	mu       sync.Mutex
	requests []*http.Request
	bodies   []string
	closed   chan struct{} // gets a value each time a connection ends
}

func newScriptedBackend(t *testing.T, answer func(c net.Conn, r *http.Request, body []byte) bool) *scriptedBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &scriptedBackend{ln: ln, answer: answer, closed: make(chan struct{}, 100)}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.conns.Add(1)
			wg.Go(func() { s.serve(c) })
		}
	})
	return s
}

func (s *scriptedBackend) serve(c net.Conn) {
	defer func() { s.closed <- struct{}{} }()
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		r, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		s.mu.Lock()
		s.requests, s.bodies = append(s.requests, r), append(s.bodies, string(body))
		s.mu.Unlock()
		if !s.answer(c, r, body) {
			return
		}
	}
}

func (s *scriptedBackend) addr() string { return s.ln.Addr().String() }

// rawAnswer answers every request with raw, keeping the connection open.
func rawAnswer(raw string) func(net.Conn, *http.Request, []byte) bool {
	return func(c net.Conn, _ *http.Request, _ []byte) bool {
		_, err := io.WriteString(c, raw)
		return err == nil
	}
}

func newTestH1Client(set func(*Options)) *h1Client {
	o := testOptions(set)
	o.resolve()
	return newH1Client(&o)
}

// roundTripAll sends method to addr through c and reads the whole response.
func roundTripAll(t *testing.T, c *h1Client, method, addr string, trace *httptrace.ClientTrace) (*http.Response, string, error) {
	t.Helper()
	ctx := context.Background()
	if trace != nil {
		ctx = httptrace.WithClientTrace(ctx, trace)
	}
	req, _ := http.NewRequestWithContext(ctx, method, "http://"+addr+"/x", nil)
	resp, err := c.RoundTrip(req)
	if err != nil {
		return nil, "", err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b), err
}

// TestH1ClientFraming: the response framings of RFC 9112 section 6, and
// when the connection is reused for the next request.
func TestH1ClientFraming(t *testing.T) {
	tests := []struct {
		name    string
		method  string
		raw     string
		code    int
		body    string
		trailer string // the X-T trailer's value
		reused  bool
	}{
		{"Content-Length", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", 200, "hello", "", true},
		{"chunked with a trailer", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n3\r\nhel\r\n2\r\nlo\r\n0\r\nX-T: v\r\n\r\n", 200, "hello", "v", true},
		// Transfer-Encoding overrides (RFC 9112 section 6.3), as
		// net/http parses it: the Content-Length is dropped, not
		// forwarded.
		{"chunked over a Content-Length", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 200, "hello", "", true},
		{"Connection: close", "GET", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello", 200, "hello", "", false},
		{"HTTP/1.0", "GET", "HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello", 200, "hello", "", false},
		{"HEAD with a Content-Length", "HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", 200, "", "", true},
		{"204", "GET", "HTTP/1.1 204 No Content\r\n\r\n", 204, "", "", true},
		{"304", "GET", "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n", 304, "", "", true},
		{"bytes past the body", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloEXTRA", 200, "hello", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			be := newScriptedBackend(t, rawAnswer(tt.raw))
			c := newTestH1Client(nil)
			defer c.CloseIdleConnections()
			for range 2 {
				resp, body, err := roundTripAll(t, c, tt.method, be.addr(), nil)
				if err != nil {
					t.Fatal(err)
				}
				if resp.StatusCode != tt.code || body != tt.body || resp.Trailer.Get("X-T") != tt.trailer {
					t.Fatalf("got %d %q, trailer %q; want %d %q, trailer %q", resp.StatusCode, body, resp.Trailer.Get("X-T"), tt.code, tt.body, tt.trailer)
				}
			}
			want := int32(2)
			if tt.reused {
				want = 1
			}
			if got := be.conns.Load(); got != want {
				t.Errorf("two requests took %d connections, want %d", got, want)
			}
		})
	}
}

// TestH1ClientCloseDelimited: a body that ends with its connection.
func TestH1ClientCloseDelimited(t *testing.T) {
	be := newScriptedBackend(t, func(c net.Conn, _ *http.Request, _ []byte) bool {
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\n\r\nhello")
		return false
	})
	c := newTestH1Client(nil)
	for range 2 {
		resp, body, err := roundTripAll(t, c, "GET", be.addr(), nil)
		if err != nil || resp.StatusCode != 200 || body != "hello" {
			t.Fatalf("got %v %q, %v", resp, body, err)
		}
	}
	if got := be.conns.Load(); got != 2 {
		t.Errorf("two requests took %d connections, want 2", got)
	}
}

// TestH1ClientInterimResponses: 1xx responses reach the trace, the final
// response follows; more than max1xx of them is an error.
func TestH1ClientInterimResponses(t *testing.T) {
	hints := "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"
	be := newScriptedBackend(t, rawAnswer(hints+"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
	var got []string
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		got = append(got, http.StatusText(code)+" "+h.Get("Link"))
		return nil
	}}
	c := newTestH1Client(nil)
	defer c.CloseIdleConnections()
	resp, body, err := roundTripAll(t, c, "GET", be.addr(), trace)
	if err != nil || resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("got %v %q, %v", resp, body, err)
	}
	if strings.Join(got, ",") != "Early Hints </a.css>,Continue " {
		t.Errorf("interim responses seen: %q", got)
	}

	flood := newScriptedBackend(t, rawAnswer(strings.Repeat(hints, max1xx+1)+"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
	if _, _, err := roundTripAll(t, c, "GET", flood.addr(), nil); err == nil || !strings.Contains(err.Error(), "interim") {
		t.Errorf("%d interim responses: error %v, want one naming them", max1xx+1, err)
	}
}

// TestH1ClientRequestHead: what the backend receives: the Host, a
// Content-Length, every header value, no User-Agent when the proxy
// blanked it, and a body of several chunks whole.
func TestH1ClientRequestHead(t *testing.T) {
	be := newScriptedBackend(t, rawAnswer("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
	c := newTestH1Client(nil)
	defer c.CloseIdleConnections()
	chunks := [][]byte{[]byte(strings.Repeat("a", 4096)), []byte(strings.Repeat("b", 65536)), []byte("c")}
	size := int64(4096 + 65536 + 1)
	req, _ := http.NewRequest("POST", "http://"+be.addr()+"/p?q=1", nil)
	req.Host = "model.example"
	req.Body, req.ContentLength = &chunkReader{chunks: chunks}, size
	req.Header["X-Forwarded-For"] = []string{"10.0.0.1", "10.0.0.2"}
	req.Header.Set("User-Agent", "")
	resp, err := c.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	req2, _ := http.NewRequest("POST", "http://"+be.addr()+"/empty", nil)
	resp, err = c.RoundTrip(req2)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	be.mu.Lock()
	defer be.mu.Unlock()
	r, body := be.requests[0], be.bodies[0]
	if r.Host != "model.example" || r.RequestURI != "/p?q=1" || r.ContentLength != size || body != string(chunks[0])+string(chunks[1])+"c" {
		t.Errorf("backend got Host %q, URI %q, Content-Length %d and %d bytes", r.Host, r.RequestURI, r.ContentLength, len(body))
	}
	if got := r.Header.Values("X-Forwarded-For"); len(got) != 2 || got[1] != "10.0.0.2" {
		t.Errorf("X-Forwarded-For: %q", got)
	}
	if _, ok := r.Header["User-Agent"]; ok {
		t.Errorf("a blank User-Agent was sent as %q", r.Header.Get("User-Agent"))
	}
	if r := be.requests[1]; r.Header.Get("Content-Length") != "0" {
		t.Errorf("a POST with no body: Content-Length %q, want 0", r.Header.Get("Content-Length"))
	}
}

// TestH1ClientSkipsAClosedIdleConnection: an idle connection its backend
// closed (its keep-alive timeout) is not written to: the next request
// goes out on a new one and succeeds, with one delivery.
func TestH1ClientSkipsAClosedIdleConnection(t *testing.T) {
	be := newScriptedBackend(t, func(c net.Conn, _ *http.Request, _ []byte) bool {
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		return false // closed after answering, without saying so
	})
	c := newTestH1Client(nil)
	defer c.CloseIdleConnections()
	if _, _, err := roundTripAll(t, c, "GET", be.addr(), nil); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, be.closed, 5*time.Second, "the backend's connection")
	if _, body, err := roundTripAll(t, c, "POST", be.addr(), nil); err != nil || body != "ok" {
		t.Fatalf("second request on a closed idle connection: %q, %v", body, err)
	}
	be.mu.Lock()
	defer be.mu.Unlock()
	if len(be.requests) != 2 || be.conns.Load() != 2 {
		t.Errorf("%d deliveries over %d connections, want 2 and 2", len(be.requests), be.conns.Load())
	}
}

// TestH1ClientEarlyCloseDropsTheConnection: a body closed before its end
// closes its connection: its rest would be read as the next response.
func TestH1ClientEarlyCloseDropsTheConnection(t *testing.T) {
	be := newScriptedBackend(t, rawAnswer("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789"))
	c := newTestH1Client(nil)
	defer c.CloseIdleConnections()
	for range 2 {
		req, _ := http.NewRequest("GET", "http://"+be.addr()+"/", nil)
		resp, err := c.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		var b [3]byte
		if _, err := io.ReadFull(resp.Body, b[:]); err != nil || string(b[:]) != "012" {
			t.Fatalf("read %q, %v", b, err)
		}
		resp.Body.Close()
	}
	if got := be.conns.Load(); got != 2 {
		t.Errorf("two half-read responses took %d connections, want 2", got)
	}
}

// TestH1ClientHeaderTimeout: a backend that sends no response head within
// the upstream timeout fails the request with a timeout, which the proxy
// classifies as slow.
func TestH1ClientHeaderTimeout(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	be := newScriptedBackend(t, func(net.Conn, *http.Request, []byte) bool {
		<-release
		return false
	})
	c := newTestH1Client(func(o *Options) { o.UpstreamTimeout = 200 * time.Millisecond })
	start := time.Now()
	_, _, err := roundTripAll(t, c, "GET", be.addr(), nil)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || classify(err) != slow {
		t.Fatalf("error %v, want a timeout", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("timed out after %s, want about 200ms", d)
	}
}

// TestH1ClientCancel: a request whose context ends stops waiting at once,
// and its connection is closed, which tells the backend.
func TestH1ClientCancel(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	be := newScriptedBackend(t, func(net.Conn, *http.Request, []byte) bool {
		<-release
		return false
	})
	c := newTestH1Client(nil)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+be.addr()+"/", nil)
	done := make(chan error, 1)
	go func() {
		_, err := c.RoundTrip(req)
		done <- err
	}()
	testutil.WaitFor(t, 5*time.Second, "the request to arrive", func() bool {
		be.mu.Lock()
		defer be.mu.Unlock()
		return len(be.requests) == 1
	})
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("error %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("RoundTrip still waiting 5s after its context ended")
	}
}

// TestH1ClientUpgrade: a 101 hands the connection over as the body, what
// followed the response head first, with half-close.
func TestH1ClientUpgrade(t *testing.T) {
	got := make(chan string, 1)
	be := newScriptedBackend(t, func(c net.Conn, _ *http.Request, _ []byte) bool {
		_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\nhi")
		b, _ := io.ReadAll(c) // until the client's half-close
		got <- string(b)
		_, _ = io.WriteString(c, " bye")
		return false
	})
	c := newTestH1Client(nil)
	req, _ := http.NewRequest("GET", "http://"+be.addr()+"/ws", nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "x")
	resp, err := c.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("got %v, %v", resp, err)
	}
	rwc, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		t.Fatalf("a 101's body is a %T, not an io.ReadWriteCloser", resp.Body)
	}
	defer rwc.Close()
	if _, err := io.WriteString(rwc, "ping"); err != nil {
		t.Fatal(err)
	}
	if err := rwc.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if s := <-got; s != "ping" {
		t.Errorf("backend read %q, want ping", s)
	}
	if b, _ := io.ReadAll(rwc); string(b) != "hi bye" {
		t.Errorf("client read %q, want %q", b, "hi bye")
	}
}

// TestH1ClientClosesIdleConnections: connections idle past the idle
// timeout are closed by the sweep; CloseIdleConnections closes the rest.
func TestH1ClientClosesIdleConnections(t *testing.T) {
	be := newScriptedBackend(t, rawAnswer("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
	c := newTestH1Client(nil)
	c.idleTimeout = 100 * time.Millisecond
	if _, _, err := roundTripAll(t, c, "GET", be.addr(), nil); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, be.closed, 5*time.Second, "the idle connection, by the sweep")

	c2 := newTestH1Client(nil)
	if _, _, err := roundTripAll(t, c2, "GET", be.addr(), nil); err != nil {
		t.Fatal(err)
	}
	c2.CloseIdleConnections()
	waitClosed(t, be.closed, 5*time.Second, "the idle connection, by CloseIdleConnections")
}

// TestH1ClientBoundsTheResponseHead: a backend whose response head goes on
// past maxResponseHead fails the request, and is not read further.
func TestH1ClientBoundsTheResponseHead(t *testing.T) {
	be := newScriptedBackend(t, func(c net.Conn, _ *http.Request, _ []byte) bool {
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nX-Big: ")
		_, _ = io.WriteString(c, strings.Repeat("a", 2*maxResponseHead)) // unread past the bound, until closed
		return false
	})
	c := newTestH1Client(nil)
	_, _, err := roundTripAll(t, c, "GET", be.addr(), nil)
	if err == nil || !strings.Contains(err.Error(), "response head is over") {
		t.Fatalf("error %v, want the response head's bound", err)
	}
}

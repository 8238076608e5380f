package balancer

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/mattingctl/mattingctl/internal/testutil"
)

// stallingBackend answers with its headers and the first part of its body,
// then sends nothing more until its client (the proxy) goes; gone is
// closed then. With chunked the response has no Content-Length; with
// streamed it is marked X-Accel-Buffering: no, and passes through.
func stallingBackend(t *testing.T, part int, chunked, streamed bool) (*testBackend, <-chan struct{}) {
	gone := make(chan struct{})
	be := newTestBackend(t, 1, func(w http.ResponseWriter, r *http.Request) {
		if !chunked {
			w.Header().Set("Content-Length", strconv.Itoa(2*part))
		}
		if streamed {
			w.Header().Set("X-Accel-Buffering", "no")
		}
		_, _ = w.Write(pattern(part))
		w.(http.Flusher).Flush()
		<-r.Context().Done()
		close(gone)
	})
	return be, gone
}

// brokenOff is what a client saw of a response broken off mid-way.
type brokenOff struct {
	status int
	bytes  int
	// how the body ended: "short" (the connection closed before the
	// Content-Length), "no last chunk" (it closed mid chunked body), "reset"
	// (RST_STREAM), or "ended" (a whole response: a fabricated end).
	end string
}

// getHTTP1 sends GET path on a connection of its own and reads the
// response as it comes, to its end.
func getHTTP1(t *testing.T, addr, path string) brokenOff {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path)
	raw, err := io.ReadAll(conn) // to the connection's end
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(raw)), nil)
	if err != nil {
		t.Fatalf("parsing the response: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	got := brokenOff{status: resp.StatusCode, bytes: len(body), end: "ended"}
	switch {
	case err == nil:
	case resp.ContentLength >= 0 && errors.Is(err, io.ErrUnexpectedEOF):
		got.end = "short"
	case resp.ContentLength < 0 && errors.Is(err, io.ErrUnexpectedEOF) && !bytes.HasSuffix(raw, []byte("0\r\n\r\n")):
		got.end = "no last chunk"
	default:
		t.Fatalf("the body ended with %v", err)
	}
	return got
}

// getHTTP2 sends GET path on an HTTP/2 connection of its own, which reads
// what comes, and waits for the stream to end.
func getHTTP2(t *testing.T, addr, path string) brokenOff {
	t.Helper()
	c, err := testutil.DialH2(addr, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	id, err := c.Get(path)
	if err != nil {
		t.Fatal(err)
	}
	var s testutil.H2Stream
	testutil.WaitFor(t, 20*time.Second, "the stream's end", func() bool {
		s = c.Stream(id)
		return s.Ended || s.Reset || c.Err() != nil
	})
	status, _ := strconv.Atoi(s.Status)
	got := brokenOff{status: status, bytes: s.Data, end: "ended"}
	switch {
	case s.Reset && s.ResetCode != http2.ErrCodeNo:
		got.end = "reset"
	case !s.Ended:
		t.Fatalf("the connection ended before the stream: %v (%v)", c.Err(), s)
	}
	return got
}

// TestUpstreamTimeoutMidBody: a replica that stalls after its headers and
// part of its body, in any framing, spooled or passed through: the
// response is broken off after the upstream timeout, as the client's
// framing shows it, never with a fabricated end; the replica's connection
// is closed and its slot freed; the request is counted and recorded 504.
func TestUpstreamTimeoutMidBody(t *testing.T) {
	const part = 100 << 10
	const timeout = 300 * time.Millisecond
	for _, tt := range []struct {
		name              string
		chunked, streamed bool
		h2                bool
		want              string
	}{
		{"HTTP/1.1 Content-Length, spooled", false, false, false, "short"},
		{"HTTP/1.1 chunked, spooled", true, false, false, "no last chunk"},
		{"HTTP/1.1 chunked, passed through", true, true, false, "no last chunk"},
		{"HTTP/2 Content-Length, spooled", false, false, true, "reset"},
		{"HTTP/2 chunked, passed through", true, true, true, "reset"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			be, gone := stallingBackend(t, part, tt.chunked, tt.streamed)
			rec, log := &recorder{}, &records{}
			bal := New(testOptions(func(o *Options) {
				o.UpstreamTimeout, o.Observer, o.AccessLog, o.BufferDir = timeout, rec, log, t.TempDir()
			}))
			bal.Add(be.Backend)
			addr := serveBalancer(t, bal)
			start := time.Now()
			var got brokenOff
			if tt.h2 {
				got = getHTTP2(t, addr, "/stall")
			} else {
				got = getHTTP1(t, addr, "/stall")
			}
			took := time.Since(start)
			if got != (brokenOff{200, part, tt.want}) {
				t.Errorf("client saw %+v, want 200, the %d bytes sent, and %q", got, part, tt.want)
			}
			if took < timeout || took > timeout+2*time.Second {
				t.Errorf("the response ended after %s, want the upstream timeout, %s", took, timeout)
			}
			waitClosed(t, gone, 5*time.Second, "the replica's connection")
			testutil.WaitFor(t, settle, "the slot freed and the request recorded", func() bool {
				return be.InFlight() == 0 && len(rec.list()) == 1
			})
			if r := rec.list()[0]; r.code != http.StatusGatewayTimeout {
				t.Errorf("recorded %d, want 504", r.code)
			}
			if l := log.wait(t, 1)[0]; l.Status != http.StatusGatewayTimeout || l.BytesOut != part {
				t.Errorf("access log: status %d, %d bytes out; want 504 and the %d bytes sent", l.Status, l.BytesOut, part)
			}
			if st := bal.Stats(); st.UpstreamTimeouts != 1 || st.SendTimeouts != 0 || st.MemoryBuffered != 0 || st.DiskBuffered != 0 {
				t.Errorf("stats %+v, want 1 upstream timeout and the buffers empty", st)
			}
		})
	}
}

// TestUpstreamTimeoutIsBetweenReads: a replica that sends a little within
// every upstream timeout is never cut, however long it takes in all.
func TestUpstreamTimeoutIsBetweenReads(t *testing.T) {
	const timeout = 300 * time.Millisecond
	be := newTestBackend(t, 1, func(w http.ResponseWriter, r *http.Request) {
		for i := range 8 {
			fmt.Fprintf(w, "part %d\n", i)
			w.(http.Flusher).Flush()
			time.Sleep(timeout / 2)
		}
	})
	bal := New(testOptions(func(o *Options) { o.UpstreamTimeout = timeout }))
	bal.Add(be.Backend)
	addr := serveBalancer(t, bal)
	if got := getHTTP1(t, addr, "/trickle"); got.end != "ended" || got.status != 200 {
		t.Errorf("a replica that keeps sending was cut: %+v", got)
	}
	if st := bal.Stats(); st.UpstreamTimeouts != 0 {
		t.Errorf("%d upstream timeouts", st.UpstreamTimeouts)
	}
}

// TestSendTimeout: a client that takes nothing of a response, in either
// protocol, whether the response is passed through or spooled, has it
// broken off after the send timeout: its HTTP/1 connection is closed, its
// HTTP/2 stream reset. The replica's slot is free by then (at once when
// spooled), and the request is counted and recorded 408.
func TestSendTimeout(t *testing.T) {
	const size = 20 << 20
	const timeout = 400 * time.Millisecond
	for _, tt := range []struct {
		name     string
		streamed bool
		h2       bool
	}{
		{"HTTP/1.1, spooled", false, false},
		{"HTTP/1.1, passed through", true, false},
		{"HTTP/2 zero window, spooled", false, true},
		{"HTTP/2 zero window, passed through", true, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			body := pattern(size)
			be := newTestBackend(t, 1, func(w http.ResponseWriter, r *http.Request) {
				if tt.streamed {
					w.Header().Set("X-Accel-Buffering", "no")
				}
				w.Header().Set("Content-Length", strconv.Itoa(size))
				_, _ = w.Write(body)
			})
			rec := &recorder{}
			bal := New(testOptions(func(o *Options) {
				o.SendTimeout, o.Observer, o.BufferDir, o.MaxInflight = timeout, rec, t.TempDir(), 1
			}))
			bal.Add(be.Backend)
			addr := serveBalancer(t, bal)
			start := time.Now()
			var took time.Duration
			if tt.h2 {
				c, err := testutil.DialH2(addr, 0)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				id, err := c.Get("/big")
				if err != nil {
					t.Fatal(err)
				}
				testutil.WaitFor(t, 10*time.Second, "the stream reset", func() bool { return c.Stream(id).Reset })
				took = time.Since(start)
				if s := c.Stream(id); s.Status != "200" || s.Data != 0 || s.ResetCode == http2.ErrCodeNo {
					t.Errorf("stream: %v; want 200, no data, reset with an error", s)
				}
			} else {
				conn, br, resp := stalledGet(t, addr, "/big")
				if resp.StatusCode != 200 {
					t.Fatalf("status %d", resp.StatusCode)
				}
				// Reading would open the window: the request's record
				// says when the proxy gave up.
				testutil.WaitFor(t, 10*time.Second, "the request recorded", func() bool { return len(rec.list()) == 1 })
				took = time.Since(start)
				_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
				n, err := io.Copy(io.Discard, io.MultiReader(br, conn))
				if err != nil && !errors.Is(err, syscall.ECONNRESET) || n >= size {
					t.Errorf("after the timeout the client read %d of %d bytes, then %v; want the connection closed short", n, size, err)
				}
			}
			if took < timeout || took > timeout+2*time.Second {
				t.Errorf("the response was broken off after %s, want the send timeout, %s", took, timeout)
			}
			testutil.WaitFor(t, settle, "the slot freed and the request recorded", func() bool {
				return be.InFlight() == 0 && len(rec.list()) == 1
			})
			if r := rec.list()[0]; r.code != http.StatusRequestTimeout {
				t.Errorf("recorded %d, want 408", r.code)
			}
			testutil.WaitFor(t, settle, "the buffers empty", func() bool {
				st := bal.Stats()
				return st.SendTimeouts == 1 && st.MemoryBuffered == 0 && st.DiskBuffered == 0
			})
		})
	}
}

// TestSendTimeoutSparesSlowReaders: a client that reads slowly but keeps
// reading gets the whole response, with a send timeout far shorter than
// the download.
func TestSendTimeoutSparesSlowReaders(t *testing.T) {
	const size = 2 << 20
	be := newTestBackend(t, 1, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Accel-Buffering", "no") // passed through: every write waits for the client
		w.Header().Set("Content-Length", strconv.Itoa(size))
		_, _ = w.Write(pattern(size))
	})
	bal := New(testOptions(func(o *Options) { o.SendTimeout = 300 * time.Millisecond }))
	bal.Add(be.Backend)
	addr := serveBalancer(t, bal)
	_, br, _ := stalledGet(t, addr, "/big")
	start := time.Now()
	got := make([]byte, 0, size)
	buf := make([]byte, 64<<10)
	for len(got) < size {
		time.Sleep(50 * time.Millisecond) // about 1.3 MB/s
		n, err := br.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			t.Fatalf("after %d bytes in %s: %v", len(got), time.Since(start), err)
		}
	}
	if !bytes.Equal(got, pattern(size)) {
		t.Fatal("the response arrived changed")
	}
	if took := time.Since(start); took < time.Second {
		t.Errorf("the download took %s: not a slow reader", took)
	}
	if st := bal.Stats(); st.SendTimeouts != 0 {
		t.Errorf("%d send timeouts", st.SendTimeouts)
	}
}

// TestQuietStreamIsNotCut: an event stream that says nothing for longer
// than the send timeout, to a client that reads, is not cut in either
// protocol: the send timeout bounds a write that waits, not the time
// between writes (an HTTP/2 write deadline would be a timer on the
// stream, so none is left set).
func TestQuietStreamIsNotCut(t *testing.T) {
	const sendTimeout = 200 * time.Millisecond
	be := newTestBackend(t, 1, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range 2 {
			fmt.Fprintf(w, "data: event %d\n\n", i)
			w.(http.Flusher).Flush()
			time.Sleep(3 * sendTimeout)
		}
	})
	bal := New(testOptions(func(o *Options) { o.SendTimeout = sendTimeout }))
	bal.Add(be.Backend)
	addr := serveBalancer(t, bal)
	if got := getHTTP1(t, addr, "/events"); got.end != "ended" || got.bytes != 2*len("data: event 0\n\n") {
		t.Errorf("HTTP/1.1: %+v, want both events and the stream's end", got)
	}
	if got := getHTTP2(t, addr, "/events"); got.end != "ended" || got.bytes != 2*len("data: event 0\n\n") {
		t.Errorf("HTTP/2: %+v, want both events and the stream's end", got)
	}
	if st := bal.Stats(); st.SendTimeouts != 0 {
		t.Errorf("%d send timeouts", st.SendTimeouts)
	}
}

// TestSendTimeoutClosesAnHTTP2ConnectionThatReadsNothing: an HTTP/2 client
// that takes nothing of its connection at all, not even the frames that
// would reset its streams, has the whole connection closed after the send
// timeout, and the replica's slots come back.
func TestSendTimeoutClosesAnHTTP2ConnectionThatReadsNothing(t *testing.T) {
	const size, streams = 20 << 20, 4
	body := pattern(size)
	be := newTestBackend(t, 1, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Accel-Buffering", "no") // passed through: held by the client
		w.Header().Set("Content-Length", strconv.Itoa(size))
		_, _ = w.Write(body)
	})
	// A second, and a small receive buffer: the connection's buffers
	// fill within milliseconds, and its write blocks long before any
	// stream's does for the timeout. Were every stream reset first (with
	// 300 ms, a busy machine under the race detector could hold a
	// handler's write that long while the connection still moved), the
	// resets would be written, nothing would be left to write, and the
	// connection would only be closed as idle, minutes later.
	const timeout = time.Second
	bal := New(testOptions(func(o *Options) { o.SendTimeout = timeout }))
	bal.Add(be.Backend)
	addr := serveBalancer(t, bal)
	conn := dialSmallReceiveBuffer(t, addr)
	// Windows wide open, then nothing read: the connection's own buffers
	// fill.
	_, _ = io.WriteString(conn, http2.ClientPreface)
	fr := http2.NewFramer(conn, conn)
	_ = fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 30})
	_ = fr.WriteWindowUpdate(0, 1<<30)
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for i := range streams {
		hb.Reset()
		for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "x"}, {":path", "/big"}} {
			_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
		}
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: uint32(1 + 2*i), BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true})
	}
	testutil.WaitFor(t, settle, "the replica holding every stream", func() bool { return be.Requests() == 0 && be.InFlight() == streams })
	start := time.Now()
	testutil.WaitFor(t, settle, "the slots freed and the connection closed", func() bool {
		st := bal.Stats()
		return be.InFlight() == 0 && st.Conns == 0
	})
	// A blocked write that moved some bytes before its deadline gets
	// another timeout (net/http's byte timeout): seen, three timeouts in
	// all. Room for a busy machine besides, against the minutes an idle
	// connection would be kept.
	if took := time.Since(start); took > 3*timeout+3*time.Second {
		t.Errorf("freed %s after the replica held every stream, want a few send timeouts, %s each", took, timeout)
	}
	if st := bal.Stats(); st.SendTimeouts != streams {
		t.Errorf("%d send timeouts, want %d", st.SendTimeouts, streams)
	}
}

// TestKeptAliveConnectionAfterAChunkedResponse: the write deadline that
// bounds a chunked response's last chunk is not the next response's (the
// server clears it): a second request on the same connection, answered
// later than the send timeout, is answered whole.
func TestKeptAliveConnectionAfterAChunkedResponse(t *testing.T) {
	const sendTimeout = 200 * time.Millisecond
	be := newTestBackend(t, 1, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			time.Sleep(3 * sendTimeout)
		}
		fmt.Fprint(w, "part one, ")
		w.(http.Flusher).Flush() // chunked
		fmt.Fprint(w, "part two")
	})
	bal := New(testOptions(func(o *Options) { o.SendTimeout = sendTimeout }))
	bal.Add(be.Backend)
	addr := serveBalancer(t, bal)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	for _, path := range []string{"/fast", "/slow", "/fast"} {
		fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s on the kept-alive connection: %v", path, err)
		}
		got, err := io.ReadAll(resp.Body)
		if err != nil || string(got) != "part one, part two" || resp.ContentLength != -1 {
			t.Fatalf("%s: %q, %v (Content-Length %d); want the chunked body whole", path, got, err, resp.ContentLength)
		}
	}
}

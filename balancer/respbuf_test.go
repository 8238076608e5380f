package balancer

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/testutil"
)

// pattern returns n bytes that tell one offset from another.
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}

// sizedBackend answers every request with n pattern bytes, with a
// Content-Length, of the content type ct (none when empty).
func sizedBackend(t *testing.T, n int, ct string) *testBackend {
	body := pattern(n)
	return newTestBackend(t, 1, func(w http.ResponseWriter, r *http.Request) {
		if ct != "" {
			w.Header().Set("Content-Type", ct)
		}
		w.Header().Set("Content-Length", strconv.Itoa(n))
		_, _ = w.Write(body)
	})
}

// stalledGet sends GET path on a raw connection with a small receive
// buffer and reads only the response headers, so that the rest waits on
// the proxy's side.
func stalledGet(t *testing.T, addr, path string) (net.Conn, *bufio.Reader, *http.Response) {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 16<<10)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path)
	br := bufio.NewReaderSize(conn, 4<<10)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	return conn, br, resp
}

// TestReadAheadFreesBackend: a response up to ResponseBuffer is read from
// the backend whole while the client has read none of it, and the
// backend's slot is free; the client then gets it intact, and the memory
// goes back to the budget.
func TestReadAheadFreesBackend(t *testing.T) {
	const n = 4 << 20
	be := sizedBackend(t, n, "image/png")
	bal, srv := newTestBalancer(t, testOptions(func(o *Options) { o.MaxInflight = 1 }), be.Backend)
	_, br, resp := stalledGet(t, srv.Listener.Addr().String(), "/big")
	if resp.ContentLength != n {
		t.Fatalf("Content-Length %d, want %d", resp.ContentLength, n)
	}
	testutil.WaitFor(t, settle, "the backend released while the client reads nothing", func() bool {
		return be.InFlight() == 0 && be.Requests() == 1
	})
	// What the kernel's socket buffers took is no longer held.
	if got := bal.Stats().MemoryBuffered; got == 0 || got > n+chunkSize {
		t.Errorf("MemoryBuffered %d while the client reads nothing; want what is not yet sent of %d", got, n)
	}
	// The slot is free: another request is served while the first client
	// still reads nothing.
	if code, _, body := get(t, srv.Client(), srv.URL+"/again"); code != 200 || len(body) != n {
		t.Fatalf("second request: %d, %d bytes", code, len(body))
	}
	got, err := io.ReadAll(io.LimitReader(br, n))
	if err != nil || !bytes.Equal(got, pattern(n)) {
		t.Fatalf("the read-ahead response arrived changed: %d bytes, %v", len(got), err)
	}
	testutil.WaitFor(t, settle, "the response's memory given back", func() bool { return bal.Stats().MemoryBuffered == 0 })
}

// TestReadAheadStreamsLive: reading ahead delays nothing: what the backend
// has sent reaches the client while the backend still holds the rest, and
// the backend is in flight until then.
func TestReadAheadStreamsLive(t *testing.T) {
	const n, first = 256 << 10, 100 << 10
	release := make(chan struct{})
	defer close(release)
	be := newTestBackend(t, 1, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(n))
		_, _ = w.Write(pattern(n)[:first])
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		_, _ = w.Write(pattern(n)[first:])
	})
	bal, srv := newTestBalancer(t, testOptions(nil), be.Backend)
	resp, err := srv.Client().Get(srv.URL + "/slow")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got := make([]byte, first)
	if _, err := io.ReadFull(resp.Body, got); err != nil || !bytes.Equal(got, pattern(n)[:first]) {
		t.Fatalf("first part: %v", err)
	}
	if be.InFlight() != 1 || bal.Stats().MemoryBuffered == 0 {
		t.Fatalf("in flight %d, buffered %d while the backend holds the rest; want 1 and a read-ahead", be.InFlight(), bal.Stats().MemoryBuffered)
	}
	release <- struct{}{}
	rest, err := io.ReadAll(resp.Body)
	if err != nil || !bytes.Equal(rest, pattern(n)[first:]) {
		t.Fatalf("rest: %d bytes, %v", len(rest), err)
	}
	testutil.WaitFor(t, settle, "the backend released", func() bool { return be.InFlight() == 0 })
}

// TestReadAheadChoice: which responses are read ahead, at the bounds of
// ResponseBuffer and of the memory budget; the others pass through as
// they arrive, costing no buffer.
func TestReadAheadChoice(t *testing.T) {
	const budget = 8 * chunkSize // 7/8 of it, 7 chunks, may hold responses
	tests := []struct {
		name   string
		opts   Options
		size   int
		ct     string
		method string
		want   bool
	}{
		{"default", testOptions(nil), 1 << 20, "", "GET", true},
		{"at ResponseBuffer", testOptions(func(o *Options) { o.ResponseBuffer = 1 << 20 }), 1 << 20, "", "GET", true},
		{"one byte over ResponseBuffer", testOptions(func(o *Options) { o.ResponseBuffer = 1 << 20 }), 1<<20 + 1, "", "GET", false},
		{"off", testOptions(func(o *Options) { o.ResponseBuffer = 0 }), 1 << 20, "", "GET", false},
		{"at minReadAhead", testOptions(nil), minReadAhead, "", "GET", false},
		{"one over minReadAhead", testOptions(nil), minReadAhead + 1, "", "GET", true},
		{"event stream", testOptions(nil), 1 << 20, "text/event-stream; charset=utf-8", "GET", false},
		{"HEAD", testOptions(nil), 1 << 20, "", "HEAD", false},
		{"fills the budget", testOptions(func(o *Options) { o.MaxBuffer = budget }), 7 * chunkSize, "", "GET", true},
		{"one byte past the budget", testOptions(func(o *Options) { o.MaxBuffer = budget }), 7*chunkSize + 1, "", "GET", false},
		{"no memory budget", testOptions(func(o *Options) { o.MaxBuffer = 0 }), 1 << 20, "", "GET", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := New(tt.opts)
			be := NewBackend(1, "replica-1", "127.0.0.1:1")
			b.Add(be)
			req, _ := http.NewRequest(tt.method, "http://x/", nil)
			a, err := b.acquire(req.Context(), req, time.Time{}, false, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp := &http.Response{
				StatusCode:    200,
				Header:        http.Header{},
				ContentLength: int64(tt.size),
				Body:          io.NopCloser(bytes.NewReader(make([]byte, tt.size))),
				Request:       req,
			}
			if tt.ct != "" {
				resp.Header.Set("Content-Type", tt.ct)
			}
			if got := b.readAhead(resp, a); got != tt.want {
				t.Fatalf("readAhead = %v, want %v", got, tt.want)
			}
			if tt.want {
				if n, err := io.Copy(io.Discard, resp.Body); n != int64(tt.size) || err != nil {
					t.Fatalf("read-ahead body: %d bytes, %v", n, err)
				}
				resp.Body.Close()
				testutil.WaitFor(t, settle, "release", func() bool { return be.InFlight() == 0 && b.Stats().MemoryBuffered == 0 })
			} else if b.Stats().MemoryBuffered != 0 {
				t.Errorf("MemoryBuffered %d for a response passed through", b.Stats().MemoryBuffered)
			}
		})
	}
}

// TestReadAheadBackendCutShort: a backend that sends less than its
// Content-Length is passed on as sent, and the client's connection is
// closed, as without reading ahead; the buffer goes back.
func TestReadAheadBackendCutShort(t *testing.T) {
	const n = 1 << 20
	be := newTestBackend(t, 1, func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		fmt.Fprintf(brw, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", n)
		_, _ = brw.Write(pattern(n / 2))
		_ = brw.Flush()
	})
	bal, srv := newTestBalancer(t, testOptions(nil), be.Backend)
	resp, err := srv.Client().Get(srv.URL + "/short")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil || len(got) != n/2 {
		t.Fatalf("client got %d bytes, %v; want %d and an error", len(got), err, n/2)
	}
	testutil.WaitFor(t, settle, "the backend and the buffer released", func() bool {
		return be.InFlight() == 0 && bal.Stats().MemoryBuffered == 0
	})
}

// TestReadAheadClientLeaves: a client that goes away before reading the
// response costs nothing once the request ends.
func TestReadAheadClientLeaves(t *testing.T) {
	const n = 4 << 20
	be := sizedBackend(t, n, "")
	bal, srv := newTestBalancer(t, testOptions(nil), be.Backend)
	conn, _, _ := stalledGet(t, srv.Listener.Addr().String(), "/big")
	conn.Close()
	deadline := time.Now().Add(settle)
	for be.InFlight() != 0 || bal.Stats().MemoryBuffered != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("in flight %d, buffered %d after the client left", be.InFlight(), bal.Stats().MemoryBuffered)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// BenchmarkReadAhead proxies a response the size of the original load
// test's answer (~220 KB, with a Content-Length) to fast clients, read
// ahead and passed through: the read-ahead's own cost, with nothing to
// gain from it.
func BenchmarkReadAhead(b *testing.B) {
	body := pattern(220 << 10)
	for _, bc := range []struct {
		name string
		buf  int64
	}{{"read ahead", DefaultLimits().ResponseBuffer}, {"passed through", 0}} {
		b.Run(bc.name, func(b *testing.B) {
			srv := newBenchServer(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Length", strconv.Itoa(len(body)))
				_, _ = w.Write(body)
			}))
			bal := New(testOptions(func(o *Options) { o.MaxInflight = 8; o.Queue = 1024; o.ResponseBuffer = bc.buf }))
			bal.Add(NewBackend(1, "replica-1", srv[len("http://"):]))
			proxy := newBenchServer(b, bal)
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := client.Get(proxy)
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			})
		})
	}
}

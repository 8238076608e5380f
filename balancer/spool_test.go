package balancer

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
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
	conn := dialSmallReceiveBuffer(t, addr)
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path)
	br := bufio.NewReaderSize(conn, 4<<10)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	return conn, br, resp
}

// TestReadAheadFreesBackend: a response within ResponseBuffer is read from
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
	// What the kernel's socket buffers took is no longer held; the rest
	// is, in memory up to ResponseBuffer.
	if st := bal.Stats(); st.MemoryBuffered+st.DiskBuffered == 0 || st.MemoryBuffered > DefaultLimits().ResponseBuffer {
		t.Errorf("%d bytes in memory, %d on disk while the client reads nothing; want what is not yet sent of %d, at most %d in memory",
			st.MemoryBuffered, st.DiskBuffered, n, DefaultLimits().ResponseBuffer)
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
	testutil.WaitFor(t, settle, "the response's buffers given back", func() bool {
		st := bal.Stats()
		return st.MemoryBuffered == 0 && st.DiskBuffered == 0
	})
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

// TestSpoolChoice: which responses are read ahead, and which pass
// through as they arrive, costing no buffer.
func TestSpoolChoice(t *testing.T) {
	tests := []struct {
		name   string
		opts   Options
		size   int // -1: no Content-Length
		header http.Header
		method string
		want   bool
	}{
		{"default", testOptions(nil), 1 << 20, nil, "GET", true},
		{"no Content-Length", testOptions(nil), -1, nil, "GET", true},
		{"over ResponseBuffer", testOptions(func(o *Options) { o.ResponseBuffer = 256 << 10 }), 1 << 20, nil, "GET", true},
		{"off", testOptions(func(o *Options) { o.ResponseBuffer = 0 }), 1 << 20, nil, "GET", false},
		{"at minReadAhead", testOptions(nil), minReadAhead, nil, "GET", false},
		{"one over minReadAhead", testOptions(nil), minReadAhead + 1, nil, "GET", true},
		{"event stream", testOptions(nil), 1 << 20, http.Header{"Content-Type": {"text/event-stream; charset=utf-8"}}, "GET", false},
		{"gRPC", testOptions(nil), -1, http.Header{"Content-Type": {"application/grpc+proto"}}, "POST", false},
		{"X-Accel-Buffering: no", testOptions(nil), -1, http.Header{"X-Accel-Buffering": {"No"}}, "GET", false},
		{"X-Accel-Buffering: yes", testOptions(nil), -1, http.Header{"X-Accel-Buffering": {"yes"}}, "GET", true},
		{"HEAD", testOptions(nil), 1 << 20, nil, "HEAD", false},
		{"no memory budget: to disk", testOptions(func(o *Options) { o.MaxBuffer = 0 }), 1 << 20, nil, "GET", true},
		{"no budget at all", testOptions(func(o *Options) { o.MaxBuffer, o.MaxDiskBuffer = 0, 0 }), 1 << 20, nil, "GET", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := tt.opts
			o.BufferDir = t.TempDir()
			b := New(o)
			be := NewBackend(1, "replica-1", "127.0.0.1:1")
			b.Add(be)
			req, _ := http.NewRequest(tt.method, "http://x/", nil)
			a, err := b.acquire(req.Context(), req, time.Time{}, false, nil)
			if err != nil {
				t.Fatal(err)
			}
			n := max(tt.size, 300<<10)
			resp := &http.Response{
				StatusCode:    200,
				Header:        http.Header{},
				ContentLength: int64(tt.size),
				Body:          io.NopCloser(bytes.NewReader(pattern(n))),
				Request:       req,
			}
			for k, v := range tt.header {
				resp.Header[k] = v
			}
			if got := b.spool(resp, a); got != tt.want {
				t.Fatalf("spool = %v, want %v", got, tt.want)
			}
			if resp.Header.Get("X-Accel-Buffering") != "" {
				t.Errorf("X-Accel-Buffering is passed on to the client")
			}
			if !tt.want {
				if st := b.Stats(); st.MemoryBuffered != 0 || st.DiskBuffered != 0 {
					t.Errorf("%d bytes in memory, %d on disk for a response passed through", st.MemoryBuffered, st.DiskBuffered)
				}
				return
			}
			got, err := io.ReadAll(resp.Body)
			if err != nil || !bytes.Equal(got, pattern(n)) {
				t.Fatalf("read-ahead body: %d bytes, %v", len(got), err)
			}
			resp.Body.Close()
			testutil.WaitFor(t, settle, "release", func() bool {
				st := b.Stats()
				return be.InFlight() == 0 && st.MemoryBuffered == 0 && st.DiskBuffered == 0
			})
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

// TestSpoolSpillsToDisk: a response larger than ResponseBuffer, to a
// client that reads nothing, is read from the replica whole, the replica's
// slot freed, with ResponseBuffer of it in memory and the rest in a file
// that no one else can see (removed once made); the client then gets every
// byte, and the budgets are given back.
func TestSpoolSpillsToDisk(t *testing.T) {
	const n, inMemory = 8 << 20, 256 << 10
	for _, chunked := range []bool{false, true} {
		t.Run(fmt.Sprintf("chunked=%v", chunked), func(t *testing.T) {
			body := pattern(n)
			be := newTestBackend(t, 1, func(w http.ResponseWriter, r *http.Request) {
				if !chunked {
					w.Header().Set("Content-Length", strconv.Itoa(n))
				}
				_, _ = w.Write(body)
			})
			dir := t.TempDir()
			bal, srv := newTestBalancer(t, testOptions(func(o *Options) {
				o.MaxInflight, o.ResponseBuffer, o.BufferDir = 1, inMemory, dir
			}), be.Backend)
			_, _, resp := stalledGet(t, srv.Listener.Addr().String(), "/big")
			testutil.WaitFor(t, settle, "the replica released while the client reads nothing", func() bool {
				return be.InFlight() == 0 && be.Requests() == 1
			})
			st := bal.Stats()
			// The kernel's socket buffers take up to a few MiB.
			if st.MemoryBuffered > inMemory || st.DiskBuffered < n/4 {
				t.Errorf("%d bytes in memory, %d on disk; want at most %d in memory and the rest on disk", st.MemoryBuffered, st.DiskBuffered, inMemory)
			}
			if files, _ := os.ReadDir(dir); len(files) != 0 {
				t.Errorf("the buffer directory shows %d files; a response's file is removed once made", len(files))
			}
			got, err := io.ReadAll(resp.Body)
			if err != nil || !bytes.Equal(got, body) {
				t.Fatalf("the spooled response arrived changed: %d bytes, %v", len(got), err)
			}
			testutil.WaitFor(t, settle, "the budgets given back", func() bool {
				st := bal.Stats()
				return st.MemoryBuffered == 0 && st.DiskBuffered == 0
			})
		})
	}
}

// TestSpoolConnectionBound: the streams of one HTTP/2 connection that
// reads nothing share ResponseBuffer: eight 1 MiB responses freed their
// replica, with no more than ResponseBuffer of them in memory; the rest is
// on disk, and all of it is given back when the connection goes.
func TestSpoolConnectionBound(t *testing.T) {
	const n, streams, inMemory = 1 << 20, 8, 256 << 10
	be := sizedBackend(t, n, "")
	bal := New(testOptions(func(o *Options) { o.ResponseBuffer, o.BufferDir = inMemory, t.TempDir() }))
	bal.Add(be.Backend)
	addr := serveBalancer(t, bal)
	c, err := testutil.DialH2(addr, 0)
	if err != nil {
		t.Fatal(err)
	}
	for range streams {
		if _, err := c.Get("/big"); err != nil {
			t.Fatal(err)
		}
	}
	testutil.WaitFor(t, settle, "the replica released from every stream", func() bool {
		return be.Requests() == streams && be.InFlight() == 0
	})
	st := bal.Stats()
	if st.MemoryBuffered > inMemory || st.DiskBuffered < streams*n-inMemory-streams*chunkSize {
		t.Errorf("%d bytes in memory, %d on disk for %d stalled streams; want at most %d in memory", st.MemoryBuffered, st.DiskBuffered, streams, inMemory)
	}
	c.Close()
	testutil.WaitFor(t, settle, "the budgets given back", func() bool {
		st := bal.Stats()
		return st.MemoryBuffered == 0 && st.DiskBuffered == 0
	})
}

// TestSpoolWithoutRoom: with no disk and memory for two chunks, a
// response to a client that reads nothing holds its replica, as passing
// it through would, and gets through whole once the client reads.
func TestSpoolWithoutRoom(t *testing.T) {
	const n = 4 << 20
	be := sizedBackend(t, n, "")
	bal, srv := newTestBalancer(t, testOptions(func(o *Options) {
		o.MaxInflight, o.ResponseBuffer, o.MaxDiskBuffer = 1, 2*chunkSize, 0
	}), be.Backend)
	_, _, resp := stalledGet(t, srv.Listener.Addr().String(), "/big")
	time.Sleep(300 * time.Millisecond)
	if be.InFlight() != 1 || bal.Stats().MemoryBuffered > 2*chunkSize {
		t.Fatalf("in flight %d, %d bytes in memory; want the replica held and at most 2 chunks", be.InFlight(), bal.Stats().MemoryBuffered)
	}
	got, err := io.ReadAll(resp.Body)
	if err != nil || !bytes.Equal(got, pattern(n)) {
		t.Fatalf("the response arrived changed: %d bytes, %v", len(got), err)
	}
	testutil.WaitFor(t, settle, "the replica and the memory released", func() bool {
		return be.InFlight() == 0 && bal.Stats().MemoryBuffered == 0
	})
}

// TestSpoolReusesItsFile: once the client has caught up, the spool writes
// its file from the start again, so the disk a response holds is its
// largest backlog, not its length.
func TestSpoolReusesItsFile(t *testing.T) {
	const burst = 1 << 20
	b := New(testOptions(func(o *Options) { o.ResponseBuffer, o.BufferDir = 2*chunkSize, t.TempDir() }))
	be := NewBackend(1, "replica-1", "127.0.0.1:1")
	b.Add(be)
	req, _ := http.NewRequest(http.MethodGet, "http://x/", nil)
	a, err := b.acquire(req.Context(), req, time.Time{}, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	resp := &http.Response{StatusCode: 200, Header: http.Header{}, ContentLength: -1, Body: pr, Request: req}
	if !b.spool(resp, a) {
		t.Fatal("not spooled")
	}
	for round := range 3 {
		if _, err := pw.Write(pattern(burst)); err != nil {
			t.Fatal(err)
		}
		testutil.WaitFor(t, settle, "the burst read from the replica", func() bool { return b.Stats().DiskBuffered > 0 })
		// Written from the start each time: without, round k would hold
		// k+1 bursts.
		if got := b.Stats().DiskBuffered; got > burst+2*chunkSize {
			t.Errorf("round %d: %d bytes of disk held for a backlog of %d: the file grew", round, got, burst)
		}
		got := make([]byte, burst)
		if _, err := io.ReadFull(resp.Body, got); err != nil || !bytes.Equal(got, pattern(burst)) {
			t.Fatalf("round %d: the burst arrived changed: %v", round, err)
		}
	}
	if be.InFlight() != 1 {
		t.Errorf("the replica released before its body ended")
	}
	pw.Close()
	if n, err := resp.Body.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("after the body: %d, %v; want EOF", n, err)
	}
	resp.Body.Close()
	testutil.WaitFor(t, settle, "everything released", func() bool {
		st := b.Stats()
		return be.InFlight() == 0 && st.MemoryBuffered == 0 && st.DiskBuffered == 0
	})
}

// TestSpoolRemakesBufferDir: a response spilling to disk after a tmp
// cleaner removed the buffer directory makes it again, mode 0700, as a
// request body does, and still frees its replica before its client reads.
func TestSpoolRemakesBufferDir(t *testing.T) {
	const n, inMemory = 4 << 20, 256 << 10
	be := sizedBackend(t, n, "")
	dir := filepath.Join(t.TempDir(), "bodies")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	bal, srv := newTestBalancer(t, testOptions(func(o *Options) {
		o.MaxInflight, o.ResponseBuffer, o.BufferDir = 1, inMemory, dir
	}), be.Backend)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	_, _, resp := stalledGet(t, srv.Listener.Addr().String(), "/big")
	testutil.WaitFor(t, settle, "the replica released while the client reads nothing", func() bool {
		return be.InFlight() == 0 && be.Requests() == 1
	})
	if st := bal.Stats(); st.DiskBuffered == 0 {
		t.Errorf("nothing on disk (%d bytes in memory): the response did not spill", st.MemoryBuffered)
	}
	if fi, err := os.Lstat(dir); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		t.Errorf("the directory made again: %v, %v", fi, err)
	}
	got, err := io.ReadAll(resp.Body)
	if err != nil || !bytes.Equal(got, pattern(n)) {
		t.Fatalf("the spooled response arrived changed: %d bytes, %v", len(got), err)
	}
}

// dialSmallReceiveBuffer connects to addr with a 16 KiB receive buffer,
// set before the connection is made so that the window it offers stays
// small: what the client does not read soon fills the kernel's buffers,
// and the proxy's writes block. It is closed at the end of the test.
func dialSmallReceiveBuffer(t *testing.T, addr string) net.Conn {
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
	return conn
}

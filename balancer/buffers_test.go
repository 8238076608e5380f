package balancer

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/testutil"
)

// newTestBody starts a body of the declared length in bufs, from a client
// address with no cap on its share.
func newTestBody(t *testing.T, bufs *buffers, declared int64) *bufferedBody {
	t.Helper()
	shares := newClientShares(0, 0)
	share, err := shares.begin("192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	body, err := bufs.newBody(declared, shares, share)
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// TestBodyIsChargedByBytesReceived: a body declaring 50 MiB reserves
// nothing up front, then a small first chunk at its first byte, then
// pooled chunks only as its bytes arrive; its client's share is charged
// the same.
func TestBodyIsChargedByBytesReceived(t *testing.T) {
	bufs := newBuffers(1<<30, 0, t.TempDir())
	body := newTestBody(t, bufs, 50<<20)
	if got := bufs.mem.Load(); got != 0 {
		t.Fatalf("reserved %d bytes before a byte of a declared 50 MiB arrived, want 0", got)
	}
	pr, pw := io.Pipe()
	filled := make(chan error, 1)
	go func() { filled <- body.fill(pr) }()
	sent := 0
	for _, n := range []int{1, firstChunk - 1, 1, chunkSize - 1, 1, 3 * chunkSize, 100} {
		if _, err := pw.Write(make([]byte, n)); err != nil {
			t.Fatal(err)
		}
		sent += n
		// The first chunk is reserved once its first byte has arrived;
		// once it is full, the body having declared more, a chunk
		// ahead of what arrived past it.
		want := int64(firstChunk)
		if past := sent - firstChunk; past >= 0 {
			want += int64((past/chunkSize + 1) * chunkSize)
		}
		testutil.WaitFor(t, settle, fmt.Sprintf("%d bytes reserved after %d sent", want, sent), func() bool {
			return bufs.mem.Load() == want && body.share.bytes.Load() == want
		})
	}
	pw.Close()
	if err := <-filled; err != nil {
		t.Fatal(err)
	}
	body.done()
	if got, share := bufs.mem.Load(), body.share.bytes.Load(); got != 0 || share != 0 {
		t.Errorf("%d bytes still reserved (%d charged to the client) after the request ended", got, share)
	}
}

// TestSmallBodyReservesItsLength: a body declared 16 KiB at most reserves
// its own length, not a chunk, once its first byte arrives.
func TestSmallBodyReservesItsLength(t *testing.T) {
	bufs := newBuffers(1<<20, 0, t.TempDir())
	body := newTestBody(t, bufs, 100)
	if got := bufs.mem.Load(); got != 0 {
		t.Errorf("reserved %d bytes before the body's first", got)
	}
	if err := body.fill(strings.NewReader(strings.Repeat("b", 100))); err != nil {
		t.Fatal(err)
	}
	if got := bufs.mem.Load(); got != 100 {
		t.Errorf("reserved %d bytes for a 100-byte body", got)
	}
	body.done()
}

// TestSpillToDisk: a body that outgrows the memory budget moves to a file,
// which the request's end removes, and reads back whole, more than once.
func TestSpillToDisk(t *testing.T) {
	dir := t.TempDir()
	bufs := newBuffers(256<<10, 4<<20, dir)
	payload := make([]byte, 1<<20+17)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	for _, declared := range []int64{int64(len(payload)), -1} {
		t.Run("declared "+strconv.FormatInt(declared, 10), func(t *testing.T) {
			body := newTestBody(t, bufs, declared)
			if err := body.fill(bytes.NewReader(payload)); err != nil {
				t.Fatal(err)
			}
			if body.file == nil {
				t.Fatal("a body four times the memory budget stayed in memory")
			}
			if files := bufferFiles(t, dir); len(files) != 1 {
				t.Fatalf("files in the buffer directory: %v, want the body's", files)
			}
			if m, d := bufs.mem.Load(), bufs.disk.Load(); m != 0 || d != int64(len(payload)) {
				t.Errorf("reserved %d bytes of memory and %d of disk; want 0 and %d", m, d, len(payload))
			}
			for range 2 { // a retry reads it again
				got, err := io.ReadAll(body.reader())
				if err != nil || !bytes.Equal(got, payload) {
					t.Fatalf("read back %d bytes (%v), want the %d written", len(got), err, len(payload))
				}
			}
			body.done()
			if files := bufferFiles(t, dir); len(files) != 0 {
				t.Errorf("files left after the request: %v", files)
			}
			if m, d := bufs.mem.Load(), bufs.disk.Load(); m != 0 || d != 0 {
				t.Errorf("still reserved: %d bytes of memory, %d of disk", m, d)
			}
		})
	}
}

func bufferFiles(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, BufferFilePattern))
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestBufferBudgets fills both budgets with uploads in progress: a request
// arriving then is answered 503 with Retry-After before it sends a byte of
// its body, and one already admitted whose body outgrows memory when the
// disk is full gets 503 too. Bodies are charged what they have received,
// not what they declare. Once the uploads end, the budgets are free.
func TestBufferBudgets(t *testing.T) {
	dir := t.TempDir()
	be := newTestBackend(t, 1, echo)
	const memory, disk = 2 * firstChunk, 1 << 20
	bal, srv := newTestBalancer(t, testOptions(func(o *Options) { o.MaxBuffer = memory; o.MaxDiskBuffer = disk; o.BufferDir = dir }), be.Backend)
	bufs := bal.bufs

	// A: declares one byte more than the disk budget and sends the rest:
	// past the memory budget, it spills, and fills the disk.
	a := startUpload(t, srv, disk+1, disk)
	testutil.WaitFor(t, settle, "A on disk", func() bool { return bufs.disk.Load() == disk && len(bufferFiles(t, dir)) == 1 })
	// B and C: a byte each, and their first chunks fill the memory
	// budget; C's whole body fits in its first chunk.
	b := startUpload(t, srv, 100<<10, 1)
	c := startUpload(t, srv, firstChunk, 1)
	testutil.WaitFor(t, settle, "memory full", func() bool { return bufs.mem.Load() == memory })

	for name, head := range map[string]string{
		"declared": "POST /d HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n",
		"chunked":  "POST /d HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
	} {
		t.Run("past both budgets, "+name, func(t *testing.T) {
			// Only the headers are sent: the answer comes all the same.
			conn := dialRaw(t, srv)
			if _, err := io.WriteString(conn, head); err != nil {
				t.Fatal(err)
			}
			_ = conn.SetReadDeadline(time.Now().Add(settle))
			answer, err := io.ReadAll(conn)
			if err != nil {
				t.Fatalf("no answer before the body: %v (%q)", err, answer)
			}
			resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(answer)), nil)
			if err != nil {
				t.Fatalf("answer %q: %v", answer, err)
			}
			if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
				t.Errorf("answer %q; want 503 with Retry-After", answer)
			}
		})
	}

	// B outgrows its first chunk: memory is full, and so is the disk.
	b.send(t, 90<<10)
	if resp := b.answer(t); resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("B: status %d, Retry-After %q; want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	// A's last byte finds no disk either.
	a.send(t, 1)
	if resp := a.answer(t); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("A: status %d, want 503", resp.StatusCode)
	}
	// C finishes within its chunk and is served.
	c.send(t, firstChunk-1)
	if resp := c.answer(t); resp.StatusCode != http.StatusOK {
		t.Errorf("C: status %d, want 200", resp.StatusCode)
	}
	testutil.WaitFor(t, settle, "budgets free", func() bool { return bufs.mem.Load() == 0 && bufs.disk.Load() == 0 })
	if files := bufferFiles(t, dir); len(files) != 0 {
		t.Errorf("files left after the requests: %v", files)
	}
	if n := be.hits.Load(); n != 1 {
		t.Errorf("backend saw %d requests, want C's only", n)
	}
}

// TestBufferOff: with no memory budget every body goes to disk; with no
// disk budget a body that outgrows memory gets 503.
func TestBufferOff(t *testing.T) {
	payload := strings.Repeat("0123456789", 30<<10)
	t.Run("no memory", func(t *testing.T) {
		dir := t.TempDir()
		seen := make(chan int, 1)
		be := newTestBackend(t, 1, func(w http.ResponseWriter, r *http.Request) {
			seen <- len(bufferFiles(t, dir))
			echo(w, r)
		})
		_, srv := newTestBalancer(t, testOptions(func(o *Options) { o.MaxBuffer = 0; o.BufferDir = dir }), be.Backend)
		for _, body := range []string{"tiny", payload} {
			resp, err := srv.Client().Post(srv.URL, "text/plain", strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			var e echoed
			if err := decodeJSON(resp, &e); err != nil || string(e.Body) != body {
				t.Errorf("status %d, %d body bytes echoed (%v), want %d", resp.StatusCode, len(e.Body), err, len(body))
			}
			resp.Body.Close()
			if n := <-seen; n != 1 {
				t.Errorf("%d files in the buffer directory while the replica read a %d-byte body, want 1", n, len(body))
			}
		}
	})
	t.Run("no disk", func(t *testing.T) {
		be := newTestBackend(t, 1, echo)
		_, srv := newTestBalancer(t, testOptions(func(o *Options) { o.MaxBuffer = 2 * chunkSize; o.MaxDiskBuffer = 0 }), be.Backend)
		resp, err := srv.Client().Post(srv.URL, "text/plain", strings.NewReader(payload))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("status %d for a body 2 chunks over memory and no disk, want 503", resp.StatusCode)
		}
		if code, _, _ := get(t, srv.Client(), srv.URL); code != http.StatusOK {
			t.Errorf("then a GET got %d, want 200", code)
		}
	})
}

// TestRetryFromDisk: a request spilled to disk is sent whole again to
// another replica when the first drops it after reading its body.
func TestRetryFromDisk(t *testing.T) {
	dropper := newTestBackend(t, 1, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			_ = conn.(*net.TCPConn).SetLinger(0)
			conn.Close()
		}
	})
	echoer := newTestBackend(t, 2, echo)
	_, srv := newTestBalancer(t, testOptions(func(o *Options) { o.Policy = &RoundRobin{}; o.Retries = 1; o.MaxBuffer = 0; o.BufferDir = t.TempDir() }), dropper.Backend, echoer.Backend)
	body := strings.Repeat("y", 300<<10)
	resp, err := srv.Client().Post(srv.URL+"/p", "text/plain", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e echoed
	if err := decodeJSON(resp, &e); err != nil || string(e.Body) != body {
		t.Fatalf("retried request lost its body: status %d, %d bytes, %v", resp.StatusCode, len(e.Body), err)
	}
	if dropper.hits.Load() != 1 {
		t.Errorf("the first replica saw %d requests, want 1", dropper.hits.Load())
	}
}

func TestRemoveBufferFiles(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"mattingctl-body-1", "mattingctl-body-2", "keep.txt"} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := RemoveBufferFiles(dir); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || entries[0].Name() != "keep.txt" {
		t.Errorf("left %v, want only keep.txt", entries)
	}
	if err := RemoveBufferFiles(filepath.Join(dir, "missing")); err != nil {
		t.Errorf("a missing directory: %v", err)
	}
}

// upload is a request whose body is sent in parts over a raw connection.
type upload struct {
	conn *net.TCPConn
}

func startUpload(t *testing.T, srv *httptest.Server, declared, first int) *upload {
	t.Helper()
	u := &upload{conn: dialRaw(t, srv)}
	head := "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: " + strconv.Itoa(declared) + "\r\n\r\n"
	if _, err := io.WriteString(u.conn, head); err != nil {
		t.Fatal(err)
	}
	u.send(t, first)
	return u
}

func (u *upload) send(t *testing.T, n int) {
	t.Helper()
	if _, err := u.conn.Write(bytes.Repeat([]byte("u"), n)); err != nil {
		t.Fatal(err)
	}
}

func (u *upload) answer(t *testing.T) *http.Response {
	t.Helper()
	_ = u.conn.SetReadDeadline(time.Now().Add(settle))
	resp, err := http.ReadResponse(bufio.NewReader(u.conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

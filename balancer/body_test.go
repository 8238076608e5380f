package balancer

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptrace"
	"os"
	"strings"
	"sync"
	"testing"
)

// TestPooledBodiesStayIntact sends many distinct bodies at once, some to a
// backend that answers before reading them: a body buffer reused while a
// transport still reads it would show up as a wrong hash.
func TestPooledBodiesStayIntact(t *testing.T) {
	hashing := newTestBackend(t, 1, func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		_, _ = io.Copy(h, r.Body)
		fmt.Fprint(w, hex.EncodeToString(h.Sum(nil)))
	})
	early := newTestBackend(t, 2, func(w http.ResponseWriter, r *http.Request) {
		// Answer without reading the body, as a server rejecting it does.
		w.Header().Set("Connection", "close")
		w.WriteHeader(http.StatusRequestEntityTooLarge)
	})
	_, srv := newTestBalancer(t, testOptions(func(o *Options) { o.Policy = &RoundRobin{} }), hashing.Backend, early.Backend)
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := make([]byte, 1000+rand.IntN(300<<10))
			for j := range body {
				body[j] = byte(i + j)
			}
			resp, err := srv.Client().Post(srv.URL, "application/octet-stream", bytes.NewReader(body))
			if err != nil {
				t.Errorf("request %d: %v", i, err)
				return
			}
			defer resp.Body.Close()
			got, _ := io.ReadAll(resp.Body)
			if resp.Header.Get("X-Backend") != "replica-1" {
				return
			}
			sum := sha256.Sum256(body)
			if want := hex.EncodeToString(sum[:]); string(got) != want {
				t.Errorf("request %d (%d bytes): backend hashed %s, want %s", i, len(body), got, want)
			}
		}()
	}
	wg.Wait()
}

// TestBodyBufferLifetime: the budget is released when the handler is done;
// the chunks go back to the pool only when, besides, the transport has
// written every attempt.
func TestBodyBufferLifetime(t *testing.T) {
	tests := []struct {
		name      string
		attempts  int
		writeErrs []bool // per attempt: WroteRequest reports an error
		reported  int    // attempts whose WroteRequest fires
		returned  bool
	}{
		{"one attempt written", 1, []bool{false}, 1, true},
		{"handler done, transport still writing", 1, []bool{false}, 0, false},
		{"write failed", 1, []bool{true}, 1, false},
		{"retried, both written", 2, []bool{false, false}, 2, true},
		{"retried, second still writing", 2, []bool{false, false}, 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bufs := newBuffers(1<<20, 0, t.TempDir())
			b := newTestBody(t, bufs, -1) // unknown length
			// Past the first chunk: the rest is in a pooled one.
			if err := b.fill(strings.NewReader(strings.Repeat("p", firstChunk+10))); err != nil {
				t.Fatal(err)
			}
			traces := make([]func(), tt.attempts)
			for i := range tt.attempts {
				b.reader() // the transport writes the request from its own reader
				tr := b.trace()
				var err error
				if tt.writeErrs[i] {
					err = io.ErrUnexpectedEOF
				}
				traces[i] = func() { tr.WroteRequest(httptrace.WroteRequestInfo{Err: err}) }
			}
			b.done() // the handler returns
			if n := bufs.mem.Load(); n != 0 {
				t.Errorf("%d bytes still reserved after the handler returned", n)
			}
			for i := range tt.reported {
				traces[i]()
			}
			if got := b.pooled == nil; got != (tt.reported == tt.attempts) {
				t.Fatalf("chunks released = %v after %d of %d attempts reported", got, tt.reported, tt.attempts)
			}
			if reusable := b.pooled == nil && !b.noReuse.Load(); reusable != tt.returned {
				t.Errorf("chunks returned to the pool = %v, want %v", reusable, tt.returned)
			}
		})
	}
}

// TestBodyBytes: bytes copies a body held in chunks, or in a file, whole,
// and takes no reference on its chunks.
func TestBodyBytes(t *testing.T) {
	want := bytes.Repeat([]byte("0123456789"), 20000) // 200,000 bytes: several chunks
	b := &bufferedBody{chunks: [][]byte{want[:65536], want[65536:131072], want[131072:]}, size: int64(len(want))}
	b.refs.Store(1)
	got, err := b.bytes()
	if err != nil || !bytes.Equal(got, want) || b.refs.Load() != 1 {
		t.Errorf("chunks: %d bytes, %v, refs %d; want %d bytes, refs 1", len(got), err, b.refs.Load(), len(want))
	}
	f, err := os.CreateTemp(t.TempDir(), "body")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(want); err != nil {
		t.Fatal(err)
	}
	got, err = (&bufferedBody{file: f, size: int64(len(want))}).bytes()
	if err != nil || !bytes.Equal(got, want) {
		t.Errorf("file: %d bytes, %v; want %d bytes", len(got), err, len(want))
	}
}

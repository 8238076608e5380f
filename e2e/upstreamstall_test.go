package e2e

import (
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/mattingctl/mattingctl/internal/testutil"
)

// TestUpstreamStallBreaksOff is the stalled replica: with
// --upstream-timeout 5s, a replica that sends its headers and half its
// body and then nothing more. Before, the response hung until the client
// gave up, holding the replica's slot. Now each pause in the body is
// bounded by the upstream timeout: the client's response ends within 7 s
// of the request, broken off as its framing shows it and never with a
// fabricated end (a Content-Length body cut short, a chunked body without
// its last chunk, an HTTP/2 stream reset), the slot is free, and the
// requests are counted; legitimate requests beside them are answered.
func TestUpstreamStallBreaksOff(t *testing.T) {
	const timeout = 5 * time.Second
	const size = 1 << 20
	// A fixed cap of 8: the stalled responses must leave slots for the
	// legitimate requests (auto starts each replica at 1, and learns
	// nothing from a response that never ends).
	in := start(t, 2, "--upstream-timeout", timeout.String(), "--max-inflight", "8", "--", fakemodel)
	in.waitReady(2)
	legit := startLoad(in.url("/"), 2)

	stalled := "/?size=" + strconv.Itoa(size) + "&stall=60s"
	var wg sync.WaitGroup
	for _, chunked := range []bool{false, true} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			path := stalled
			if chunked {
				path += "&chunked=1"
			}
			sent := time.Now()
			resp, err := client.Get(in.url(path))
			if err != nil {
				t.Errorf("chunked=%v: %v", chunked, err)
				return
			}
			defer resp.Body.Close()
			n, err := io.Copy(io.Discard, resp.Body)
			took := time.Since(sent)
			t.Logf("chunked=%v: %s, %d bytes, then %v after %s", chunked, resp.Status, n, err, took.Round(time.Millisecond))
			if resp.StatusCode != http.StatusOK || n != size/2 || !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("chunked=%v: %s, %d bytes, then %v; want 200, the %d bytes sent, and the body broken off", chunked, resp.Status, n, err, size/2)
			}
			if took < timeout || took > 7*time.Second {
				t.Errorf("chunked=%v: the response ended %s after the request, want between %s and 7s", chunked, took, timeout)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		h2, err := testutil.DialH2("127.0.0.1:"+strconv.Itoa(in.port), 1<<20)
		if err != nil {
			t.Error(err)
			return
		}
		defer h2.Close()
		sent := time.Now()
		id, err := h2.Get(stalled)
		if err != nil {
			t.Error(err)
			return
		}
		var s testutil.H2Stream
		for time.Since(sent) < 10*time.Second {
			if s = h2.Stream(id); s.Reset || s.Ended {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		took := time.Since(sent)
		t.Logf("HTTP/2: %v after %s", s, took.Round(time.Millisecond))
		if s.Status != "200" || s.Data != size/2 || !s.Reset || s.ResetCode == http2.ErrCodeNo {
			t.Errorf("HTTP/2: %v; want 200, the %d bytes sent, and the stream reset", s, size/2)
		}
		if took < timeout || took > 7*time.Second {
			t.Errorf("HTTP/2: the stream ended %s after the request, want between %s and 7s", took, timeout)
		}
	}()
	wg.Wait()
	ok, failures, _ := legit.finish()

	st := in.status()
	for _, r := range st.Replicas {
		if r.Inflight != 0 {
			t.Errorf("%s still holds %d requests", r.Name, r.Inflight)
		}
	}
	if st.UpstreamTimeouts != 3 {
		t.Errorf("status counts %d responses broken off by the upstream timeout, want 3", st.UpstreamTimeouts)
	}
	if ok == 0 || len(failures) > 0 {
		t.Errorf("legitimate requests: %d answered, failures: %s", ok, firstFew(failures))
	}
}

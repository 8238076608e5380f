package e2e

import (
	"bytes"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// peakRSS returns the peak resident memory of process pid, in bytes.
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	kb, err := strconv.ParseInt(strings.Fields(procField(t, "/proc/"+strconv.Itoa(pid)+"/status", "VmHWM"))[0], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return kb << 10
}

// TestRapidReset: one HTTP/2 connection opening and resetting requests as
// fast as it can, for up to 5 s: few of them reach the replicas (at most
// 1,000; before, about 149,000 in 30 s), mattingctl's peak memory stays
// under 300 MB, and ordinary requests beside it are served at least half
// as fast as without.
func TestRapidReset(t *testing.T) {
	orders := filepath.Join(t.TempDir(), "orders")
	in := start(t, 2, "--", fakemodel, "-order-log", orders)
	in.waitReady(2)
	served := func(d time.Duration) int {
		l := startLoad(in.url("/legit"), 8)
		time.Sleep(d)
		ok, failures, _ := l.finish()
		if len(failures) > 0 {
			t.Errorf("%d ordinary requests failed: %v", len(failures), failures[:min(3, len(failures))])
		}
		return ok
	}
	without := served(3 * time.Second)

	conn, err := net.Dial("tcp", in.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var sent atomic.Int64
	gone := make(chan struct{})
	go func() { defer close(gone); _, _ = io.Copy(io.Discard, conn) }()
	var attack sync.WaitGroup
	attack.Add(1)
	go func() {
		defer attack.Done()
		if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
			return
		}
		fr := http2.NewFramer(conn, conn)
		_ = fr.WriteSettings()
		var hb bytes.Buffer
		enc := hpack.NewEncoder(&hb)
		end := time.Now().Add(5 * time.Second)
		for id := uint32(1); time.Now().Before(end); id += 2 {
			hb.Reset()
			for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "x"}, {":path", "/attack"}} {
				_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
			}
			if fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true}) != nil ||
				fr.WriteRSTStream(id, http2.ErrCodeCancel) != nil {
				return
			}
			sent.Add(1)
		}
	}()
	with := served(3 * time.Second)
	attack.Wait()
	closed := false
	select {
	case <-gone:
		closed = true
	case <-time.After(2 * time.Second):
	}
	log, err := os.ReadFile(orders)
	if err != nil {
		t.Fatal(err)
	}
	reached := strings.Count(string(log), " start GET /attack")
	rss := peakRSS(t, in.cmd.Process.Pid)
	t.Logf("sent %d requests, each reset at once, on one connection (closed: %v); %d reached a replica; peak RSS %d MB; ordinary requests in 3 s: %d without, %d with",
		sent.Load(), closed, reached, rss>>20, without, with)
	if !closed {
		t.Error("the attacking connection was not closed")
	}
	if reached > 1000 {
		t.Errorf("%d cancelled requests reached a replica, want at most 1,000", reached)
	}
	if rss > 300<<20 {
		t.Errorf("peak RSS %d MB, want at most 300 MB", rss>>20)
	}
	if with < without/2 {
		t.Errorf("ordinary requests during the attack: %d in 3 s, less than half of %d without", with, without)
	}
}

package e2e

import (
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

	"github.com/mattingctl/mattingctl/internal/testutil"
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
		_ = testutil.RapidReset(conn, "/attack", time.Now().Add(5*time.Second), &sent)
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

package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/control"
	"github.com/mattingctl/mattingctl/internal/testutil"
)

// TestSlowReadersDoNotHoldReplicas is the slow-reader attack
// at its scale, with legitimate requests from another client beside it:
// 16 HTTP/1.1 connections that ask for a 20 MiB response and never read
// it, and one HTTP/2 connection whose flow-control window is zero with 16
// streams asking the same, against 2 replicas of 8 slots each. Before,
// they held every slot (59,280 503s in 8 s; the HTTP/2 one for its whole
// 170 s). Now every response is read from its replica ahead of its client
// (memory, then the buffer directory), so the slots come back as soon as
// the replicas have sent them, and --send-timeout ends each attacker's
// response. Legitimate requests are at least 99% answered 200, no slot is
// held past the send timeout (a replica is held only while it sends, at
// what the machine's loopback carries), every attack response is counted
// as broken off by it, and mattingctl's resident memory stays under 300 MB.
// mattingctl is built without the race detector here, which multiplies
// its CPU and memory: the bounds are the product's.
func TestSlowReadersDoNotHoldReplicas(t *testing.T) {
	const sendTimeout = 3 * time.Second
	const attackers, size = 16, 20 << 20
	in := startPlain(t, 2, "--send-timeout", sendTimeout.String(), "--", fakemodel)
	in.waitReady(2)
	ctl, err := control.Connect(in.home, "")
	if err != nil {
		t.Fatal(err)
	}
	rss := watchRSS(t, in.cmd.Process.Pid)
	held := watchHeld(t, ctl)

	legit := startLoad(in.url("/"), 4)
	time.Sleep(300 * time.Millisecond) // legitimate traffic first
	attack := time.Now()
	path := "/?size=" + strconv.Itoa(size)
	for range attackers {
		conn, err := testutil.NonReadingGet(in.addr(), path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
	}
	h2, err := testutil.DialH2("127.0.0.1:"+strconv.Itoa(in.port), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer h2.Close()
	var streams []uint32
	for range attackers {
		id, err := h2.Get(path)
		if err != nil {
			t.Fatal(err)
		}
		streams = append(streams, id)
	}

	// The attack goes on until the send timeout has ended every one of
	// its responses: the last ones waited in the queue first.
	var st control.Status
	testutil.WaitFor(t, 60*time.Second, "every attack response broken off by the send timeout", func() bool {
		st = in.status()
		return st.SendTimeouts == 2*attackers
	})
	ended := time.Since(attack)
	ok, failures, _ := legit.finish()

	// No slot was held past the send timeout: a replica is held only
	// while it sends (16 at once take about a second here), never while
	// the attacker reads nothing, and is free now. Passed through, as
	// before, each would be held until the send timeout at least.
	for _, r := range in.status().Replicas {
		if r.Inflight != 0 {
			t.Errorf("%s still holds %d requests", r.Name, r.Inflight)
		}
	}
	if longest := held(); longest > sendTimeout {
		t.Errorf("a replica held a request for %s during the attack, longer than the send timeout (%s)", longest, sendTimeout)
	}
	for _, id := range streams {
		if s := h2.Stream(id); !s.Reset || s.Data != 0 {
			t.Errorf("stream %d: %v; want reset after the send timeout, with no data", id, s)
		}
	}
	total := ok + len(failures)
	t.Logf("every attack response broken off %s after the attack began; the longest a replica held a request: %s; legitimate requests: %d of %d answered 200; mattingctl's peak RSS %d MB",
		ended.Round(time.Millisecond), held().Round(time.Millisecond), ok, total, rss()>>20)
	if total == 0 || float64(ok) < 0.99*float64(total) {
		t.Errorf("legitimate requests: %d of %d answered 200, want at least 99%%; failures: %s", ok, total, firstFew(failures))
	}
	if peak := rss(); peak > 300<<20 {
		t.Errorf("mattingctl's resident memory peaked at %d MB, want at most 300 MB", peak>>20)
	}
}

// watchHeld asks the instance behind ctl for its replicas' oldest request
// in flight every 100 ms until the test ends; the function returned gives
// the longest seen so far.
func watchHeld(t *testing.T, ctl *control.Client) func() time.Duration {
	t.Helper()
	var longest atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			st, err := ctl.Status(ctx)
			cancel()
			if err == nil {
				for _, r := range st.Replicas {
					if ms := r.OldestInflightMs; ms > longest.Load() {
						longest.Store(ms)
					}
				}
			}
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
	return func() time.Duration { return time.Duration(longest.Load()) * time.Millisecond }
}

// plainBuild builds mattingctl without the race detector, once.
var plainBuild = sync.OnceValues(func() (string, error) {
	bin := filepath.Join(filepath.Dir(mattingctl), "mattingctl-plain")
	out, err := exec.Command("go", "build", "-o", bin, "../cmd/mattingctl").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("building mattingctl without -race: %v\n%s", err, out)
	}
	return bin, nil
})

// startPlain is start with mattingctl built without the race detector,
// for tests that measure its memory and speed.
func startPlain(t *testing.T, replicas int, args ...string) *instance {
	t.Helper()
	bin, err := plainBuild()
	if err != nil {
		t.Fatal(err)
	}
	port := testutil.FreePorts(t, replicas+8)
	full := append([]string{"up", "--port", strconv.Itoa(port), "--host", "127.0.0.1", "--admin", "127.0.0.1:0", "--replicas", strconv.Itoa(replicas)}, args...)
	return launch(t, bin, t.TempDir(), port, full...)
}

// watchRSS samples pid's resident memory every 50 ms until the test ends;
// the function returned gives the highest seen so far, in bytes.
func watchRSS(t *testing.T, pid int) func() int64 {
	t.Helper()
	var mu sync.Mutex
	var peak int64
	sample := func() {
		if n := residentBytes(pid); n > 0 {
			mu.Lock()
			peak = max(peak, n)
			mu.Unlock()
		}
	}
	sample()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				sample()
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
	return func() int64 {
		sample()
		mu.Lock()
		defer mu.Unlock()
		return peak
	}
}

// residentBytes returns pid's VmRSS, or 0 when it cannot be read.
func residentBytes(pid int) int64 {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// firstFew is the first few of failures, for a test's message.
func firstFew(failures []string) string {
	if len(failures) > 5 {
		return strings.Join(failures[:5], "; ") + fmt.Sprintf("; and %d more", len(failures)-5)
	}
	return strings.Join(failures, "; ")
}

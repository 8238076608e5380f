package sdnotify

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

// systemd is the test's end of NOTIFY_SOCKET: a unixgram socket whose
// datagrams the test reads one at a time.
type systemd struct {
	t    *testing.T
	conn *net.UnixConn
}

// listen opens a unixgram socket at addr ("" for a fresh path) and points
// NOTIFY_SOCKET at it for the test.
func listen(t *testing.T, addr string) *systemd {
	t.Helper()
	if addr == "" {
		// Not t.TempDir: a socket path must fit in 108 bytes.
		dir, err := os.MkdirTemp("", "sdn")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		addr = filepath.Join(dir, "notify")
	}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv(SocketEnv, addr)
	return &systemd{t: t, conn: conn}
}

// next returns the next datagram, failing the test if none comes in 10 s.
func (s *systemd) next() string {
	s.t.Helper()
	buf := make([]byte, 4096)
	_ = s.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := s.conn.Read(buf)
	if err != nil {
		s.t.Fatalf("no datagram from the notifier: %v", err)
	}
	return string(buf[:n])
}

// fields splits a datagram into its KEY=VALUE lines.
func fields(msg string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(strings.TrimSuffix(msg, "\n"), "\n") {
		k, v, _ := strings.Cut(line, "=")
		m[k] = v
	}
	return m
}

func TestNewWithoutSocketSendsNothing(t *testing.T) {
	t.Setenv(SocketEnv, "")
	n := New(nil)
	if n != nil {
		t.Fatalf("New without %s = %v, want nil", SocketEnv, n)
	}
	// A nil Notifier is usable: every method is a no-op, Run returns.
	n.Ready()
	n.Reloading()
	n.Reloaded()
	n.Stopping()
	n.Run(context.Background(), time.Millisecond, func() string { return "x" })
}

func TestLifecycleMessagesInOrder(t *testing.T) {
	sd := listen(t, "")
	n := New(nil)
	n.Reloading() // before ready: ignored, or a READY=1 would follow early
	n.Reloaded()  // likewise
	n.Ready()
	if got := sd.next(); got != "READY=1\nSTATUS=ready" {
		t.Fatalf("first datagram = %q, want READY=1 with STATUS=ready", got)
	}
	n.Ready() // ready already: nothing
	n.Reloading()
	if f := fields(sd.next()); f["RELOADING"] != "1" || f["MONOTONIC_USEC"] == "" || f["STATUS"] != "reloading" {
		t.Fatalf("reload start = %v, want RELOADING=1, MONOTONIC_USEC and STATUS=reloading", f)
	}
	n.Reloaded()
	if got := sd.next(); got != "READY=1\nSTATUS=ready" {
		t.Fatalf("reload end = %q, want READY=1", got)
	}
	n.Stopping()
	if got := sd.next(); got != "STOPPING=1\nSTATUS=stopping" {
		t.Fatalf("stop = %q, want STOPPING=1", got)
	}
	n.Ready()     // stopping: nothing more but the watchdog
	n.Reloading() // likewise
	n.Stopping()
	n.watchdog()
	if got := sd.next(); got != "WATCHDOG=1" {
		t.Fatalf("after STOPPING=1 got %q, want only the watchdog", got)
	}
}

func TestReloadingCarriesMonotonicTime(t *testing.T) {
	sd := listen(t, "")
	n := New(nil)
	n.Ready()
	sd.next()
	before := monotonicUsec(t)
	n.Reloading()
	f := fields(sd.next())
	after := monotonicUsec(t)
	if f["RELOADING"] != "1" {
		t.Fatalf("got %v, want RELOADING=1", f)
	}
	usec, err := strconv.ParseInt(f["MONOTONIC_USEC"], 10, 64)
	if err != nil || usec < before || usec > after {
		t.Fatalf("MONOTONIC_USEC=%q, want CLOCK_MONOTONIC in µs, between %d and %d", f["MONOTONIC_USEC"], before, after)
	}
}

func monotonicUsec(t *testing.T) int64 {
	t.Helper()
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	return ts.Nano() / 1000
}

func TestRunSendsStatusChangesAndPings(t *testing.T) {
	sd := listen(t, "")
	n := New(nil)
	var mu sync.Mutex
	counts := "1/2 replicas ready"
	status := func() string { mu.Lock(); defer mu.Unlock(); return counts }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); n.Run(ctx, 200*time.Millisecond, status) }()
	defer func() { cancel(); <-done }()

	if got := sd.next(); got != "STATUS=starting: 1/2 replicas ready" {
		t.Fatalf("first datagram = %q, want the starting status", got)
	}
	if got := sd.next(); got != "WATCHDOG=1" {
		t.Fatalf("second datagram = %q, want a first ping at once", got)
	}
	mu.Lock()
	counts = "2/2 replicas ready"
	mu.Unlock()
	n.Ready() // wakes Run, which sends the new counts without waiting a tick
	if got := sd.next(); got != "READY=1\nSTATUS=ready" {
		t.Fatalf("ready = %q, want READY=1", got)
	}
	sawStatus, pings := false, 0
	for !sawStatus || pings < 2 {
		switch got := sd.next(); got {
		case "STATUS=2/2 replicas ready":
			sawStatus = true
		case "WATCHDOG=1":
			pings++
		default:
			t.Fatalf("unexpected datagram %q", got)
		}
	}
}

func TestRunStopsPingingWhileStatusIsStuck(t *testing.T) {
	sd := listen(t, "")
	n := New(nil)
	stuck := make(chan struct{})
	var calls sync.WaitGroup
	calls.Add(1)
	first := true
	status := func() string {
		if first { // Run's first call answers; the next one hangs
			first = false
			return "1/1 replicas ready"
		}
		select {
		case <-stuck:
		default:
			calls.Done()
			<-stuck
		}
		return "1/1 replicas ready"
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); n.Run(ctx, 20*time.Millisecond, status) }()
	sd.next() // STATUS
	sd.next() // the first ping
	calls.Wait()
	// Stuck in status: no ping may come, however long we wait.
	_ = sd.conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, err := sd.conn.Read(make([]byte, 64)); err == nil {
		t.Fatalf("a datagram (%d bytes) came while the status function was stuck", n)
	}
	cancel()
	close(stuck)
	<-done
}

func TestWatchdogTimeoutFollowsSystemdsRules(t *testing.T) {
	self := strconv.Itoa(os.Getpid())
	for _, tc := range []struct {
		usec, pid string
		want      time.Duration
		wantErr   bool
	}{
		{"", "", 0, false},
		{"3000000", "", 3 * time.Second, false},
		{"3000000", self, 3 * time.Second, false},
		{"3000000", "1", 0, false}, // meant for another process
		{"soon", "", 0, true},
		{"-5", "", 0, true},
	} {
		t.Setenv("WATCHDOG_USEC", tc.usec)
		t.Setenv("WATCHDOG_PID", tc.pid)
		got, err := WatchdogTimeout()
		if got != tc.want || (err != nil) != tc.wantErr {
			t.Errorf("WATCHDOG_USEC=%q WATCHDOG_PID=%q: got %v, %v; want %v, error %v", tc.usec, tc.pid, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestStatusLine(t *testing.T) {
	for _, tc := range []struct {
		ph     phase
		counts string
		want   string
	}{
		{starting, "", "starting"},
		{starting, "2/4 replicas ready", "starting: 2/4 replicas ready"},
		{ready, "", "ready"},
		{ready, "4/4 replicas ready", "4/4 replicas ready"},
		{reloading, "4/4 replicas ready", "reloading: 4/4 replicas ready"},
		{stopping, "4/4 replicas ready", "stopping"},
	} {
		if got := statusLine(tc.ph, tc.counts); got != tc.want {
			t.Errorf("statusLine(%s, %q) = %q, want %q", phaseNames[tc.ph], tc.counts, got, tc.want)
		}
	}
}

func TestFailedSendIsLoggedOnce(t *testing.T) {
	dir, err := os.MkdirTemp("", "sdn")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	t.Setenv(SocketEnv, filepath.Join(dir, "gone")) // nobody listens
	var log strings.Builder
	n := New(hclogTo(&log))
	n.Ready()
	n.Stopping()
	if got := strings.Count(log.String(), "cannot notify systemd"); got != 1 {
		t.Fatalf("log has %d warnings, want 1:\n%s", got, log.String())
	}
}

func hclogTo(w *strings.Builder) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Output: w, Level: hclog.Info})
}

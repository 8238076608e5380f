package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/testutil"
)

// launchWithStdout is startIn with mattingctl's stdout going to stdout (a
// FIFO or a pipe) rather than to in.stdout; stderr is captured as usual.
func launchWithStdout(t *testing.T, stdout *os.File, replicas int, args ...string) *instance {
	t.Helper()
	home := t.TempDir()
	port := testutil.FreePorts(t, replicas+8)
	full := append([]string{"up", "--port", strconv.Itoa(port), "--host", "127.0.0.1", "--admin", "127.0.0.1:0", "--replicas", strconv.Itoa(replicas)}, args...)
	in := &instance{t: t, home: home, port: port, done: make(chan struct{}), pids: map[int]bool{}}
	in.cmd = exec.Command(mattingctl, full...)
	in.cmd.Env = append(os.Environ(), "MATTINGCTL_HOME="+home)
	in.cmd.Stdout, in.cmd.Stderr = stdout, &in.stderr
	if err := in.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		in.err = in.cmd.Wait()
		close(in.done)
	}()
	t.Cleanup(in.cleanup)
	return in
}

// sendAll sends n GETs to url from c goroutines, each with a 5 s timeout,
// and returns how many were answered 200 and the first failure, if any; it
// stops at the first.
func sendAll(url string, n, c int) (answered int64, err error) {
	cl := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: c}}
	defer cl.CloseIdleConnections()
	var next, ok atomic.Int64
	var once sync.Once
	var wg sync.WaitGroup
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				resp, e := cl.Get(url + "&i=" + strconv.FormatInt(i, 10))
				if e == nil {
					_, e = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if e == nil && resp.StatusCode != 200 {
						e = fmt.Errorf("status %s", resp.Status)
					}
				}
				if e == nil {
					ok.Add(1)
					continue
				}
				once.Do(func() { err = fmt.Errorf("request %d: %w", i, e) })
				next.Store(int64(n)) // stop everyone
				return
			}
		}()
	}
	wg.Wait()
	return ok.Load(), err
}

// TestBlockedStdoutFreezesNothing reproduces a frozen service: mattingctl's stdout
// is a FIFO that nobody reads, and the replicas print a line per request.
// Before the fix, every replica blocked in write(2) after a few thousand
// requests and requests timed out while /livez and /readyz said 200. Now
// 3,000 requests with lines of about 1 KB (about 3 MB of output, past the
// 1 MiB buffer and the FIFO's 64 KiB) are all answered, the lines that did
// not fit are counted in /metrics, and once the FIFO is read the warning
// appears in it. (The output matters, not the count: 12,000 requests of
// 260-byte lines made as much, and took a busy machine minutes.)
func TestBlockedStdoutFreezesNothing(t *testing.T) {
	t.Parallel()
	fifo := filepath.Join(t.TempDir(), "stdout.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	// The read end first (non-blocking open), so that opening the write
	// end does not wait; it is not read until the load is over.
	rd, err := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	wr, err := os.OpenFile(fifo, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	in := launchWithStdout(t, wr, 2, "--", fakemodel, "-log-requests")
	wr.Close()
	st := in.waitReady(2)

	const n = 3_000
	pad := strings.Repeat("p", 1000) // lines of about 1 KB
	start := time.Now()
	answered, err := sendAll(in.url("/?pad="+pad), n, 16)
	if err != nil {
		t.Fatalf("with stdout blocked, %d of %d requests answered in %s, then %v", answered, n, time.Since(start).Round(time.Millisecond), err)
	}
	t.Logf("%d requests answered in %s with stdout blocked", n, time.Since(start).Round(time.Millisecond))
	dropped := metricValue(t, st.Admin, "mattingctl_log_lines_dropped_total")
	if dropped <= 0 {
		t.Fatalf("mattingctl_log_lines_dropped_total = %v after %d requests into a blocked FIFO, want > 0", dropped, n)
	}
	t.Logf("mattingctl_log_lines_dropped_total = %v", dropped)

	// Read the FIFO: the queue comes out, then the warning.
	var got testutil.SyncBuffer
	go func() { _, _ = io.Copy(&got, rd) }()
	testutil.WaitFor(t, 10*time.Second, "the dropped-lines warning in stdout", func() bool {
		return strings.Contains(got.String(), "lines while output was blocked")
	})
	if !strings.Contains(got.String(), "replica-1 | fakemodel replica 1: GET /?pad=") {
		t.Errorf("stdout lacks replica lines:\n%.500s", got.String())
	}
	if out, errOut, code := in.ctl("down"); code != 0 {
		t.Fatalf("down: exit %d: %s%s", code, out, errOut)
	}
	if code := in.wait(20 * time.Second); code != 0 {
		t.Errorf("mattingctl up exited %d after down", code)
	}
}

// TestClosedStdoutPipe reproduces `mattingctl up … | head -c 300`: the test
// reads 300 bytes of mattingctl's stdout and closes the pipe. Before the
// fix mattingctl died of SIGPIPE at its next line, without a log line and
// leaving its socket. Now it says stdout has gone, keeps serving, counts
// the lines it cannot write, and `down` stops it cleanly.
func TestClosedStdoutPipe(t *testing.T) {
	t.Parallel()
	rd, wr, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	in := launchWithStdout(t, wr, 2, "--", fakemodel, "-log-requests")
	wr.Close()
	st := in.waitReady(2)

	head := make(chan error, 1)
	go func() {
		_, err := io.ReadFull(rd, make([]byte, 300))
		rd.Close() // as head exits
		head <- err
	}()
	done := false
	for i := 0; i < 1000 && !done; i++ {
		if _, err := get(in.url("/head?i=" + strconv.Itoa(i))); err != nil {
			t.Fatalf("request %d before the pipe closed: %v", i, err)
		}
		select {
		case err := <-head:
			if err != nil {
				t.Fatalf("reading 300 bytes of stdout: %v", err)
			}
			done = true
		default:
		}
	}
	if !done {
		t.Fatal("1000 requests did not print 300 bytes on stdout")
	}

	// Every line from now on meets a closed pipe.
	for i := range 200 {
		if _, err := get(in.url("/after?i=" + strconv.Itoa(i))); err != nil {
			t.Fatalf("request %d after stdout's reader went: %v", i, err)
		}
	}
	testutil.WaitFor(t, 10*time.Second, "the log to say stdout has gone", func() bool {
		return strings.Contains(in.stderr.String(), "stdout has gone")
	})
	if dropped := metricValue(t, st.Admin, "mattingctl_log_lines_dropped_total"); dropped <= 0 {
		t.Errorf("mattingctl_log_lines_dropped_total = %v after the pipe closed, want > 0", dropped)
	}
	if out, errOut, code := in.ctl("down"); code != 0 {
		t.Fatalf("down: exit %d: %s%s", code, out, errOut)
	}
	if code := in.wait(20 * time.Second); code != 0 {
		t.Errorf("mattingctl up exited %d after down (%v)", code, in.err)
	}
	if _, err := os.Stat(in.home + "/default.sock"); !os.IsNotExist(err) {
		t.Errorf("control socket left behind: %v", err)
	}
	if !strings.Contains(in.stderr.String(), "stopped") {
		t.Errorf("no \"stopped\" log line:\n%s", in.stderr.String())
	}
}

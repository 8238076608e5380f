package replica

import (
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/testutil"
)

// startGroup starts TestHelperProcess in mode as a replica, which leads a
// process group of its own, and kills the group when the test ends.
func startGroup(tb testing.TB, mode ...string) *Process {
	tb.Helper()
	spec := Spec{ID: 1, Port: 1, Command: helperCommand(mode...), Env: helperEnv}
	p, err := Start(spec, &Output{Stdout: io.Discard, Stderr: io.Discard})
	if err != nil {
		tb.Fatalf("Start: %v", err)
	}
	tb.Cleanup(func() { _ = p.Kill() })
	return p
}

// scanCount returns how many times s has read /proc (on Linux) or a
// process (elsewhere).
func (s *Sampler) scanCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.scans
}

// TestSamplerBusyChild: a replica that keeps a core busy reads as busy
// between two readings, and its memory shows.
func TestSamplerBusyChild(t *testing.T) {
	p := startGroup(t, "spin")
	s := NewSampler(100 * time.Millisecond)
	// The first reading averages over a life that has barely begun, mostly
	// the runtime starting; the later ones measure the spinning.
	s.Sample(p.Pid())
	used0, since := cpuSeconds(p.Pid()), time.Now()
	var u Usage
	want := 50.0
	testutil.WaitFor(t, 10*time.Second, "CPU of a spinning replica", func() bool {
		u = s.Sample(p.Pid())
		// On a busy machine the spinner gets less than a core: it must
		// read as at least half as busy as the kernel says it was, and
		// busier than an idle process.
		if used := cpuSeconds(p.Pid()); used0 >= 0 && used >= 0 && time.Since(since) > 500*time.Millisecond {
			got := 100 * (used - used0) / time.Since(since).Seconds()
			want = max(5, min(50, got/2))
		}
		return s.scanCount() > 1 && u.CPUPercent >= want && u.RSSBytes > 0
	})
	t.Logf("%.0f%% CPU read, %.0f%% wanted", u.CPUPercent, want)
}

// cpuSeconds is the CPU time pid has used, as the kernel counts it in
// /proc (Linux), or -1 where it cannot be read.
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return -1
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return -1
	}
	// utime and stime, in clock ticks of 1/100 s, follow the state and
	// ten other fields.
	utime, err1 := strconv.ParseFloat(f[11], 64)
	stime, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return -1
	}
	return (utime + stime) / 100
}

func TestSamplerCaches(t *testing.T) {
	tests := []struct {
		name      string
		maxAge    time.Duration
		age       time.Duration // how much older the first reading is made to look
		wantFresh bool
	}{
		{"within maxAge", time.Hour, 0, false},
		{"just within maxAge", time.Hour, 59 * time.Minute, false},
		{"older than maxAge", time.Hour, 61 * time.Minute, true},
		{"zero maxAge", 0, 0, true},
	}
	p := startGroup(t, "sleep")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewSampler(tt.maxAge)
			if first := s.Sample(p.Pid()); first.RSSBytes == 0 {
				t.Fatalf("first Sample() = %+v, want non-zero RSS", first)
			}
			s.mu.Lock()
			s.now = func() time.Time { return time.Now().Add(tt.age) }
			s.mu.Unlock()
			got := s.Sample(p.Pid())
			s.mu.Lock()
			scans := s.scans
			s.mu.Unlock()
			if fresh := scans == 2; fresh != tt.wantFresh || scans > 2 {
				t.Errorf("after two Sample() calls %d reads were made; fresh = %v, want %v", scans, fresh, tt.wantFresh)
			}
			if got.RSSBytes == 0 {
				t.Errorf("second Sample() = %+v, want non-zero RSS", got)
			}
		})
	}
}

// TestSamplerGoneGroup: a replica that has exited, whether it was sampled
// before or never, reads as zero, as do pgids that are no replica's.
func TestSamplerGoneGroup(t *testing.T) {
	s := NewSampler(0)
	p := startGroup(t, "sleep")
	testutil.WaitFor(t, 10*time.Second, "the replica's memory", func() bool { return s.Sample(p.Pid()).RSSBytes > 0 })
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	if got := s.Sample(p.Pid()); got != (Usage{}) {
		t.Errorf("Sample() of killed group %d = %+v, want zero", p.Pid(), got)
	}

	cmd := exec.Command(os.Args[0], helperCommand("exit", "0")[1:]...)
	cmd.Env = append(os.Environ(), helperEnv...)
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	if got := NewSampler(0).Sample(cmd.Process.Pid); got != (Usage{}) {
		t.Errorf("Sample() of exited pid %d = %+v, want zero", cmd.Process.Pid, got)
	}

	for _, pgid := range []int{0, -1} {
		if got := s.Sample(pgid); got != (Usage{}) {
			t.Errorf("Sample(%d) = %+v, want zero", pgid, got)
		}
	}
}

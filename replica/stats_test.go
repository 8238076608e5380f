package replica

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

func TestSamplerSelf(t *testing.T) {
	s := NewSampler(os.Getpid(), 0)
	u := s.Sample()
	if u.RSSBytes == 0 {
		t.Fatalf("Sample() = %+v, want a non-zero RSS for the test process", u)
	}
	// Spin so that the next sample has CPU time to report.
	for start := time.Now(); time.Since(start) < 300*time.Millisecond; {
	}
	u = s.Sample()
	if u.RSSBytes == 0 || u.CPUPercent <= 0 {
		t.Errorf("Sample() after spinning = %+v, want non-zero RSS and CPU", u)
	}
}

func TestSamplerCaches(t *testing.T) {
	tests := []struct {
		name      string
		maxAge    time.Duration
		age       time.Duration // how old the previous sample is made to look
		wantFresh bool
	}{
		{"within maxAge", time.Hour, 0, false},
		{"just within maxAge", time.Hour, 59 * time.Minute, false},
		{"older than maxAge", time.Hour, 61 * time.Minute, true},
		{"zero maxAge", 0, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewSampler(os.Getpid(), tt.maxAge)
			first := s.Sample()
			if first.RSSBytes == 0 {
				t.Fatalf("first Sample() = %+v, want non-zero RSS", first)
			}
			// A marker no real sample returns shows whether the next
			// call reused the cached value.
			marker := Usage{CPUPercent: -42, RSSBytes: 1}
			s.mu.Lock()
			s.last = marker
			s.at = time.Now().Add(-tt.age)
			s.mu.Unlock()
			got := s.Sample()
			if fresh := got != marker; fresh != tt.wantFresh {
				t.Errorf("Sample() = %+v; fresh = %v, want %v", got, fresh, tt.wantFresh)
			}
		})
	}
}

func TestSamplerExitedProcess(t *testing.T) {
	cmd := exec.Command(os.Args[0], helperCommand("exit", "0")[1:]...)
	cmd.Env = append(os.Environ(), helperEnv...)
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	if got := NewSampler(cmd.Process.Pid, 0).Sample(); got != (Usage{}) {
		t.Errorf("Sample() of exited pid %d = %+v, want zero", cmd.Process.Pid, got)
	}
}

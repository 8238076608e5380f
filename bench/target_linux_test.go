package main

import (
	"os"
	"testing"
	"time"
)

func TestProcReadingsOfThisProcess(t *testing.T) {
	self := &target{pid: os.Getpid()}
	// Spin until the clock ticks show it: on a busy machine 100 ms of
	// wall time may be less of CPU.
	before := self.cpuTime()
	for end := time.Now().Add(10 * time.Second); self.cpuTime()-before < 50*time.Millisecond; {
		if time.Now().After(end) {
			t.Fatalf("cpuTime grew by %s in 10 s of spinning", self.cpuTime()-before)
		}
	}
	if rss := self.peakRSS(); rss < 1<<20 {
		t.Errorf("peakRSS() = %d bytes", rss)
	}
	if n := self.openFiles(); n < 3 {
		t.Errorf("openFiles() = %d, want stdin, stdout and stderr at least", n)
	}
	gone := &target{pid: 1 << 30}
	if gone.cpuTime() != 0 || gone.peakRSS() != 0 || gone.openFiles() != -1 {
		t.Error("readings of a process that does not exist are not zero")
	}
}

func TestCheckCommon(t *testing.T) {
	for _, c := range []struct {
		sent, ok int64
		rss      int64
		unmet    int
	}{
		{1000, 995, 100 << 20, 0},
		{1000, 989, 100 << 20, 1},
		{0, 0, 100 << 20, 1}, // nothing sent proves nothing
		{1000, 1000, 301 << 20, 1},
	} {
		r := attackRow{legit: legitResult{sent: c.sent, ok: c.ok}, rss: c.rss}
		r.checkCommon(99, 300<<20)
		if len(r.met) != c.unmet {
			t.Errorf("%d of %d, RSS %d MB: unmet %v, want %d", c.ok, c.sent, c.rss>>20, r.met, c.unmet)
		}
	}
}

package replica

import (
	"strings"
	"testing"
	"time"
)

// TestSamplerCountsTheProcessGroup: a replica that forks a worker holding
// 64 MiB reads as at least that much, though its own process is small.
func TestSamplerCountsTheProcessGroup(t *testing.T) {
	c := newCapture()
	p := startHelper(t, c, "spawnhog")
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(c.stdout.String(), "ready") {
		if time.Now().After(deadline) {
			t.Fatalf("the worker did not start: %q", c.stdout.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	u := NewSampler(p.Pid(), 0).Sample()
	if u.RSSBytes < 64<<20 {
		t.Fatalf("RSS of the group = %d bytes, want at least the worker's 64 MiB", u.RSSBytes)
	}
	_, own, ok := groupUsage(-1)
	if ok || own != 0 {
		t.Errorf("a group with no members: ok=%v rss=%d", ok, own)
	}
}

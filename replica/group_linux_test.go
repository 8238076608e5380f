package replica

import (
	"strings"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/testutil"
)

// TestSamplerCountsTheProcessGroup: a replica that forks a worker holding
// 64 MiB reads as at least that much, though its own process is small.
func TestSamplerCountsTheProcessGroup(t *testing.T) {
	c := newCapture()
	p := startHelper(t, c, "spawnhog")
	testutil.WaitFor(t, 20*time.Second, "the worker to start", func() bool { return strings.Contains(c.stdout.String(), "ready") })
	u := NewSampler(p.Pid(), 0).Sample()
	if u.RSSBytes < 64<<20 {
		t.Fatalf("RSS of the group = %d bytes, want at least the worker's 64 MiB", u.RSSBytes)
	}
	_, own, ok := groupUsage(-1)
	if ok || own != 0 {
		t.Errorf("a group with no members: ok=%v rss=%d", ok, own)
	}
}

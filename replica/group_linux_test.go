package replica

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/testutil"
)

// TestSamplerCountsTheProcessGroup: a replica that forks a worker holding
// 64 MiB reads as at least that much, though its own process is small, and
// its tasks are its own threads and the worker's.
func TestSamplerCountsTheProcessGroup(t *testing.T) {
	p := startGroup(t, "spawnhog")
	s := NewSampler(0)
	var u Usage
	testutil.WaitFor(t, 20*time.Second, "the worker's 64 MiB in the group's RSS", func() bool {
		u = s.Sample(p.Pid())
		return u.RSSBytes >= 64<<20
	})
	own, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", p.Pid()))
	if err != nil {
		t.Fatal(err)
	}
	if u.Tasks <= len(own) {
		t.Errorf("Tasks = %d, want more than the leader's own %d threads (the worker has some too)", u.Tasks, len(own))
	}
}

// TestSamplerOneScanForAllGroups: two replicas are answered from one read
// of /proc until it is maxAge old, and then from one more.
func TestSamplerOneScanForAllGroups(t *testing.T) {
	a, b := startGroup(t, "hog", "8"), startGroup(t, "hog", "16")
	ready := NewSampler(0)
	testutil.WaitFor(t, 20*time.Second, "both replicas' memory", func() bool {
		return ready.Sample(a.Pid()).RSSBytes >= 8<<20 && ready.Sample(b.Pid()).RSSBytes >= 16<<20
	})

	s := NewSampler(time.Hour)
	clock := time.Now()
	s.now = func() time.Time { return clock }
	ua, ub := s.Sample(a.Pid()), s.Sample(b.Pid())
	if ua.RSSBytes < 8<<20 || ub.RSSBytes < 16<<20 {
		t.Errorf("Sample() = %+v and %+v, want at least 8 and 16 MiB", ua, ub)
	}
	if again := s.Sample(a.Pid()); again != ua {
		t.Errorf("Sample() within maxAge = %+v, want the cached %+v", again, ua)
	}
	if n := s.scanCount(); n != 1 {
		t.Errorf("three Sample() calls for two groups within maxAge made %d scans, want 1", n)
	}

	s.mu.Lock()
	clock = clock.Add(time.Hour) // maxAge old: the next call scans again
	s.mu.Unlock()
	if u := s.Sample(b.Pid()); u.RSSBytes < 16<<20 {
		t.Errorf("Sample() after maxAge = %+v, want at least 16 MiB", u)
	}
	s.Sample(a.Pid())
	if n := s.scanCount(); n != 2 {
		t.Errorf("after maxAge, two more Sample() calls made %d scans in all, want 2", n)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, pid := range []int{a.Pid(), b.Pid()} {
		if g := s.state.groups[pid]; g == nil || !g.seen {
			t.Errorf("group %d in the second scan = %+v, want one seen in the first too", pid, g)
		}
	}
}

// TestSamplerForgetsGoneGroups: a group the latest scan did not find is
// dropped from the sampler's map, and one whose pgid another leader took
// over does not inherit its CPU time.
func TestSamplerForgetsGoneGroups(t *testing.T) {
	s := NewSampler(0)
	gone, kept := startGroup(t, "sleep"), startGroup(t, "sleep")
	testutil.WaitFor(t, 10*time.Second, "both replicas' memory", func() bool {
		return s.Sample(gone.Pid()).RSSBytes > 0 && s.Sample(kept.Pid()).RSSBytes > 0
	})
	if err := gone.Kill(); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	s.state.groups[kept.Pid()].start++ // as if another leader reused the pgid
	s.mu.Unlock()
	if got := s.Sample(gone.Pid()); got != (Usage{}) {
		t.Errorf("Sample() of killed group = %+v, want zero", got)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if g, ok := s.state.groups[gone.Pid()]; ok {
		t.Errorf("killed group %d still kept: %+v", gone.Pid(), g)
	}
	if g := s.state.groups[kept.Pid()]; g == nil || g.seen {
		t.Errorf("group %d under a new leader = %+v, want present and not seen before", kept.Pid(), g)
	}
}

// BenchmarkSample8Groups samples eight replicas, as a status call does: the
// shared cache reads /proc once for all eight, against eight reads with a
// zero maxAge.
func BenchmarkSample8Groups(b *testing.B) {
	var pids []int
	for range 8 {
		pids = append(pids, startGroup(b, "sleep").Pid())
	}
	for _, bc := range []struct {
		name   string
		maxAge time.Duration
	}{{"shared", time.Second}, {"uncached", 0}} {
		b.Run(bc.name, func(b *testing.B) {
			s := NewSampler(bc.maxAge)
			clock := time.Now()
			s.now = func() time.Time { return clock }
			for b.Loop() {
				clock = clock.Add(time.Second) // the previous scan is stale
				for _, pid := range pids {
					if s.Sample(pid).RSSBytes == 0 {
						b.Fatalf("replica %d reads zero", pid)
					}
				}
			}
			b.ReportMetric(float64(s.scanCount())/float64(b.N), "scans/op")
		})
	}
}

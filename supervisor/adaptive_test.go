//go:build unix

package supervisor

import (
	"testing"

	"github.com/mattingctl/mattingctl/balancer"
	"github.com/mattingctl/mattingctl/internal/control"
)

// TestStatusShowsTheLimits: under --max-inflight auto:1-8 status names the
// bounds, the upper one as max_inflight, and each ready replica's learned
// limit, from the lower bound; under a fixed cap, each replica's limit is
// the cap.
func TestStatusShowsTheLimits(t *testing.T) {
	s := startTestSupervisor(t, 2, func(o *Options) {
		o.MaxInflight, o.AdaptiveInflight = 0, balancer.InflightBounds{Min: 1, Max: 8}
	}, "serve")
	st := s.Status()
	if st.AdaptiveInflight == nil || *st.AdaptiveInflight != (control.InflightBounds{Min: 1, Max: 8}) || st.MaxInflight != 8 {
		t.Errorf("auto:1-8: adaptive_inflight %v, max_inflight %d; want 1-8 and 8", st.AdaptiveInflight, st.MaxInflight)
	}
	for _, r := range st.Replicas {
		if r.State == control.Ready && (r.Limit != 1 || r.MaxInflight != 8) {
			t.Errorf("%s: limit %d, max_inflight %d; want 1 (the lower bound, nothing learned yet) and 8", r.Name, r.Limit, r.MaxInflight)
		}
	}
	fixed := startTestSupervisor(t, 1, func(o *Options) { o.MaxInflight = 3 }, "serve")
	st = fixed.Status()
	if st.AdaptiveInflight != nil || st.MaxInflight != 3 || st.Replicas[0].Limit != 3 {
		t.Errorf("--max-inflight 3: adaptive_inflight %v, max_inflight %d, limit %d; want none, 3, 3", st.AdaptiveInflight, st.MaxInflight, st.Replicas[0].Limit)
	}
}

// TestAdaptiveFileBudget: the descriptor budget under auto plans for the
// upper bound of the caps, which any replica may learn.
func TestAdaptiveFileBudget(t *testing.T) {
	o := upDefaults(4)
	o.MaxInflight, o.AdaptiveInflight = 0, balancer.InflightBounds{Min: 1, Max: 32}
	c, err := o.resolve()
	if err != nil {
		t.Fatal(err)
	}
	if c.budget.MaxInflight != 32 {
		t.Errorf("budget planned for %d in flight per replica, want the upper bound 32", c.budget.MaxInflight)
	}
}

package e2e

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/control"
)

// TestAdaptiveLimitLearnsTheCurve: under --max-inflight auto, two
// replicas of a model server that serves best at 4 requests in flight
// (fakemodel -curve 4) start at 1 and, under a load past their capacity,
// settle within half again of 4, as `status` shows them (a LIMIT column),
// `status --json` (limit) and /metrics (mattingctl_replica_limit); every
// request is answered. A rolling restart's new processes start at 1
// again: they learn afresh.
func TestAdaptiveLimitLearnsTheCurve(t *testing.T) {
	t.Parallel()
	in := start(t, 2, "--max-inflight", "auto", "--", fakemodel, "-curve", "4", "-service", "100ms")
	st := in.waitReady(2)
	if st.AdaptiveInflight == nil || *st.AdaptiveInflight != (control.InflightBounds{Min: 1, Max: 64}) || st.MaxInflight != 64 {
		t.Fatalf("status: adaptive_inflight %v, max_inflight %d; want 1-64 and 64", st.AdaptiveInflight, st.MaxInflight)
	}
	for _, r := range st.Replicas {
		if r.Limit != 1 {
			t.Fatalf("%s starts with limit %d, want the lower bound 1", r.Name, r.Limit)
		}
	}
	load := startLoad(in.url("/"), 24)
	time.Sleep(4 * time.Second) // slow start and the first cut
	var limits []int
	for range 16 {
		for _, r := range in.status().Replicas {
			limits = append(limits, r.Limit)
		}
		time.Sleep(250 * time.Millisecond)
	}
	table, _, code := in.ctl("status")
	metrics := scrapeLimits(t, in.status().Admin)
	ok, failures, _ := load.finish()
	if len(failures) > 0 || ok == 0 {
		t.Fatalf("%d answered, %d failed: %v", ok, len(failures), failures[:min(len(failures), 5)])
	}
	slices.Sort(limits)
	if m := limits[len(limits)/2]; m < 2 || m > 6 {
		t.Errorf("median limit %d (all: %v), want within half again of 4", m, limits)
	}
	t.Logf("limits under load: %v", limits)
	if code != 0 || !strings.Contains(table, "LIMIT") {
		t.Errorf("status (exit %d) shows no LIMIT column:\n%s", code, table)
	}
	for _, name := range []string{"replica-1", "replica-2"} {
		if v, ok := metrics[name]; !ok || v < 1 || v > 64 {
			t.Errorf("/metrics: mattingctl_replica_limit{replica=%q} = %v (present %v), want 1-64", name, v, ok)
		}
	}

	if _, errOut, code := in.ctl("restart"); code != 0 {
		t.Fatalf("restart: exit %d: %s", code, errOut)
	}
	for _, r := range in.waitReady(2).Replicas {
		if r.Limit != 1 {
			t.Errorf("after a rolling restart, %s's new process has limit %d, want 1: it learns afresh", r.Name, r.Limit)
		}
	}
}

// scrapeLimits reads mattingctl_replica_limit by replica from the admin
// listener's /metrics.
func scrapeLimits(t *testing.T, admin string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	if f := scrape(t, admin)["mattingctl_replica_limit"]; f != nil {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "replica" {
					out[l.GetValue()] = m.GetGauge().GetValue()
				}
			}
		}
	}
	return out
}

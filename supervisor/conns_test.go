//go:build unix

package supervisor

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/control"
	"github.com/mattingctl/mattingctl/internal/fdbudget"
)

// TestOptionsFileBudget: resolve plans the limit in force, with the admin
// listener's cap (none with --admin none) and the control socket's.
func TestOptionsFileBudget(t *testing.T) {
	base := upDefaults(4)
	base.MaxInflight = 8
	o, err := base.resolve()
	if err != nil {
		t.Fatal(err)
	}
	want, _ := fdbudget.Plan(fdbudget.Want{Replicas: 4, MaxInflight: 8, AdminConns: 64, ControlConns: control.MaxConns}, fdbudget.OpenFileLimit())
	if o.MaxConns != want.MaxConns || o.MaxUpgraded != want.MaxUpgraded || o.MaxConns < fdbudget.MinDefault || o.MaxUpgraded < 1 || o.budget != want {
		t.Errorf("MaxConns %d, MaxUpgraded %d, budget %+v; want %+v from ulimit -n %d", o.MaxConns, o.MaxUpgraded, o.budget, want, fdbudget.OpenFileLimit())
	}
	off := upDefaults(4)
	off.MaxInflight, off.Admin = 8, AdminOff
	o, err = off.resolve()
	if err != nil || o.budget.AdminConns != 0 {
		t.Errorf("--admin none: budget %+v, %v; want no admin connections kept", o.budget, err)
	}
	for _, tt := range []struct {
		set  func(*Options)
		flag string
	}{
		{func(o *Options) { o.MaxConns = -5 }, "--max-conns"},
		{func(o *Options) { o.MaxUpgraded = -5 }, "--max-upgraded"},
		{func(o *Options) { o.AdminMaxConns = 0 }, "--admin-max-conns must be at least 1"},
	} {
		o := upDefaults(1)
		tt.set(&o)
		if _, err := o.resolve(); err == nil || !strings.Contains(err.Error(), tt.flag) {
			t.Errorf("error %v, want one naming %s", err, tt.flag)
		}
	}
}

// TestScaleBounds: a count under 1, and one that does not fit the
// open-file limit beside the caps, are refused in one line, and nothing
// changes.
func TestScaleBounds(t *testing.T) {
	s := startTestSupervisor(t, 1, func(*Options) {}, "serve")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, n := range []int{0, -1} {
		if _, err := s.Scale(ctx, n); err == nil || err.Error() != control.CheckReplicaCount(n).Error() {
			t.Errorf("scale %d: %v", n, err)
		}
	}
	// Caps that leave room for 1 replica and not 2.
	limit := fdbudget.OpenFileLimit()
	b := s.cfg().budget
	b.MaxConns, b.MaxUpgraded = 0, 0
	b.MaxConns = int(limit - b.Need(2) + 1)
	s.cfg().budget = b
	_, err := s.Scale(ctx, 2)
	if err == nil || !strings.HasPrefix(err.Error(), "cannot scale to 2: that needs") || !strings.Contains(err.Error(), "ulimit -n is") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("scale past the open-file limit: %v", err)
	}
	if st := s.Status(); st.Desired != 1 || len(st.Replicas) != 1 {
		t.Errorf("a refused scale changed the instance: desired %d, %d replicas", st.Desired, len(st.Replicas))
	}
}

//go:build unix

package supervisor

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/balancer"
)

func TestAutoscaleOptionsChecked(t *testing.T) {
	for _, tt := range []struct {
		name string
		set  func(*Options)
		want string
	}{
		{"max under min", func(o *Options) { o.Replicas, o.MaxReplicas = 5, 2 }, "--replicas 5:2: MAX must be at least MIN, such as 2:5"},
		{"negative max", func(o *Options) { o.MaxReplicas = -1 }, "MAX must be at least MIN"},
		{"no cap", func(o *Options) { o.MaxReplicas, o.MaxInflight, o.AdaptiveInflight = 4, 0, balancer.InflightBounds{} }, "--replicas 1:4 needs a cap on requests in flight"},
		{"up delay 0", func(o *Options) { o.MaxReplicas, o.ScaleUpDelay = 4, 0 }, "--scale-up-delay"},
		{"down delay 0", func(o *Options) { o.MaxReplicas, o.ScaleDownDelay = 4, 0 }, "--scale-down-delay"},
		{"ports", func(o *Options) { o.MaxReplicas, o.BasePort = 100, 65500 }, "--replicas 1:100: replica ports 65500-65599 would pass 65535"},
	} {
		o := upDefaults(1)
		tt.set(&o)
		if _, err := o.resolve(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want it to contain %q", tt.name, err, tt.want)
		}
	}
	o := upDefaults(2)
	o.MaxReplicas = 6
	if _, err := o.resolve(); err != nil {
		t.Errorf("--replicas 2:6: %v", err)
	}
}

// TestRoomReadsTheFreeMemory: with the free memory faked low, no replica
// fits, and the reason gives the free memory and what a replica needs;
// with plenty, the GPUs listed bound it, one replica each.
func TestRoomReadsTheFreeMemory(t *testing.T) {
	free := uint64(100 << 20)
	s := startTestSupervisor(t, 1, func(o *Options) {
		o.MaxReplicas = 4
		o.MemAvailable = func() (uint64, error) { return free, nil }
	}, "serve")
	r := s.room(1, 3)
	if r.fits != 0 || !strings.HasPrefix(r.why, "no room: 100 MiB free, a replica needs ") {
		t.Errorf("100 MiB free: %+v, want none to fit, and why", r)
	}
	free = 64 << 30
	if r = s.room(1, 3); r.fits != 3 || r.why != "" {
		t.Errorf("64 GiB free: %+v, want all 3 to fit", r)
	}
	s.cfg().GPUs = []string{"0", "1"}
	if r = s.room(1, 3); r.fits != 1 || !strings.Contains(r.why, "room for 1 more: --gpus lists 2 GPUs") {
		t.Errorf("2 GPUs: %+v, want 1 more to fit, and why", r)
	}
	s.cfg().GPUs, s.cfg().CPUs = nil, [][]int{{0}}
	if r = s.room(1, 3); r.fits != 0 || !strings.Contains(r.why, "no room: --cpus has 1 CPU sets") {
		t.Errorf("1 CPU set: %+v, want none to fit", r)
	}
	s.cfg().CPUs = nil
	s.cfg().MemAvailable = func() (uint64, error) { return 0, errors.New("no /proc") }
	if r = s.room(1, 3); r.fits != 3 {
		t.Errorf("free memory unreadable: %+v, want the check skipped", r)
	}
}

// TestScaleByHandTurnsAutoscalingOff: a scale by hand says that
// autoscaling is off, and a decision of the autoscaler's after it is
// refused, so the count set by hand stays.
func TestScaleByHandTurnsAutoscalingOff(t *testing.T) {
	s := startTestSupervisor(t, 1, func(o *Options) { o.MaxReplicas = 3 }, "serve")
	if a := s.Status().Autoscale; a == nil || !a.On || a.Min != 1 || a.Max != 3 || a.Target != 1 {
		t.Fatalf("status: autoscale %+v, want on, 1:3, target 1", a)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := s.Scale(ctx, 2)
	if err != nil || !strings.Contains(res.AutoscaleOff, "autoscaling (--replicas 1:3) is off: the count stays at 2") {
		t.Fatalf("scale 2: %+v, %v; want it to say autoscaling is off", res, err)
	}
	if _, err := s.scale(ctx, 3, &autoscaleVerdict{target: 3, want: 3, reason: "test"}); !errors.Is(err, errAutoscaleOff) {
		t.Errorf("the autoscaler's scale after one by hand: %v, want errAutoscaleOff", err)
	}
	st := s.Status()
	if st.Desired != 2 || st.Autoscale.On {
		t.Errorf("desired %d, autoscale %+v; want 2 and off", st.Desired, st.Autoscale)
	}
	if res, err = s.Scale(ctx, 1); err != nil || res.AutoscaleOff != "" {
		t.Errorf("a second scale by hand: %+v, %v; want no word on autoscaling, already off", res, err)
	}
}

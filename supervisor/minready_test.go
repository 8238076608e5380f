package supervisor

import (
	"context"
	"testing"
	"time"
)

// TestScaleBelowMinReadyWarns: scaling to fewer replicas than --min-ready
// is done, as asked, and the result says what it means for /readyz.
func TestScaleBelowMinReadyWarns(t *testing.T) {
	s := startTestSupervisor(t, 2, func(o *Options) { o.MinReady = 2 }, "serve")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := s.Scale(ctx, 1)
	if err != nil || len(res.Stopped) != 1 {
		t.Fatalf("scale 2 -> 1: %+v, %v", res, err)
	}
	want := "scaling to 1, fewer than --min-ready 2: /readyz answers 503 while fewer than 2 replicas are ready"
	if len(res.Warnings) != 1 || res.Warnings[0] != want {
		t.Errorf("warnings = %q, want [%q]", res.Warnings, want)
	}
	if rd := s.Readiness(); rd.OK() {
		t.Errorf("readiness with 1 of --min-ready 2: %+v", rd)
	}
	res, err = s.Scale(ctx, 2)
	if err != nil || len(res.Warnings) != 0 {
		t.Errorf("scale back to --min-ready: %+v, %v", res, err)
	}
}

package e2e

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/control"
	"github.com/mattingctl/mattingctl/internal/testutil"
)

// readyCount is the replicas in rotation in st.
func readyCount(st control.Status) int {
	n := 0
	for _, r := range st.Replicas {
		if r.State == control.Ready {
			n++
		}
	}
	return n
}

// TestAutoscaleUpAndDown: --replicas 1:4 over a model server that
// completes 10 requests a second (100ms each, one at a time) starts at 1;
// eight clients sending back to back keep requests queued, and within a
// few up delays it runs 4 (the upper bound); once they stop it steps back
// down to 1 after the down delay, draining each replica. No request
// fails. status shows the bounds and the last decision with its reason,
// `scale 2` turns autoscaling off and says so.
func TestAutoscaleUpAndDown(t *testing.T) {
	t.Parallel()
	in := start(t, 4, "--replicas", "1:4", "--max-inflight", "1", "--scale-up-delay", "1s", "--scale-down-delay", "3s",
		"--", fakemodel, "-service", "100ms")
	st := in.waitReady(1)
	if a := st.Autoscale; a == nil || a.Min != 1 || a.Max != 4 || !a.On || st.Desired != 1 {
		t.Fatalf("status at start: autoscale %+v, desired %d; want 1:4, on, at 1", st.Autoscale, st.Desired)
	}
	load := startLoad(in.url("/"), 8)
	began := time.Now()
	testutil.WaitFor(t, 40*time.Second, "4 replicas ready under load", func() bool {
		st = in.status()
		return readyCount(st) == 4
	})
	t.Logf("4 ready %v after the load began; last decision: %s", time.Since(began).Round(100*time.Millisecond), st.Autoscale.Last)
	if a := st.Autoscale; !strings.Contains(a.Last, "→") || !strings.Contains(a.Last, "requests queued for") {
		t.Errorf("last decision %q, want a scale up and its reason", a.Last)
	}
	table, _, code := in.ctl("status")
	if code != 0 || !strings.Contains(table, "autoscale 1:4 target 4") {
		t.Errorf("status (exit %d) shows no autoscale line with target 4:\n%s", code, table)
	}
	ok, failures, _ := load.finish()
	if len(failures) > 0 || ok == 0 {
		t.Fatalf("%d answered, %d failed: %v", ok, len(failures), failures[:min(len(failures), 5)])
	}
	stopped := time.Now()
	testutil.WaitFor(t, 40*time.Second, "back to 1 replica once idle", func() bool {
		st = in.status()
		return st.Desired == 1 && len(st.Replicas) == 1 && readyCount(st) == 1
	})
	t.Logf("back to 1 %v after the load stopped (down delay 3s); last decision: %s", time.Since(stopped).Round(100*time.Millisecond), st.Autoscale.Last)
	if d := time.Since(stopped); d < 3*time.Second {
		t.Errorf("back to 1 after %v, before the down delay", d)
	}
	if st.Failed != 0 || st.Rejected != 0 {
		t.Errorf("status: failed %d, rejected %d, want none", st.Failed, st.Rejected)
	}

	out, errOut, code := in.ctl("scale", "2")
	if code != 0 || !strings.Contains(out, "autoscaling (--replicas 1:4) is off") {
		t.Fatalf("scale 2: exit %d, out %q, err %q; want it to say autoscaling is off", code, out, errOut)
	}
	in.waitReady(2)
	time.Sleep(5 * time.Second) // past the down delay: a fixed count stays
	if st = in.status(); st.Desired != 2 || st.Autoscale == nil || st.Autoscale.On {
		t.Errorf("after scale 2: desired %d, autoscale %+v; want 2 and off", st.Desired, st.Autoscale)
	}
}

// TestAutoscaleNoRoom: with the free memory faked (a test hook) below what
// a replica needs, requests queue for the up delay and more, and no
// replica is started; status says why ("no room: ... free, a replica
// needs ..."), and every request is still answered.
func TestAutoscaleNoRoom(t *testing.T) {
	t.Parallel()
	port := testutil.FreePorts(t, 12)
	in := launchEnv(t, []string{"MATTINGCTL_TEST_MEM_AVAILABLE=" + strconv.Itoa(100<<20)}, mattingctl, t.TempDir(), port,
		"up", "--port", strconv.Itoa(port), "--host", "127.0.0.1", "--admin", "127.0.0.1:0",
		"--replicas", "1:4", "--max-inflight", "1", "--scale-up-delay", "1s", "--scale-down-delay", "3s",
		"--", fakemodel, "-service", "100ms")
	in.waitReady(1)
	load := startLoad(in.url("/"), 8)
	var st control.Status
	testutil.WaitFor(t, 20*time.Second, "a decision held back for room", func() bool {
		st = in.status()
		return st.Autoscale != nil && strings.Contains(st.Autoscale.Last, "no room")
	})
	time.Sleep(3 * time.Second) // several up delays more
	st = in.status()
	ok, failures, _ := load.finish()
	if len(failures) > 0 || ok == 0 {
		t.Fatalf("%d answered, %d failed: %v", ok, len(failures), failures[:min(len(failures), 5)])
	}
	if st.Desired != 1 || len(st.Replicas) != 1 {
		t.Errorf("desired %d, %d replicas listed; want 1: no replica started without room", st.Desired, len(st.Replicas))
	}
	// Not the target: it is what the load asks for at the last reading,
	// which a busy machine's slow clients can leave at 1 for a moment.
	a := st.Autoscale
	if !strings.Contains(a.Last, "held at 1, wants ") || !strings.Contains(a.Last, "no room: 100 MiB free, a replica needs") {
		t.Errorf("autoscale %+v; want the last decision held at 1 for no room, with the free memory", a)
	}
	t.Logf("last decision: %s", a.Last)
}

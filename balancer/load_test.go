package balancer

import (
	"net/http"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/testutil"
)

// TestLoadCountsArrivalsQueueAndCompletions: with a cap of 1 and one
// request held, a second waits in the queue; Load shows both arrived,
// one in flight, one queued for as long as it has waited, one slot, and
// after the gate opens both completed and the service time timed.
func TestLoadCountsArrivalsQueueAndCompletions(t *testing.T) {
	g := newGate()
	defer g.open()
	be := newTestBackend(t, 1, g.handler)
	bal, srv := newTestBalancer(t, testOptions(func(o *Options) { o.MaxInflight = 1; o.Queue = 10 }), be.Backend)

	answers := make(chan answer, 2)
	go func() { answers <- send(srv.Client(), srv.URL+"/") }()
	g.waitArrivals(t, 1)
	go func() { answers <- send(srv.Client(), srv.URL+"/") }()
	testutil.WaitFor(t, settle, "one queued", func() bool { return bal.Stats().Queued == 1 })
	time.Sleep(50 * time.Millisecond)
	l := bal.Load(time.Now())
	if l.Arrived != 2 || l.Completed != 0 || l.Queued != 1 || l.InFlight != 1 || l.Backends != 1 || l.Slots != 1 || l.ServiceTime != 0 {
		t.Errorf("Load while one waits = %+v, want 2 arrived, 0 completed, 1 queued, 1 in flight, 1 backend, 1 slot, no service time", l)
	}
	if l.QueueWait < 50*time.Millisecond || l.QueueWait > 10*time.Second {
		t.Errorf("QueueWait = %v, want the time the queued request has waited (at least 50ms)", l.QueueWait)
	}
	g.open()
	for range 2 {
		if a := <-answers; a.code != http.StatusOK {
			t.Fatalf("answer %+v, want 200", a)
		}
	}
	l = bal.Load(time.Now())
	if l.Arrived != 2 || l.Completed != 2 || l.Queued != 0 || l.QueueWait != 0 || l.InFlight != 0 || l.ServiceTime <= 0 {
		t.Errorf("Load after both = %+v, want 2 arrived and completed, nothing waiting, a service time", l)
	}
}

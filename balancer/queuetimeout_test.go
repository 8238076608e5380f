package balancer

import (
	"net/http"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/testutil"
)

// TestQueueTimeoutFollowsUpstreamTimeout: a nil QueueTimeout is the
// UpstreamTimeout value; a zero one is kept, not replaced by it.
func TestQueueTimeoutFollowsUpstreamTimeout(t *testing.T) {
	o := testOptions(func(o *Options) { o.QueueTimeout, o.UpstreamTimeout = nil, 7*time.Second })
	if got := New(o).cfg().queueTimeout(); got != 7*time.Second {
		t.Errorf("nil QueueTimeout = %s, want the UpstreamTimeout value 7s", got)
	}
	o.QueueTimeout = new(time.Duration(0))
	if got := New(o).cfg().queueTimeout(); got != 0 {
		t.Errorf("QueueTimeout 0 became %s", got)
	}
}

// TestQueueTimeoutZeroMeansNoLimit: with a zero QueueTimeout a queued
// request waits until a backend has room, however long that takes.
func TestQueueTimeoutZeroMeansNoLimit(t *testing.T) {
	g := newGate()
	defer g.open()
	be := newTestBackend(t, 1, g.handler)
	bal, srv := newTestBalancer(t, testOptions(func(o *Options) { o.MaxInflight = 1; o.Queue = 10 }), be.Backend)
	go send(srv.Client(), srv.URL)
	g.waitArrivals(t, 1)
	answered := make(chan answer, 1)
	go func() { answered <- send(srv.Client(), srv.URL) }()
	testutil.WaitFor(t, settle, "1 queued", func() bool { return bal.Stats().Queued == 1 })
	time.Sleep(500 * time.Millisecond) // queued for a while: no timer fires
	select {
	case a := <-answered:
		t.Fatalf("answered %+v while the backend was still busy", a)
	default:
	}
	g.open()
	if a := <-answered; a.code != http.StatusOK {
		t.Fatalf("answer %+v, want 200 once the backend had room", a)
	}
}

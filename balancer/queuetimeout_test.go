package balancer

import (
	"net/http"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/testutil"
)

// TestQueueTimeoutZeroMeansNoLimit: a zero QueueTimeout is kept, not
// replaced by a default, and a queued request waits until a backend has
// room, however long that takes.
func TestQueueTimeoutZeroMeansNoLimit(t *testing.T) {
	if got := New(Options{}).opts.QueueTimeout; got != 0 {
		t.Fatalf("QueueTimeout 0 became %s", got)
	}
	g := newGate()
	defer g.open()
	be := newTestBackend(t, 1, g.handler)
	bal, srv := newTestBalancer(t, Options{MaxInflight: 1, QueueSize: 10}, be.Backend)
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

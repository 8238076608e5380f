package balancer

import (
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/testutil"
)

// TestReconfigureUnderLoad: limits and policy changed over and over while
// clients send requests, fixed caps and learned ones in turn, with the
// upstream transport swapped by changed timeouts: every request is
// answered 200 by a backend, exactly once, and no backend ever holds more
// than the largest cap in force while it was served. Run with -race.
func TestReconfigureUnderLoad(t *testing.T) {
	var inflight, most atomic.Int64
	slow := func(w http.ResponseWriter, r *http.Request) {
		n := inflight.Add(1)
		defer inflight.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		time.Sleep(time.Millisecond)
		io.WriteString(w, "ok")
	}
	b1, b2, b3 := newTestBackend(t, 1, slow), newTestBackend(t, 2, slow), newTestBackend(t, 3, slow)
	opts := testOptions(func(o *Options) {
		o.MaxInflight, o.Queue, o.QueueTimeout = 4, 1000, new(time.Minute)
	})
	bal, srv := newTestBalancer(t, opts, b1.Backend, b2.Backend, b3.Backend)

	const clients, perClient = 8, 25
	var wg sync.WaitGroup
	var failed atomic.Int64
	client := &http.Client{Timeout: 30 * time.Second}
	for range clients {
		wg.Go(func() {
			for range perClient {
				resp, err := client.Get(srv.URL + "/")
				if err != nil {
					failed.Add(1)
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK || string(body) != "ok" {
					failed.Add(1)
				}
			}
		})
	}
	configs := []func(l *Limits) Policy{
		func(l *Limits) Policy { l.MaxInflight = 2; return &RoundRobin{} },
		func(l *Limits) Policy {
			l.MaxInflight, l.AdaptiveInflight = 0, InflightBounds{Min: 1, Max: 8}
			l.UpstreamTimeout = 2 * time.Minute // a new transport
			return nil
		},
		func(l *Limits) Policy { l.MaxInflight, l.QueueTimeout = 1, new(30*time.Second); return LeastConn{} },
		func(l *Limits) Policy { l.ConnectTimeout = 2 * time.Second; l.Retries = 1; return Fair{} },
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for i := 0; ; i++ {
		select {
		case <-done:
		default:
			l := bal.cfg().Limits
			p := configs[i%len(configs)](&l)
			if err := bal.Reconfigure(l, p); err != nil {
				t.Fatalf("reconfigure %d: %v", i, err)
			}
			time.Sleep(2 * time.Millisecond)
			continue
		}
		break
	}
	if n := failed.Load(); n != 0 {
		t.Errorf("%d of %d requests failed while the settings changed", n, clients*perClient)
	}
	if got := b1.hits.Load() + b2.hits.Load() + b3.hits.Load(); got != clients*perClient {
		t.Errorf("the backends served %d requests, want %d: none dropped, none twice", got, clients*perClient)
	}
	// The largest cap ever in force was 8 per backend, on 3 backends.
	if m := most.Load(); m > 3*8 {
		t.Errorf("%d requests in flight at once on the backends, more than every cap allowed", m)
	}
}

// TestReconfigureCaps: a fixed cap replaces a learned one at once, and a
// learned one a fixed one, starting at its lower bound; waiting requests
// are dispatched when a larger cap makes room.
func TestReconfigureCaps(t *testing.T) {
	g := newGate()
	b1 := newTestBackend(t, 1, g.handler)
	bal, srv := newTestBalancer(t, testOptions(func(o *Options) {
		o.MaxInflight, o.Queue, o.QueueTimeout = 1, 10, new(time.Minute)
	}), b1.Backend)
	if got := b1.Limit(); got != 1 {
		t.Fatalf("limit %d, want the fixed cap 1", got)
	}
	codes := make(chan int, 3)
	for range 3 {
		go func() {
			resp, err := http.Get(srv.URL + "/")
			if err != nil {
				codes <- 0
				return
			}
			resp.Body.Close()
			codes <- resp.StatusCode
		}()
	}
	g.waitArrivals(t, 1)
	defer g.open()
	testutil.WaitFor(t, settle, "two requests to queue", func() bool { return bal.Stats().Queued == 2 })
	l := bal.cfg().Limits
	l.MaxInflight = 3
	if err := bal.Reconfigure(l, nil); err != nil {
		t.Fatal(err)
	}
	g.waitArrivals(t, 2) // the larger cap took the queued requests at once
	if got := b1.Limit(); got != 3 {
		t.Errorf("limit %d after max-inflight 3", got)
	}
	l.MaxInflight, l.AdaptiveInflight = 0, InflightBounds{Min: 2, Max: 16}
	if err := bal.Reconfigure(l, nil); err != nil {
		t.Fatal(err)
	}
	if got := b1.Limit(); got != 2 {
		t.Errorf("limit %d after auto:2-16, want its lower bound", got)
	}
	g.open()
	for range 3 {
		if c := <-codes; c != http.StatusOK {
			t.Errorf("a request was answered %d", c)
		}
	}
	l.MaxInflight = 5
	if err := bal.Reconfigure(l, nil); err != nil {
		t.Fatal(err)
	}
	if got := b1.Limit(); got != 5 {
		t.Errorf("limit %d after auto -> 5", got)
	}
}

// TestReconfigureRefusesFixed: a limit made into something at New cannot
// change, and the refusal changes nothing.
func TestReconfigureRefusesFixed(t *testing.T) {
	bal := New(testOptions(func(o *Options) { o.MaxInflight = 3 }))
	l := bal.cfg().Limits
	l.MaxBuffer++
	l.SendTimeout = time.Hour
	l.MaxInflight = 9
	err := bal.Reconfigure(l, &RoundRobin{})
	if err == nil || err.Error() != "cannot change on a running balancer: [MaxBuffer SendTimeout]" {
		t.Errorf("error %v", err)
	}
	if o := bal.cfg(); o.MaxInflight != 3 || o.Policy != (LeastConn{}) {
		t.Errorf("a refused change changed max-inflight to %d, the policy to %T", o.MaxInflight, o.Policy)
	}
}

package balancer

import (
	"io"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"
)

// kServer returns a handler that serves k requests at once, each for d,
// and queues the rest inside (as a model server with k workers does).
func kServer(k int, d time.Duration) http.HandlerFunc {
	sem := make(chan struct{}, k)
	return func(w http.ResponseWriter, r *http.Request) {
		sem <- struct{}{}
		time.Sleep(d)
		<-sem
		io.WriteString(w, "ok")
	}
}

// TestAdaptiveLimitLearnsTheBackendsWorkers: two backends that each serve
// 2 requests at once, and queue the rest inside, start at the lower bound
// and, under a load of 16 clients, are held to within half again of 2,
// every request answered.
func TestAdaptiveLimitLearnsTheBackendsWorkers(t *testing.T) {
	var bes []*Backend
	for i := 1; i <= 2; i++ {
		bes = append(bes, newTestBackend(t, i, kServer(2, 40*time.Millisecond)).Backend)
	}
	_, srv := newTestBalancer(t, testOptions(func(o *Options) {
		o.AdaptiveInflight = DefaultAdaptiveInflight
		o.Queue = 100
	}), bes...)
	for _, be := range bes {
		if be.Limit() != 1 {
			t.Fatalf("%s starts at %d, want the lower bound 1", be.Name, be.Limit())
		}
	}
	c := srv.Client()
	c.Transport.(*http.Transport).MaxIdleConnsPerHost = 16
	stop := time.Now().Add(4 * time.Second)
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	limits := map[string][]int64{}
	for range 16 {
		wg.Go(func() {
			for time.Now().Before(stop) {
				code, _, _ := get(t, c, srv.URL)
				mu.Lock()
				codes[code]++
				mu.Unlock()
			}
		})
	}
	wg.Go(func() {
		time.Sleep(2 * time.Second) // slow start and the first cut are over
		for time.Now().Before(stop) {
			mu.Lock()
			for _, be := range bes {
				limits[be.Name] = append(limits[be.Name], be.Limit())
			}
			mu.Unlock()
			time.Sleep(20 * time.Millisecond)
		}
	})
	wg.Wait()
	if len(codes) != 1 || codes[http.StatusOK] == 0 {
		t.Errorf("answers %v, want only 200s", codes)
	}
	for _, be := range bes {
		ls := limits[be.Name]
		in := 0
		for _, l := range ls {
			if l >= 1 && l <= 3 {
				in++
			}
		}
		t.Logf("%s: limits %v", be.Name, ls)
		if in*10 < len(ls)*8 {
			t.Errorf("%s's limit was within [1, 3] %d of %d times, want 80%% or more", be.Name, in, len(ls))
		}
	}
}

// TestAdaptiveLimitIgnoresFailuresAndBrokenResponses: a backend's 5xx,
// and a response not read to its end, are no service times.
func TestAdaptiveLimitIgnoresFailuresAndBrokenResponses(t *testing.T) {
	bal := New(testOptions(func(o *Options) { o.AdaptiveInflight = DefaultAdaptiveInflight }))
	be := NewBackend(1, "replica-1", "127.0.0.1:1")
	bal.Add(be)
	for _, c := range []struct {
		name string
		code int
		full bool
		want int
	}{{"a 503", 503, true, 0}, {"a response broken off", 200, false, 0}, {"a 200 read whole", 200, true, 1}, {"a 404 read whole", 404, true, 2}} {
		start := time.Now() // after the limiter's start: responses from before it are stale
		a := &attempt{b: bal, be: be, start: start, code: c.code, full: c.full}
		bal.mu.Lock()
		be.startLocked(a)
		be.endLocked(a)
		bal.endLimitLocked(a, start.Add(10*time.Millisecond))
		be.inflight.Add(-1)
		n := be.limiter.n
		bal.mu.Unlock()
		if n != c.want {
			t.Errorf("after %s, the window holds %d responses, want %d", c.name, n, c.want)
		}
	}
}

// TestAdaptiveSlots: the predicted wait counts a learned cap as its upper
// bound during slow start, then as the learned limit, not the probe's
// half of it; a fixed cap as itself.
func TestAdaptiveSlots(t *testing.T) {
	bal := New(testOptions(func(o *Options) { o.AdaptiveInflight = InflightBounds{Min: 2, Max: 32} }))
	for i := 1; i <= 2; i++ {
		bal.Add(NewBackend(i, "replica-"+strconv.Itoa(i), "127.0.0.1:1"))
	}
	if got := bal.slotsLocked(); got != 64 {
		t.Errorf("slots in slow start = %d, want 2 × the upper bound 32", got)
	}
	l := bal.pool[0].limiter
	l.slowStart, l.limit, l.cap = false, 10.4, 10
	if got := bal.slotsLocked(); got != 42 {
		t.Errorf("slots = %d, want 10 + 32", got)
	}
	l.probing, l.cap = true, 5
	if got := bal.slotsLocked(); got != 42 {
		t.Errorf("slots during a probe = %d, want 10 + 32: a probe lasts one window", got)
	}
	fixed := New(testOptions(func(o *Options) { o.MaxInflight = 3 }))
	be := NewBackend(1, "replica-1", "127.0.0.1:1")
	fixed.Add(be)
	if got := fixed.slotsLocked(); got != 3 || be.Limit() != 3 {
		t.Errorf("fixed cap 3: slots %d, Limit %d; want 3 and 3", got, be.Limit())
	}
}

// TestAdaptiveLimitHoldsTheQueue: a backend at its learned cap takes no
// more; the request waits in the queue and is served when a slot frees,
// and the limiter hears that its cap held one back.
func TestAdaptiveLimitHoldsTheQueue(t *testing.T) {
	g := newGate()
	tb := newTestBackend(t, 1, g.handler)
	bal, srv := newTestBalancer(t, testOptions(func(o *Options) {
		o.AdaptiveInflight = DefaultAdaptiveInflight
		o.Queue = 10
	}), tb.Backend)
	defer g.open()
	c := srv.Client()
	done := make(chan int, 2)
	for range 2 {
		go func() { code, _, _ := get(t, c, srv.URL); done <- code }()
	}
	g.waitArrivals(t, 1)
	deadline := time.Now().Add(2 * time.Second)
	for bal.Stats().Queued != 1 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	bal.mu.Lock()
	inflight, held := tb.inflight.Load(), tb.limiter.held
	bal.mu.Unlock()
	if inflight != 1 || bal.Stats().Queued != 1 || !held {
		t.Fatalf("in flight %d, queued %d, held %v; want 1, 1 and true: the cap starts at 1", inflight, bal.Stats().Queued, held)
	}
	g.open()
	for range 2 {
		if code := <-done; code != http.StatusOK {
			t.Errorf("code %d, want 200", code)
		}
	}
}

// TestAdaptiveCapHoldsEveryPolicy: whatever the policy (the fair one
// prefers the faster backend, ip_hash a client's own), a backend at its
// learned cap is not picked while another has room, and its limiter hears
// that its cap held a request back.
func TestAdaptiveCapHoldsEveryPolicy(t *testing.T) {
	r, _ := http.NewRequest(http.MethodGet, "/", nil)
	r.RemoteAddr = "192.0.2.1:1234"
	for _, name := range PolicyNames() {
		t.Run(name, func(t *testing.T) {
			p, _ := NewPolicy(name)
			bal := New(testOptions(func(o *Options) { o.AdaptiveInflight = DefaultAdaptiveInflight; o.Policy = p }))
			full, room := NewBackend(1, "replica-1", "127.0.0.1:1"), NewBackend(2, "replica-2", "127.0.0.1:2")
			bal.Add(full)
			bal.Add(room)
			bal.mu.Lock()
			defer bal.mu.Unlock()
			full.observe(10*time.Millisecond, time.Now()) // faster: the fair policy's choice if it had room
			room.observe(500*time.Millisecond, time.Now())
			full.limiter.limit, full.limiter.cap = 3, 3
			for range 3 {
				full.startLocked(&attempt{b: bal, be: full, start: time.Now()})
			}
			for i := range 20 {
				if got := bal.pickLocked(r, nil); got != room {
					t.Fatalf("pick %d: %v, want replica-2: replica-1 is at its cap of 3", i, got.Name)
				}
			}
			if !full.limiter.held || room.limiter.held {
				t.Errorf("held: replica-1 %v, replica-2 %v; want true, false", full.limiter.held, room.limiter.held)
			}
			full.limiter.cap = 4 // it learned one more
			if got := bal.pickLocked(r, room); got != full {
				t.Errorf("with room under its new cap, replica-1 not picked (avoiding replica-2): %v", got.Name)
			}
		})
	}
}

package balancer

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/testutil"
)

type answer struct {
	code       int
	retryAfter string
	body       string
	err        error
	took       time.Duration
	at         time.Time // when the answer came
}

func send(c *http.Client, url string) answer {
	start := time.Now()
	resp, err := c.Get(url)
	if err != nil {
		return answer{err: err, took: time.Since(start), at: time.Now()}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{code: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After"), body: string(b), took: time.Since(start), at: time.Now()}
}

// TestMaxInflightQueuesFIFO: past the cap, requests wait in the proxy and
// reach the backend as room frees, oldest first. With a cap of 1 the order
// in which they reach the backend is the dispatch order.
func TestMaxInflightQueuesFIFO(t *testing.T) {
	var mu sync.Mutex
	var order []string
	g := newGate()
	defer g.open()
	be := newTestBackend(t, 1, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		order = append(order, r.URL.Query().Get("n"))
		mu.Unlock()
		g.handler(w, r)
	})
	bal, srv := newTestBalancer(t, testOptions(func(o *Options) { o.MaxInflight = 1; o.Queue = 10 }), be.Backend)

	answers := make(chan answer, 6)
	for i := range 6 {
		go func() { answers <- send(srv.Client(), srv.URL+"/?n="+strconv.Itoa(i)) }()
		if i == 0 {
			g.waitArrivals(t, 1)
		} else {
			// Queue them in a known order.
			testutil.WaitFor(t, settle, fmt.Sprintf("%d queued", i), func() bool { return bal.Stats().Queued == i })
		}
	}
	// Only the cap's worth reached the backend.
	time.Sleep(50 * time.Millisecond)
	if n := be.hits.Load(); n != 1 {
		t.Fatalf("backend saw %d requests with a cap of 1", n)
	}
	if n := be.InFlight(); n != 1 {
		t.Fatalf("InFlight() = %d, want 1", n)
	}
	g.open()
	for range 6 {
		if a := <-answers; a.code != http.StatusOK {
			t.Errorf("answer %+v, want 200", a)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(order) != "[0 1 2 3 4 5]" {
		t.Errorf("requests reached the backend in order %v, want 0 1 2 3 4 5", order)
	}
	if s := bal.Stats(); s.Queued != 0 || s.Rejected != 0 {
		t.Errorf("stats after: %+v", s)
	}
}

func TestQueueFullRejectsAtOnce(t *testing.T) {
	g := newGate()
	defer g.open()
	be := newTestBackend(t, 1, g.handler)
	bal, srv := newTestBalancer(t, testOptions(func(o *Options) { o.MaxInflight = 1; o.Queue = 2 }), be.Backend)
	go send(srv.Client(), srv.URL)
	g.waitArrivals(t, 1)
	for range 2 {
		go send(srv.Client(), srv.URL)
	}
	testutil.WaitFor(t, settle, "2 queued", func() bool { return bal.Stats().Queued == 2 })
	a := send(srv.Client(), srv.URL)
	if a.code != http.StatusServiceUnavailable || a.retryAfter == "" || a.took > 2*time.Second {
		t.Fatalf("overflow answer %+v, want an immediate 503 with Retry-After", a)
	}
	if n, err := strconv.Atoi(a.retryAfter); err != nil || n < 1 {
		t.Errorf("Retry-After = %q, want a whole number of seconds", a.retryAfter)
	}
	if s := bal.Stats(); s.Rejected != 1 {
		t.Errorf("Rejected = %d, want 1", s.Rejected)
	}
}

func TestQueueTimeout(t *testing.T) {
	g := newGate()
	defer g.open()
	be := newTestBackend(t, 1, g.handler)
	bal, srv := newTestBalancer(t, testOptions(func(o *Options) { o.MaxInflight = 1; o.Queue = 10; o.QueueTimeout = new(300 * time.Millisecond) }), be.Backend)
	go send(srv.Client(), srv.URL)
	g.waitArrivals(t, 1)
	a := send(srv.Client(), srv.URL)
	if a.code != http.StatusServiceUnavailable || a.retryAfter == "" {
		t.Fatalf("answer %+v, want 503 with Retry-After", a)
	}
	if a.took < 300*time.Millisecond || a.took > 2*time.Second {
		t.Errorf("answered after %s, want just past the 300ms queue timeout", a.took)
	}
	if n := be.hits.Load(); n != 1 {
		t.Errorf("a timed-out request reached the backend (%d hits)", n)
	}
	if s := bal.Stats(); s.Queued != 0 || s.Rejected != 1 {
		t.Errorf("stats %+v, want none queued and 1 rejected", s)
	}
}

// TestNewBackendServesQueue: adding a backend dispatches queued requests.
func TestNewBackendServesQueue(t *testing.T) {
	g := newGate()
	defer g.open()
	slow := newTestBackend(t, 1, g.handler)
	fast := newTestBackend(t, 2, nil)
	bal, srv := newTestBalancer(t, testOptions(func(o *Options) { o.MaxInflight = 1; o.Queue = 10 }), slow.Backend)
	go send(srv.Client(), srv.URL)
	g.waitArrivals(t, 1)
	answers := make(chan answer, 1)
	go func() { answers <- send(srv.Client(), srv.URL) }()
	testutil.WaitFor(t, settle, "1 queued", func() bool { return bal.Stats().Queued == 1 })
	bal.Add(fast.Backend)
	if a := <-answers; a.code != http.StatusOK || a.body != "ok from replica-2" {
		t.Fatalf("queued request after Add: %+v", a)
	}
}

// TestOverloadedBackendProtected: a backend that drops connections past 4
// concurrent requests loses none when the proxy caps it at 4.
func TestOverloadedBackendProtected(t *testing.T) {
	for _, tt := range []struct {
		cap      int
		wantFail bool
	}{{4, false}, {0, true}} {
		t.Run("cap "+strconv.Itoa(tt.cap), func(t *testing.T) {
			var mu sync.Mutex
			active := 0
			be := newTestBackend(t, 1, func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				active++
				over := active > 4
				mu.Unlock()
				defer func() { mu.Lock(); active--; mu.Unlock() }()
				if over {
					panic(http.ErrAbortHandler) // drop the connection
				}
				time.Sleep(20 * time.Millisecond)
			})
			_, srv := newTestBalancer(t, testOptions(func(o *Options) { o.MaxInflight = tt.cap; o.Queue = 100 }), be.Backend)
			var wg sync.WaitGroup
			var failed sync.Map
			for i := range 32 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if a := send(srv.Client(), srv.URL); a.code != http.StatusOK {
						failed.Store(i, a.code)
					}
				}()
			}
			wg.Wait()
			n := 0
			failed.Range(func(any, any) bool { n++; return true })
			if (n > 0) != tt.wantFail {
				t.Errorf("%d of 32 requests failed with cap %d", n, tt.cap)
			}
		})
	}
}

package balancer

import (
	"net/http"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

// burst sends n requests at once and returns their answers.
func burst(c *http.Client, url string, n int) []answer {
	answers := make([]answer, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() { defer wg.Done(); answers[i] = send(c, url) }()
	}
	wg.Wait()
	return answers
}

// sleeper is a backend handler that takes d per request.
func sleeper(d time.Duration) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) { time.Sleep(d) }
}

// TestPredictedWaitRejectsAtOnce: with one backend taking 50 ms a request
// and a 1 s queue timeout, about 20 requests can be served in time. Of a
// burst of 200, the rest are answered 503 with Retry-After at once, not
// after the second, and those admitted are served.
func TestPredictedWaitRejectsAtOnce(t *testing.T) {
	be := newTestBackend(t, 1, sleeper(50*time.Millisecond))
	bal, srv := newTestBalancer(t, testOptions(func(o *Options) { o.MaxInflight = 1; o.Queue = 10000; o.QueueTimeout = new(time.Second) }), be.Backend)
	c := srv.Client()
	c.Transport.(*http.Transport).MaxIdleConnsPerHost = 200
	for range ewmaPlainSamples { // time enough responses for the prediction to settle
		if a := send(c, srv.URL); a.code != http.StatusOK {
			t.Fatalf("warm-up: %+v", a)
		}
	}
	// What "at once" takes on this machine, at the same moment: a burst
	// of as many requests, on new connections too, sent along with it to
	// a balancer that has no backend, which answers 503 without a queue.
	_, none := newTestBalancer(t, testOptions(func(o *Options) { o.MaxInflight = 1; o.Queue = 10000; o.QueueTimeout = new(time.Second) }))
	nc := none.Client()
	nc.Transport.(*http.Transport).MaxIdleConnsPerHost = 200
	var answers, control []answer
	var wg sync.WaitGroup
	wg.Go(func() { answers = burst(c, srv.URL, 200) })
	wg.Go(func() { control = burst(nc, none.URL, 200) })
	wg.Wait()
	var baseline time.Duration
	for _, a := range control {
		if a.code != http.StatusServiceUnavailable {
			t.Fatalf("with no backend: %+v, want 503", a)
		}
		baseline = max(baseline, a.took)
	}
	counts := map[int]int{}
	var took503 []time.Duration
	var last200 time.Duration
	for _, a := range answers {
		counts[a.code]++
		switch a.code {
		case http.StatusOK:
			last200 = max(last200, a.took)
		case http.StatusServiceUnavailable:
			took503 = append(took503, a.took)
			if n, err := strconv.Atoi(a.retryAfter); err != nil || n < 1 {
				t.Errorf("503 with Retry-After %q", a.retryAfter)
			}
		default:
			t.Errorf("answer %+v, want 200 or 503", a)
		}
	}
	if counts[200] == 0 || counts[503] < 100 {
		t.Fatalf("outcomes %v: want about 20 served and the rest rejected at once", counts)
	}
	// No more were refused than had to be: the backend, one request at a
	// time, was kept busy for most of the queue timeout (about 20 requests
	// on a quiet machine, fewer on a busy one, where each takes longer).
	if last200 < 600*time.Millisecond {
		t.Errorf("outcomes %v, the last 200 after %s: the backend was idle for most of the 1s queue timeout while requests were refused", counts, last200)
	}
	slices.Sort(took503)
	// The requests the queue could take (1 s of 50 ms ones) may be
	// admitted, then shed when a busy machine makes each take longer than
	// predicted: answered 503 later, but still before their queue timeout.
	// Every other 503 comes at once.
	const admissible = 20
	atOnce := took503[:len(took503)-admissible]
	slowest503 := atOnce[len(atOnce)-1]
	t.Logf("outcomes %v, slowest 503 after %s (all but %d), %s (all); with no backend, after %s", counts, slowest503, admissible, took503[len(took503)-1], baseline)
	// The 503s come at once: well before the 1 s queue timeout, as soon
	// as those of the balancer with no backend to wait for (twice, for
	// slack), even with 400 connections being opened at once on a loaded
	// machine.
	if slowest503 > max(500*time.Millisecond, 2*baseline) {
		t.Errorf("a 503 took %s, %s with no backend; want it at once, not near the 1s queue timeout", slowest503, baseline)
	}
	// Every 503 is counted as rejected; all but the admissible ones shed
	// later (their queue timeout, on a busy machine) by predicted wait.
	if s, pw := bal.Stats(), bal.outcomes.rejected[reasonPredictedWait].Load(); s.Rejected != uint64(counts[503]) || pw < uint64(counts[503]-admissible) || pw > uint64(counts[503]) {
		t.Errorf("stats %+v, predicted-wait rejections %d; clients saw %d 503s", s, bal.outcomes.rejected[reasonPredictedWait].Load(), counts[503])
	}
}

// TestColdBurstShed: before any response is timed, the requests in flight
// bound the service time from below, and the hopeless tail of a burst is
// answered 503 by that bound: most before the first response is timed,
// none near the queue timeout.
func TestColdBurstShed(t *testing.T) {
	// 500 ms a request and 5 s to wait: about 10 can be served. Most 503s
	// are sure well before the first response, even on a loaded machine.
	be := newTestBackend(t, 1, sleeper(500*time.Millisecond))
	_, srv := newTestBalancer(t, testOptions(func(o *Options) { o.MaxInflight = 1; o.Queue = 10000; o.QueueTimeout = new(5 * time.Second) }), be.Backend)
	c := srv.Client()
	c.Transport.(*http.Transport).MaxIdleConnsPerHost = 100
	counts := map[int]int{}
	answers := burst(c, srv.URL, 100)
	// The first response is timed as it ends, about when its client has
	// it: the 503s that came before came on the bound. (A fixed 400 ms
	// was overrun by a busy machine, slow to answer anything.)
	var firstOK time.Time
	for _, a := range answers {
		if a.code == http.StatusOK && (firstOK.IsZero() || a.at.Before(firstOK)) {
			firstOK = a.at
		}
	}
	early, rejected := 0, 0
	var slowest time.Duration
	for _, a := range answers {
		counts[a.code]++
		if a.code == http.StatusServiceUnavailable {
			rejected++
			slowest = max(slowest, a.took)
			if a.at.Before(firstOK) {
				early++
			}
		}
	}
	t.Logf("outcomes %v; %d of %d 503s before the first 200; slowest 503 after %s", counts, early, rejected, slowest)
	if counts[503] < 50 || counts[200] < 5 || counts[200]+counts[503] != 100 {
		t.Errorf("outcomes %v: want about 10 served and the rest 503", counts)
	}
	if early < rejected/2 {
		t.Errorf("%d of %d 503s came before the first response (of 500 ms) was timed: the requests in flight were not used as a bound", early, rejected)
	}
	// Near the boundary, requests that a slightly faster replica would
	// serve may wait for their 503 until the estimate has settled, or
	// their queue timeout.
}

// TestLongHopefulWaitIsServed: a wait predicted to end within the queue
// timeout is served, however long.
func TestLongHopefulWaitIsServed(t *testing.T) {
	be := newTestBackend(t, 1, sleeper(100*time.Millisecond))
	_, srv := newTestBalancer(t, testOptions(func(o *Options) { o.MaxInflight = 1; o.Queue = 100; o.QueueTimeout = new(5 * time.Second) }), be.Backend)
	c := srv.Client()
	c.Transport.(*http.Transport).MaxIdleConnsPerHost = 20
	send(c, srv.URL)
	for _, a := range burst(c, srv.URL, 20) { // 2 s of work
		if a.code != http.StatusOK {
			t.Errorf("answer %+v, want 200: the wait was long but within the queue timeout", a)
		}
	}
}

func TestPredict(t *testing.T) {
	bal := New(testOptions(func(o *Options) { o.MaxInflight = 2; o.Queue = 10; o.QueueTimeout = new(time.Second) }))
	if _, ok := bal.predictLocked(5); ok {
		t.Fatal("a prediction with no backend and no response timed")
	}
	for i := 1; i <= 2; i++ {
		bal.Add(NewBackend(i, "replica-"+strconv.Itoa(i), "127.0.0.1:1"))
	}
	if _, ok := bal.predictLocked(5); ok {
		t.Fatal("a prediction with nothing timed and nothing in flight: want none, and admission")
	}
	if err := bal.admitLocked(1000, time.Now().Add(time.Second), time.Now()); err != nil {
		t.Fatalf("with no prediction, admission refused: %v", err)
	}
	// Cold: a request in flight for 400 ms bounds the service time.
	a := &attempt{b: bal, be: bal.pool[0], start: time.Now().Add(-400 * time.Millisecond)}
	bal.pool[0].startLocked(a)
	if wait, ok := bal.predictLocked(12); !ok || wait < 400*time.Millisecond || wait > 450*time.Millisecond {
		t.Errorf("cold, predicted wait at place 12 = %s, %v; want about 400ms (4 slots: 2 rounds after those in flight, at least 0.4 s each, with the margin of 2 for nothing timed)", wait, ok)
	}
	if wait, ok := bal.predictLocked(4); !ok || wait != 0 {
		t.Errorf("cold, predicted wait at place 4 = %s, %v; want 0: the requests in flight may end now", wait, ok)
	}
	bal.pool[0].endLocked(a)
	bal.serviceTime.observe(400 * time.Millisecond)
	if wait, ok := bal.predictLocked(5); !ok || wait != 250*time.Millisecond {
		t.Errorf("after one response, predicted wait at place 5 = %s, %v; want 250ms (500ms with the margin of 2 for one sample)", wait, ok)
	}
	for range ewmaPlainSamples - 1 {
		bal.serviceTime.observe(400 * time.Millisecond)
	}
	// Settled: 4 slots of 0.4 s each complete 10 requests a second.
	if wait, ok := bal.predictLocked(5); !ok || wait != 500*time.Millisecond {
		t.Errorf("predicted wait at place 5 = %s, %v; want 500ms", wait, ok)
	}
	now := time.Now()
	if err := bal.admitLocked(10, now.Add(time.Second), now); err != nil {
		t.Errorf("a 1s wait within a 1s timeout refused: %v", err)
	}
	if err := bal.admitLocked(11, now.Add(time.Second), now); err != errPredictedWait {
		t.Errorf("a 1.1s wait within a 1s timeout: %v, want errPredictedWait", err)
	}
	if err := bal.admitLocked(1_000_000, time.Time{}, now); err != nil {
		t.Errorf("with no queue timeout, admission refused: %v", err)
	}
	if got := bal.retryAfter(); got != 1 {
		t.Errorf("Retry-After with an empty queue = %d, want 1", got)
	}
}

// TestSettling: a mean of few service times is given a margin that
// shrinks as it grows, and none once the moving average takes over.
func TestSettling(t *testing.T) {
	for _, c := range []struct {
		n    int
		want float64
	}{{0, 2}, {1, 2}, {2, 1.5}, {4, 1.25}, {ewmaPlainSamples - 1, 1 + 1/float64(ewmaPlainSamples-1)}, {ewmaPlainSamples, 1}, {1000, 1}} {
		if got := settling(c.n); got != c.want {
			t.Errorf("settling(%d) = %v, want %v", c.n, got, c.want)
		}
	}
}

package balancer

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/mattingctl/mattingctl/internal/testutil"
)

// resetConn resets the request's connection, as a model server whose
// handler raised or whose worker crashed does.
func resetConn(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	_ = conn.(*net.TCPConn).SetLinger(0)
	conn.Close()
}

// poisonBackend is a live backend that resets the connection of every
// request whose body is "poison", counting them, and echoes the others.
func poisonBackend(t *testing.T, id int, deliveries *atomic.Int64) *testBackend {
	tb := newTestBackend(t, id, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if string(body) == "poison" {
			deliveries.Add(1)
			resetConn(w)
			return
		}
		echo(w, r)
	})
	tb.Alive = func() bool { return true }
	return tb
}

func post(t *testing.T, c *http.Client, url, body string) (int, string) {
	t.Helper()
	resp, err := c.Post(url, "text/plain", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestPoisonRequestStopsAtItsBudget: a request that makes live replicas
// reset the connection is delivered twice, not until the queue timeout,
// and answered 502 naming the cause; the same request then fails at once,
// quarantined, counted and logged with its hash, while other requests are
// served.
func TestPoisonRequestStopsAtItsBudget(t *testing.T) {
	var deliveries atomic.Int64
	var backends []*Backend
	for id := 1; id <= 3; id++ {
		backends = append(backends, poisonBackend(t, id, &deliveries).Backend)
	}
	var log testutil.SyncBuffer
	bal, srv := newTestBalancer(t, testOptions(func(o *Options) {
		o.Retries, o.Quarantine = 2, time.Minute
		o.Logger = hclog.New(&hclog.LoggerOptions{Output: &log, Level: hclog.Warn})
	}), backends...)

	code, first := post(t, srv.Client(), srv.URL+"/predict", "poison")
	if code != http.StatusBadGateway || strings.Count(first, "reset by replica-") != 2 || !strings.Contains(first, "quarantined, sha256 ") {
		t.Errorf("first: %d %s; want 502 naming two resets and the quarantine", code, first)
	}
	if n := deliveries.Load(); n != maxHarms {
		t.Errorf("delivered %d times, want %d", n, maxHarms)
	}
	start := time.Now()
	code, again := post(t, srv.Client(), srv.URL+"/predict", "poison")
	if code != http.StatusBadGateway || again != first {
		t.Errorf("repeat: %d %s; want the same 502", code, again)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("the repeat took %s to refuse", took)
	}
	if n := deliveries.Load(); n != maxHarms {
		t.Errorf("the quarantined repeat was delivered: %d deliveries in all", n)
	}
	if code, body := post(t, srv.Client(), srv.URL+"/predict?other=1", "poison"); code != http.StatusBadGateway || strings.Contains(body, again) {
		t.Errorf("another path: %d %s; want a 502 of its own, after deliveries", code, body)
	}
	if code, _ := post(t, srv.Client(), srv.URL+"/predict", "fine"); code != http.StatusOK {
		t.Errorf("a fine request: %d", code)
	}
	st := bal.Stats()
	if st.Quarantined != 2 || st.QuarantineHits != 1 || st.Failed != 3 {
		t.Errorf("stats %+v; want 2 quarantined, 1 hit, 3 failed", st)
	}
	if !strings.Contains(log.String(), "quarantined a request that broke replicas twice") || !strings.Contains(log.String(), "sha256=") {
		t.Errorf("log:\n%s\nwant a warning with the hash", log.String())
	}
}

// TestCollateralResetsAreNotQuarantined: a replica that resets every
// request it holds at once (an overload, or a crash taking its
// requests with it) breaks each of them, and blames none: they stop at
// their budget, and none is quarantined.
func TestCollateralResetsAreNotQuarantined(t *testing.T) {
	const clients = 6
	var arrived sync.WaitGroup
	arrived.Add(clients)
	var first atomic.Int64
	release := make(chan struct{})
	be := newTestBackend(t, 1, func(w http.ResponseWriter, r *http.Request) {
		if first.Add(1) <= clients { // the first wave waits for all, then all are reset together
			arrived.Done()
			<-release
		}
		resetConn(w)
	})
	be.Alive = func() bool { return true }
	bal, srv := newTestBalancer(t, testOptions(func(o *Options) { o.Retries, o.Quarantine = 2, time.Minute }), be.Backend)
	codes := make(chan int, clients)
	for range clients {
		go func() {
			code, _ := post(t, srv.Client(), srv.URL+"/predict", "{}")
			codes <- code
		}()
	}
	arrived.Wait()
	close(release)
	for range clients {
		if code := <-codes; code != http.StatusBadGateway {
			t.Errorf("status %d, want 502", code)
		}
	}
	if st := bal.Stats(); st.Quarantined != 0 {
		t.Errorf("%d requests quarantined for resets they shared", st.Quarantined)
	}
}

// TestResetByReplica: a live replica's reset is called that, not "stayed
// busy".
func TestResetByReplica(t *testing.T) {
	var deliveries atomic.Int64
	be := poisonBackend(t, 1, &deliveries)
	_, srv := newTestBalancer(t, testOptions(nil), be.Backend) // no retries
	code, body := post(t, srv.Client(), srv.URL, "poison")
	if code != http.StatusBadGateway || !strings.Contains(body, "reset by replica: replica-1 closed the connection before answering") {
		t.Errorf("%d %s; want 502 saying reset by replica", code, body)
	}
}

// TestHTTP1ToH2COnlyReplica: a replica that speaks only h2c, spoken
// HTTP/1.1 to, resets every connection: the request is answered 502
// naming --upstream-protocol at once, not retried until the queue timeout.
func TestHTTP1ToH2COnlyReplica(t *testing.T) {
	h2 := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	h2.Config.Protocols = new(http.Protocols)
	h2.Config.Protocols.SetUnencryptedHTTP2(true)
	h2.Start()
	t.Cleanup(h2.Close)
	be := NewBackend(1, "replica-1", h2.Listener.Addr().String())
	be.Alive = func() bool { return true }
	bal, srv := newTestBalancer(t, testOptions(func(o *Options) { o.Retries = 2; o.QueueTimeout = new(time.Minute) }), be)
	for range 2 {
		start := time.Now()
		code, body := post(t, srv.Client(), srv.URL, "hello")
		if code != http.StatusBadGateway || !strings.Contains(body, "--upstream-protocol h2c") {
			t.Errorf("%d %s; want 502 naming --upstream-protocol", code, body)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("answered after %s", took)
		}
	}
	if st := bal.Stats(); st.Retried != 0 || st.Quarantined != 0 {
		t.Errorf("stats %+v; want no retry, no quarantine", st)
	}
}

// TestH2CReplicaAnsweringHTTP1IsNotWrongProtocol: a replica that speaks
// both and resets a poison request is not taken for an h2c-only one once
// it has answered HTTP/1.1.
func TestH2CReplicaAnsweringHTTP1IsNotWrongProtocol(t *testing.T) {
	var deliveries atomic.Int64
	be := newTestBackend(t, 1, func(w http.ResponseWriter, r *http.Request) {
		if body, _ := io.ReadAll(r.Body); string(body) == "poison" {
			deliveries.Add(1)
			resetConn(w)
			return
		}
		echo(w, r)
	})
	be.srv.Close()
	both := httptest.NewUnstartedServer(be.srv.Config.Handler)
	both.Config.Protocols = new(http.Protocols)
	both.Config.Protocols.SetHTTP1(true)
	both.Config.Protocols.SetUnencryptedHTTP2(true)
	both.Start()
	t.Cleanup(both.Close)
	be.Addr = both.Listener.Addr().String()
	be.Alive = func() bool { return true }
	_, srv := newTestBalancer(t, testOptions(func(o *Options) { o.Retries = 2 }), be.Backend)
	if code, _ := post(t, srv.Client(), srv.URL, "fine"); code != http.StatusOK {
		t.Fatalf("fine: %d", code)
	}
	if code, body := post(t, srv.Client(), srv.URL, "poison"); code != http.StatusBadGateway || strings.Contains(body, "upstream-protocol") {
		t.Errorf("%d %s; want a poison's 502", code, body)
	}
}

func TestBlamed(t *testing.T) {
	t0 := time.Now().Add(-time.Minute) // long past: blamed does not wait
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	type harm struct{ start, at int } // of another request, in ms after t0
	tests := []struct {
		name   string
		others []harm
		start  int // this request's start, and its harm's time
		at     int
		want   bool
	}{
		{"alone", nil, 0, 10, true},
		{"another reset by the same crash", []harm{{0, 11}}, 0, 10, false},
		{"another under way, reset 400ms later", []harm{{5, 410}}, 0, 10, false},
		{"another under way, reset 600ms later", []harm{{5, 610}}, 0, 10, true},
		{"one before it, over before it began", []harm{{0, 50}}, 100, 150, true},
		{"one after it, begun after its harm", []harm{{200, 250}}, 100, 150, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := New(testOptions(nil))
			be := NewBackend(1, "replica-1", "127.0.0.1:1")
			for _, h := range tt.others {
				b.recordHarm(be, &exchange{start: ms(h.start)}, ms(h.at))
			}
			x := &exchange{start: ms(tt.start)}
			b.recordHarm(be, x, ms(tt.at))
			if got := b.blamed(t.Context(), be, x, ms(tt.at)); got != tt.want {
				t.Errorf("blamed = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestBlame(t *testing.T) {
	at := time.Now().Add(-time.Minute) // long past: blamed does not wait
	tests := []struct {
		name      string
		f         failure
		responded bool
		removed   time.Duration // before at; 0: in rotation; negative: after
		want      blame
	}{
		{"reset, in rotation", reset, false, 0, alone},
		{"died, in rotation", dropped, false, 0, alone},
		{"died as its owner stopped it", dropped, false, 10 * time.Second, innocent},
		{"died, then taken out for it", dropped, false, -5 * time.Millisecond, alone},
		{"busy", busy, false, 0, innocent},
		{"refused", refused, false, 0, innocent},
		{"slow", slow, false, 0, innocent},
		{"reset after responding", reset, true, 0, innocent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := New(testOptions(nil))
			be := NewBackend(1, "replica-1", "127.0.0.1:1")
			if tt.removed != 0 {
				be.removedAt = at.Add(-tt.removed)
			}
			x := &exchange{start: at.Add(-time.Second), ctx: t.Context()}
			b.recordHarm(be, x, at)
			if got := b.blame(x, &attempt{be: be, responded: tt.responded}, tt.f, at); got != tt.want {
				t.Errorf("blame = %d, want %d", got, tt.want)
			}
		})
	}
}

// TestDrainedReplicasKilledAreNoHarm: a request whose replicas were each
// drained by their owner and killed with it in flight (the end of a
// rolling restart's stop timeout) is sent on within --retries, and is
// served: the deaths were not its doing.
func TestDrainedReplicasKilledAreNoHarm(t *testing.T) {
	arrived := make(chan int, 3)
	release := []chan struct{}{make(chan struct{}), make(chan struct{})}
	var backends []*testBackend
	for i := range 3 {
		tb := newTestBackend(t, i+1, func(w http.ResponseWriter, r *http.Request) {
			arrived <- i
			if i < 2 {
				<-release[i]
				resetConn(w)
				return
			}
			echo(w, r)
		})
		tb.Alive = func() bool { return false } // it was killed
		backends = append(backends, tb)
	}
	bal, srv := newTestBalancer(t, testOptions(func(o *Options) { o.Retries, o.Quarantine = 2, time.Minute }), backends[0].Backend)
	codes := make(chan int, 1)
	go func() {
		code, _ := post(t, srv.Client(), srv.URL, "the same image as ever")
		codes <- code
	}()
	for i := range 2 {
		if got := <-arrived; got != i {
			t.Fatalf("the request reached replica-%d, want replica-%d", got+1, i+1)
		}
		bal.Add(backends[i+1].Backend)
		bal.Remove(backends[i].Backend) // drained by its owner...
		time.Sleep(2 * aliveSettle)
		close(release[i]) // ...and killed with the request in flight
	}
	if code := <-codes; code != http.StatusOK {
		t.Errorf("status %d, want 200 from the third replica", code)
	}
	if st := bal.Stats(); st.Quarantined != 0 || st.Retried != 2 {
		t.Errorf("stats %+v; want 2 retries, nothing quarantined", st)
	}
}

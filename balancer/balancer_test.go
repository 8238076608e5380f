package balancer

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/testutil"
)

func TestInFlightExactUnderConcurrency(t *testing.T) {
	const n = 50
	g := newGate()
	defer g.open()
	a := newTestBackend(t, 1, g.handler)
	b := newTestBackend(t, 2, g.handler)
	_, srv := newTestBalancer(t, testOptions(nil), a.Backend, b.Backend)

	var wg sync.WaitGroup
	statuses := make([]int, n)
	for i := range n {
		wg.Go(func() {
			resp, err := srv.Client().Get(srv.URL + "/slow")
			if err != nil {
				t.Errorf("request %d: %v", i, err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			statuses[i] = resp.StatusCode
		})
	}
	g.waitArrivals(t, n)

	// Every request is held by a backend: the counts are exact, and since
	// least-conn chooses under the lock that counts, the split is even.
	if got := a.InFlight() + b.InFlight(); got != n {
		t.Errorf("InFlight() sum = %d, want %d", got, n)
	}
	if a.InFlight() != n/2 || b.InFlight() != n/2 {
		t.Errorf("InFlight() = %d and %d, want %d each", a.InFlight(), b.InFlight(), n/2)
	}
	if a.hits.Load() != n/2 || b.hits.Load() != n/2 {
		t.Errorf("backends saw %d and %d requests, want %d each", a.hits.Load(), b.hits.Load(), n/2)
	}
	if a.Requests()+b.Requests() != 0 {
		t.Errorf("Requests() = %d and %d before any completed", a.Requests(), b.Requests())
	}

	g.open()
	wg.Wait()
	for i, s := range statuses {
		if s != http.StatusOK {
			t.Errorf("request %d: status %d", i, s)
		}
	}
	testutil.WaitFor(t, settle, "InFlight() = 0 and Requests() = n/2 on both", func() bool {
		return a.InFlight() == 0 && b.InFlight() == 0 && a.Requests() == n/2 && b.Requests() == n/2
	})
}

func TestRemoveDrains(t *testing.T) {
	g := newGate()
	defer g.open()
	a := newTestBackend(t, 1, g.handler)
	b := newTestBackend(t, 2, nil)
	bal, srv := newTestBalancer(t, testOptions(nil), a.Backend)

	held := make(chan int, 1)
	go func() {
		code, _, _ := get(t, srv.Client(), srv.URL+"/held")
		held <- code
	}()
	g.waitArrivals(t, 1)
	bal.Add(b.Backend)

	idle := bal.Remove(a.Backend)
	if isClosed(idle) {
		t.Fatal("Remove's channel is closed while a request is in flight on the backend")
	}
	for range 10 {
		code, name, _ := get(t, srv.Client(), srv.URL+"/new")
		if code != http.StatusOK || name != "replica-2" {
			t.Fatalf("a request after Remove got %d from %q, want 200 from replica-2", code, name)
		}
	}
	if n := a.hits.Load(); n != 1 {
		t.Errorf("the removed backend saw %d requests, want only the 1 held one", n)
	}
	if isClosed(idle) {
		t.Fatal("Remove's channel closed before the held request completed")
	}
	if a.InFlight() != 1 {
		t.Errorf("InFlight() = %d on the draining backend, want 1", a.InFlight())
	}

	g.open()
	waitClosed(t, idle, 15*time.Second, "Remove's channel after the held request completed")
	if code := <-held; code != http.StatusOK {
		t.Errorf("the held request got %d, want 200", code)
	}
	if a.InFlight() != 0 || a.Requests() != 1 {
		t.Errorf("InFlight() = %d, Requests() = %d; want 0 and 1", a.InFlight(), a.Requests())
	}
}

func TestRemoveTwiceWhileDraining(t *testing.T) {
	g := newGate()
	defer g.open()
	a := newTestBackend(t, 1, g.handler)
	bal, srv := newTestBalancer(t, testOptions(nil), a.Backend)
	done := make(chan struct{})
	go func() {
		defer close(done)
		get(t, srv.Client(), srv.URL+"/held")
	}()
	g.waitArrivals(t, 1)

	first := bal.Remove(a.Backend)
	second := bal.Remove(a.Backend)
	if isClosed(first) || isClosed(second) {
		t.Fatal("a channel closed while the request is in flight")
	}
	g.open()
	waitClosed(t, second, 15*time.Second, "the second Remove's channel")
	waitClosed(t, first, 15*time.Second, "the first Remove's channel")
	<-done
}

func TestRemoveIdle(t *testing.T) {
	tests := []struct {
		name  string
		setup func(bal *Balancer, be *Backend)
	}{
		{"in rotation", func(bal *Balancer, be *Backend) { bal.Add(be) }},
		{"never added", func(*Balancer, *Backend) {}},
		{"already removed", func(bal *Balancer, be *Backend) { bal.Add(be); bal.Remove(be) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bal := New(testOptions(nil))
			be := NewBackend(1, "replica-1", "127.0.0.1:1")
			tt.setup(bal, be)
			if !isClosed(bal.Remove(be)) {
				t.Error("Remove of a backend with nothing in flight returned an open channel")
			}
			if len(bal.pool) != 0 {
				t.Errorf("pool has %d backends after Remove, want 0", len(bal.pool))
			}
		})
	}
}

func TestAddTwice(t *testing.T) {
	rr := &RoundRobin{}
	a := newTestBackend(t, 1, nil)
	b := newTestBackend(t, 2, nil)
	bal, srv := newTestBalancer(t, testOptions(func(o *Options) { o.Policy = rr }))
	bal.Add(a.Backend)
	bal.Add(a.Backend)
	bal.Add(b.Backend)
	if len(bal.pool) != 2 {
		t.Fatalf("pool has %d backends after adding a twice and b once, want 2", len(bal.pool))
	}
	var got []string
	for range 4 {
		_, name, _ := get(t, srv.Client(), srv.URL)
		got = append(got, name)
	}
	if want := []string{"replica-1", "replica-2", "replica-1", "replica-2"}; !slices.Equal(got, want) {
		t.Errorf("round robin served %q, want %q", got, want)
	}

	// Back into rotation after a Remove, once.
	<-bal.Remove(a.Backend)
	bal.Add(a.Backend)
	bal.Add(a.Backend)
	if len(bal.pool) != 2 || bal.pool[0] != b.Backend || bal.pool[1] != a.Backend {
		t.Errorf("pool after Remove and two Adds: %v", names(bal.pool))
	}
}

func names(pool []*Backend) []string {
	var s []string
	for _, b := range pool {
		s = append(s, b.Name)
	}
	return s
}

// serve runs bal on a fresh listener and returns its address and a channel
// that receives Serve's result.
func serve(t *testing.T, bal *Balancer) (string, <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- bal.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = bal.Shutdown(ctx)
	})
	return ln.Addr().String(), served
}

func TestShutdownWaitsForInFlight(t *testing.T) {
	g := newGate()
	defer g.open()
	be := newTestBackend(t, 1, g.handler)
	bal := New(testOptions(nil))
	bal.Add(be.Backend)
	addr, served := serve(t, bal)
	client := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(client.CloseIdleConnections)

	type result struct {
		code int
		body string
		err  error
	}
	res := make(chan result, 1)
	go func() {
		resp, err := client.Get("http://" + addr + "/held")
		if err != nil {
			res <- result{err: err}
			return
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		res <- result{resp.StatusCode, string(body), err}
	}()
	g.waitArrivals(t, 1)

	shutdown := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		shutdown <- bal.Shutdown(ctx)
	}()
	// Shutdown has begun once the listener is closed.
	testutil.WaitFor(t, 15*time.Second, "the balancer to stop accepting connections in Shutdown", func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return true
		}
		c.Close()
		return false
	})
	select {
	case err := <-shutdown:
		t.Fatalf("Shutdown returned %v with a request in flight", err)
	case r := <-res:
		t.Fatalf("the in-flight request ended during Shutdown: %+v", r)
	default:
	}

	g.open()
	select {
	case r := <-res:
		if r.err != nil || r.code != http.StatusOK || r.body != "released" {
			t.Errorf("in-flight request: %+v, want 200 released", r)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the in-flight request did not complete")
	}
	select {
	case err := <-shutdown:
		if err != nil {
			t.Errorf("Shutdown() = %v, want nil", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Shutdown did not return after the last request completed")
	}
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve() = %v, want nil after Shutdown", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Serve did not return after Shutdown")
	}
}

func TestShutdownDeadline(t *testing.T) {
	g := newGate()
	defer g.open()
	be := newTestBackend(t, 1, g.handler)
	bal := New(testOptions(nil))
	bal.Add(be.Backend)
	addr, _ := serve(t, bal)
	client := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(client.CloseIdleConnections)

	errc := make(chan error, 1)
	go func() {
		resp, err := client.Get("http://" + addr + "/held")
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		errc <- err
	}()
	g.waitArrivals(t, 1)

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := bal.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown() = %v, want context.DeadlineExceeded", err)
	}
	// Past the deadline the connections are closed under the request.
	select {
	case err := <-errc:
		if err == nil {
			t.Error("the held request succeeded though Shutdown gave up on it")
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the held request was not cut off after Shutdown's deadline")
	}
}

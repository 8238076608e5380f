package balancer

import (
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fullBacklog returns the address of a listener that never accepts and
// whose accept backlog is full: a connection to it times out, as one to a
// flooded single-threaded model server does.
func fullBacklog(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port))
	for i := 0; ; i++ {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
				t.Fatalf("filling the backlog: %v", err)
			}
			return addr
		}
		t.Cleanup(func() { c.Close() })
		if i == 100 {
			t.Fatal("100 connections accepted into a backlog of 0")
		}
	}
}

func reported(be *Backend) bool {
	select {
	case <-be.Failed():
		return true
	default:
		return false
	}
}

func (b *Balancer) inRotation(be *Backend) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return be.inRotation
}

// TestBusyIsNotDead: a backend whose connect times out (its backlog is
// full), or that refuses while its owner says it is alive, stays in
// rotation; the request goes to another backend. One that refuses while
// not alive is ejected, as before.
func TestBusyIsNotDead(t *testing.T) {
	for _, tt := range []struct {
		name      string
		addr      func(t *testing.T) string
		alive     func() bool
		wantEject bool
	}{
		{"connect timeout", fullBacklog, nil, false},
		{"refused, alive", closedAddr, func() bool { return true }, false},
		{"refused, not alive", closedAddr, func() bool { return false }, true},
		{"refused, owner cannot tell", closedAddr, nil, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b1 := NewBackend(1, "replica-1", tt.addr(t))
			b1.Alive = tt.alive
			b2 := newTestBackend(t, 2, nil)
			// Round robin makes the first choice b1.
			bal, srv := newTestBalancer(t, testOptions(func(o *Options) { o.Policy = &RoundRobin{}; o.Retries = 1; o.ConnectTimeout = 200 * time.Millisecond }), b1, b2.Backend)
			code, from, body := get(t, srv.Client(), srv.URL)
			if code != http.StatusOK || from != "replica-2" {
				t.Fatalf("answer %d from %q (%s), want 200 from replica-2", code, from, body)
			}
			if reported(b1) != tt.wantEject || bal.inRotation(b1) == tt.wantEject {
				t.Errorf("replica-1 reported failed %v, in rotation %v; want ejected %v", reported(b1), bal.inRotation(b1), tt.wantEject)
			}
		})
	}
}

// TestBusyWaitsWithinQueueTimeout: when the only backend stays busy, the
// request tries it again until its queue timeout, then gets 503 with
// Retry-After; the backend stays in rotation. Busy tries do not use up
// the retries.
func TestBusyWaitsWithinQueueTimeout(t *testing.T) {
	be := NewBackend(1, "replica-1", fullBacklog(t))
	// 2 s of 100 ms connection attempts: room for several tries even on a
	// busy machine (one that took 700 ms made only two).
	bal, srv := newTestBalancer(t, testOptions(func(o *Options) {
		o.Retries = 1
		o.ConnectTimeout = 100 * time.Millisecond
		o.QueueTimeout = new(2 * time.Second)
	}), be)
	a := send(srv.Client(), srv.URL)
	if a.code != http.StatusServiceUnavailable || a.retryAfter == "" || !strings.Contains(a.body, "queue timeout") {
		t.Fatalf("answer %+v, want 503 with Retry-After at the queue timeout", a)
	}
	if a.took < 2*time.Second || a.took > 5*time.Second {
		t.Errorf("answered after %s, want just past the 2s queue timeout", a.took)
	}
	if s := bal.Stats(); s.Retried < 3 || s.Rejected != 1 || s.Failed != 0 {
		t.Errorf("stats %+v: want several tries, 1 rejected", s)
	}
	if reported(be) || !bal.inRotation(be) {
		t.Error("a busy backend was ejected")
	}
}

// TestPanicThreshold: ejections stop short of leaving fewer than half of
// the backends in rotation; one added back can be ejected again.
func TestPanicThreshold(t *testing.T) {
	bal := New(testOptions(nil))
	var bs []*Backend
	for i := 1; i <= 5; i++ {
		be := NewBackend(i, "replica-"+strconv.Itoa(i), "127.0.0.1:1")
		bal.Add(be)
		bs = append(bs, be)
	}
	for _, be := range bs {
		bal.markFailed(be)
	}
	// 5 replicas: ejecting 2 leaves 3; a third would leave 2, under half.
	want := []bool{true, true, false, false, false}
	for i, be := range bs {
		if got := reported(be); got != want[i] || bal.inRotation(be) == want[i] {
			t.Errorf("%s: ejected %v, in rotation %v; want ejected %v", be.Name, got, bal.inRotation(be), want[i])
		}
	}
	bal.Add(bs[0]) // back after its recheck
	bal.markFailed(bs[2])
	if !reported(bs[2]) {
		t.Error("with 4 of 5 in rotation, a third ejection was refused")
	}
	// An ejected one gone for good no longer counts: of 4, 2 may be out.
	<-bal.Remove(bs[1])
	bal.markFailed(bs[3])
	bal.markFailed(bs[4])
	if !reported(bs[3]) || reported(bs[4]) {
		t.Errorf("of 4 replicas with 1 ejected, ejected a second %v (want true) and a third %v (want false)", reported(bs[3]), reported(bs[4]))
	}
}

package balancer

import (
	"bufio"
	"context"
	"io"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/fdbudget"
	"github.com/mattingctl/mattingctl/internal/testutil"
)

// rawGet sends GET / on a new connection to addr and returns the status
// line, or an error when none came within timeout.
func rawGet(addr string, timeout time.Duration) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); err != nil {
		return "", err
	}
	return bufio.NewReader(c).ReadString('\n')
}

// idleConns opens n connections to addr that send nothing.
func idleConns(t *testing.T, addr string, n int) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, n)
	for i := range conns {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		conns[i] = c
	}
	return conns
}

// TestMaxConnsLeavesTheExcessInTheBacklog: at the limit a new connection
// is not accepted (its request is not answered, and no file descriptor is
// spent on it) but is not refused either; once an idle connection closes,
// it is served.
func TestMaxConnsLeavesTheExcessInTheBacklog(t *testing.T) {
	be := newTestBackend(t, 1, nil)
	bal := New(testOptions(func(o *Options) { o.MaxConns = 3 }))
	bal.Add(be.Backend)
	addr, _ := serve(t, bal)

	if line, err := rawGet(addr, 5*time.Second); err != nil || line != "HTTP/1.1 200 OK\r\n" {
		t.Fatalf("below the limit: %q, %v; want 200", line, err)
	}
	idle := idleConns(t, addr, 3)
	testutil.WaitFor(t, 5*time.Second, "3 client connections open", func() bool { return bal.Stats().Conns == 3 })

	type answer struct {
		line string
		err  error
	}
	waiting := make(chan answer, 1)
	go func() {
		line, err := rawGet(addr, 10*time.Second)
		waiting <- answer{line, err}
	}()
	select {
	case a := <-waiting:
		t.Fatalf("a fourth connection past --max-conns 3 was answered: %q, %v", a.line, a.err)
	case <-time.After(500 * time.Millisecond):
	}
	if n := bal.Stats().Conns; n != 3 {
		t.Errorf("Stats().Conns = %d at the limit, want 3", n)
	}

	idle[0].Close()
	select {
	case a := <-waiting:
		if a.err != nil || a.line != "HTTP/1.1 200 OK\r\n" {
			t.Fatalf("the waiting connection got %q, %v; want 200", a.line, a.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the waiting connection was not served after an idle one closed")
	}
	for _, c := range idle[1:] {
		c.Close()
	}
	testutil.WaitFor(t, 5*time.Second, "no client connection open", func() bool { return bal.Stats().Conns == 0 })
}

// TestDerivedMaxConnsCountsConnections: MaxConns 0 is derived from the
// open-file limit, for one backend, and connections are counted for status
// and /metrics.
func TestDerivedMaxConnsCountsConnections(t *testing.T) {
	bal := New(testOptions(nil))
	want, err := fdbudget.MaxConns(0, fdbudget.OpenFileLimit(), 1, 0)
	if err != nil {
		t.Skipf("ulimit -n too low for the derived value: %v", err)
	}
	if bal.cfg().MaxConns != want {
		t.Errorf("MaxConns 0 became %d, want %d from ulimit -n %d", bal.cfg().MaxConns, want, fdbudget.OpenFileLimit())
	}
	addr, _ := serve(t, bal)
	idle := idleConns(t, addr, 5)
	testutil.WaitFor(t, 5*time.Second, "5 client connections open", func() bool { return bal.Stats().Conns == 5 })
	for _, c := range idle {
		c.Close()
	}
	testutil.WaitFor(t, 5*time.Second, "no client connection open", func() bool { return bal.Stats().Conns == 0 })
}

// emfileListener fails its first failures Accepts with EMFILE, as a
// process out of file descriptors does, counting every call.
type emfileListener struct {
	net.Listener
	failures atomic.Int64
	calls    atomic.Int64
}

func (l *emfileListener) Accept() (net.Conn, error) {
	if l.calls.Add(1) <= l.failures.Load() {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.Addr(), Err: syscall.EMFILE}
	}
	return l.Listener.Accept()
}

// TestAcceptEMFILEBacksOff: accept errors from running out of file
// descriptors are retried with a growing pause, not in a busy loop, and
// give their slot back, so the proxy serves again when descriptors are
// free.
func TestAcceptEMFILEBacksOff(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := &emfileListener{Listener: inner}
	ln.failures.Store(1 << 40)
	be := newTestBackend(t, 1, nil)
	bal := New(testOptions(func(o *Options) { o.MaxConns = 1 }))
	bal.Add(be.Backend)
	served := make(chan error, 1)
	go func() { served <- bal.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = bal.Shutdown(ctx)
		<-served
	})

	// net/http waits 5 ms after the first error and doubles the wait up to
	// 1 s: the 7th call comes 5+10+20+40+80+160 = 315 ms after the first.
	// A busy loop makes them within microseconds.
	start := time.Now()
	testutil.WaitFor(t, 5*time.Second, "7 accept calls", func() bool { return ln.calls.Load() >= 7 })
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Fatalf("7 accept calls in %s of EMFILE; want a backoff (about 315 ms)", d)
	}
	if n := bal.Stats().Conns; n != 0 {
		t.Errorf("Stats().Conns = %d after failed accepts, want 0", n)
	}

	// Descriptors free again: the one slot was not lost to the errors.
	ln.failures.Store(0)
	if line, err := rawGet(inner.Addr().String(), 5*time.Second); err != nil || line != "HTTP/1.1 200 OK\r\n" {
		t.Fatalf("after EMFILE ended: %q, %v; want 200", line, err)
	}
}

// TestShutdownAtMaxConns: a Serve whose Accept waits for a slot returns
// once Shutdown closes the listener.
func TestShutdownAtMaxConns(t *testing.T) {
	bal := New(testOptions(func(o *Options) { o.MaxConns = 1 }))
	addr, served := serve(t, bal)
	idleConns(t, addr, 2) // the second waits in the backlog
	testutil.WaitFor(t, 5*time.Second, "1 client connection open", func() bool { return bal.Stats().Conns == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_ = bal.Shutdown(ctx) // the idle connection outlives ctx: closed by force
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve() = %v, want nil after Shutdown", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after Shutdown while at the connection limit")
	}
}

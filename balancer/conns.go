package balancer

import (
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
)

// connLimitLogEvery spaces the warnings that the connection limit is
// reached, so that a flood logs a line a minute, not a line a connection.
const connLimitLogEvery = time.Minute

// limitListener accepts at most cap(sem) connections at once, as HAProxy's
// maxconn and golang.org/x/net/netutil.LimitListener do: it takes a slot
// before calling Accept, so that past the limit a new connection is not
// accepted at all and waits in the kernel's listen backlog, costing this
// process no file descriptor. The slot is given back when the connection
// is closed. Unlike netutil's, it counts the connections open, for status
// and /metrics, and says in the log when the limit is reached.
type limitListener struct {
	net.Listener
	sem  chan struct{} // a token per open connection
	open *atomic.Int64
	log  hclog.Logger

	done      chan struct{} // closed by Close: a blocked Accept returns
	closeOnce sync.Once

	lastWarn atomic.Int64 // unix nanoseconds of the last "limit reached" line
}

// newLimitListener limits ln to max connections at once, at least 1, and
// keeps their number in open.
func newLimitListener(ln net.Listener, max int, open *atomic.Int64, log hclog.Logger) *limitListener {
	return &limitListener{Listener: ln, sem: make(chan struct{}, max), open: open, log: log, done: make(chan struct{})}
}

// Accept waits for a free slot, then accepts. Accept errors, EMFILE
// included, are returned as they are, so that http.Server backs off on
// them (5 ms doubling to 1 s) instead of spinning.
func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	default:
		l.warnFull()
		select {
		case l.sem <- struct{}{}:
		case <-l.done:
			return nil, net.ErrClosed
		}
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	l.open.Add(1)
	return &limitConn{Conn: c, l: l}, nil
}

func (l *limitListener) warnFull() {
	now := time.Now().UnixNano()
	last := l.lastWarn.Load()
	if last != 0 && now-last < int64(connLimitLogEvery) {
		return
	}
	if l.lastWarn.CompareAndSwap(last, now) {
		l.log.Warn("client connection limit reached; new connections wait in the kernel's listen backlog until one closes",
			"max_conns", cap(l.sem))
	}
}

// Close closes the listener and wakes an Accept waiting for a slot.
func (l *limitListener) Close() error {
	err := l.Listener.Close()
	l.closeOnce.Do(func() { close(l.done) })
	return err
}

// limitConn gives its listener's slot back when it is first closed.
type limitConn struct {
	net.Conn
	l      *limitListener
	closed atomic.Bool
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	if c.closed.CompareAndSwap(false, true) {
		c.l.open.Add(-1)
		<-c.l.sem
	}
	return err
}

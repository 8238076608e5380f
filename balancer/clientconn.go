package balancer

import (
	"context"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// A client that goes away takes its request with it: net/http cancels a
// request's context when its HTTP/1 connection ends, by a reset or a FIN
// (nginx's default, proxy_ignore_client_abort off; HAProxy's option
// abortonclose), and when an HTTP/2 stream is reset. A request so
// cancelled leaves the queue, is not forwarded, and is not tried again.
//
// An HTTP/2 client can open a stream and reset it at once, thousands of
// times a second, on one connection (the rapid reset attack,
// CVE-2023-44487). Each such request costs the proxy a handler and, if it
// was forwarded before its reset arrived, a replica some work. So the
// proxy counts, for each client connection, its requests and those its
// client cancelled within prematureLifetime before they were answered, and
// closes a connection once at least prematureMin of its requests, and
// half or more of them, were cancelled so, as Envoy's
// premature_reset_total_stream_count does. An attacker that reconnects at
// once would get prematureMin more on each new connection; so its address
// is remembered for resetterMemory, and its connections meanwhile are
// closed at their prematureAgain-th early cancel.

const (
	// prematureMin is how many requests a connection's client may cancel
	// early before the connection may be closed for it.
	prematureMin = 100
	// prematureLifetime is how soon after its start a cancelled request
	// counts as cancelled early (Envoy's premature_reset_min_stream_lifetime).
	prematureLifetime = time.Second
	// prematureAgain is prematureMin for an address whose connection was
	// closed for it within resetterMemory.
	prematureAgain = 10
	resetterMemory = 10 * time.Second
	// maxResetters bounds the addresses remembered.
	maxResetters = 4096
)

type connKey struct{}

// clientConn is what the proxy keeps of one client connection: how its
// client cancels its requests, and the memory its responses hold ahead of
// it (spool.go), which Options.ResponseBuffer bounds per connection.
type clientConn struct {
	conn      net.Conn
	requests  atomic.Int64 // requests received on it
	premature atomic.Int64 // of those, cancelled early by its client
	closed    atomic.Bool  // closed for its cancelled requests
	ahead     atomic.Int64 // bytes of memory held by the connection's spools
}

// connContext is the server's ConnContext: it lets each request find its
// connection's clientConn.
func connContext(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, &clientConn{conn: c})
}

// clientConnOf returns r's connection's clientConn, nil when the server
// was not given connContext (a test's).
func clientConnOf(r *http.Request) *clientConn {
	cc, _ := r.Context().Value(connKey{}).(*clientConn)
	return cc
}

// countRequest counts x on its connection, when it ends: a request whose
// client cancelled it early counts against the connection, which is
// closed once its client has cancelled too many.
func (b *Balancer) countRequest(x *exchange) {
	cc := clientConnOf(x.r)
	if cc == nil {
		return
	}
	n := cc.requests.Add(1)
	if x.code != StatusClientGone || time.Since(x.start) >= prematureLifetime || x.r.ProtoMajor < 2 {
		return
	}
	p := cc.premature.Add(1)
	addr, now := clientAddr(x.r), time.Now()
	tooMany := p >= prematureMin && 2*p >= n || p >= prematureAgain && b.resetters.seen(addr, now)
	if !tooMany || !cc.closed.CompareAndSwap(false, true) {
		return
	}
	b.resetters.add(addr, now)
	b.outcomes.rapidResets.Add(1) // logged in the summary: an attacker reconnecting would flood the log
	_ = netConn(cc.conn).Close()
}

// resetters remembers the client addresses whose connections were closed
// for cancelling their requests early, each for resetterMemory.
type resetters struct {
	mu sync.Mutex // guards m
	m  map[string]time.Time
}

// seen reports whether addr had a connection closed within resetterMemory
// before now.
func (r *resetters) seen(addr string, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	at, ok := r.m[addr]
	return ok && now.Sub(at) < resetterMemory
}

// add remembers addr from now, forgetting the addresses remembered too
// long ago, or all once there are maxResetters.
func (r *resetters) add(addr string, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil || len(r.m) >= maxResetters {
		for a, at := range r.m {
			if now.Sub(at) >= resetterMemory {
				delete(r.m, a)
			}
		}
		if r.m == nil || len(r.m) >= maxResetters {
			r.m = make(map[string]time.Time)
		}
	}
	r.m[addr] = now
}

package balancer

import (
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
)

// One client address must not take every request body buffer: a few
// connections of slow uploads, each declaring 50 MiB and sending a byte
// now and then, once left every other client's POST a 503. So each client
// address (the connection's, not X-Forwarded-For, which a client writes
// itself) has a share, as nginx's limit_conn and HAProxy's stick tables
// give: at most Options.MaxClientUploads bodies being received at once,
// and at most Options.MaxClientBuffer bytes of the body budgets held by
// its bodies, being received, queued or in flight. An address over its
// share gets 429 with Retry-After; the others keep theirs. Bytes are
// charged as they are reserved, which is as they arrive (readbody.go).

// Why an upload was refused for its client address, or cut.
type limitReason int

const (
	limitUploads limitReason = iota // over MaxClientUploads
	limitBuffer                     // over MaxClientBuffer
	limitSlow                       // under MinUploadRate
	numLimits
)

var limitText = [numLimits]string{
	limitUploads: "client address over --max-client-uploads",
	limitBuffer:  "client address over --max-client-buffer",
	limitSlow:    "upload slower than --min-upload-rate",
}

var (
	errClientUploads = errors.New("too many uploads at once from your address; try again later")
	errClientBuffer  = errors.New("your address holds too much of the proxy's request body buffers; try again later")
)

// clientShares accounts for what each client address holds.
type clientShares struct {
	maxUploads int   // 0: no cap
	maxBytes   int64 // 0: no cap

	mu sync.Mutex // guards m, and uploads and bodies of every share in it
	m  map[string]*clientShare
}

// clientShare is one client address's account, kept while it has a body.
type clientShare struct {
	addr    string
	uploads int          // bodies being received
	bodies  int          // bodies not yet done, received or not
	bytes   atomic.Int64 // of the body budgets, reserved by its bodies
}

func newClientShares(maxUploads int, maxBytes int64) *clientShares {
	return &clientShares{maxUploads: maxUploads, maxBytes: maxBytes, m: make(map[string]*clientShare)}
}

// clientAddr is the address r's connection comes from, without its port.
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// begin starts an upload from addr and returns its share, or
// errClientUploads when addr is receiving MaxClientUploads already. The
// caller calls received when the body has arrived (or failed), and end
// when it is done with it.
func (c *clientShares) begin(addr string) (*clientShare, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.m[addr]
	if s == nil {
		s = &clientShare{addr: addr}
		c.m[addr] = s
	}
	if c.maxUploads > 0 && s.uploads >= c.maxUploads {
		return nil, errClientUploads
	}
	s.uploads++
	s.bodies++
	return s, nil
}

// received ends s's upload: its body has arrived, or failed to.
func (c *clientShares) received(s *clientShare) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s.uploads--
}

// end ends a body of s; an address with none left is forgotten.
func (c *clientShares) end(s *clientShare) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s.bodies--; s.bodies == 0 {
		delete(c.m, s.addr)
	}
}

// reserve charges n bytes to s, unless that would take it past
// MaxClientBuffer.
func (c *clientShares) reserve(s *clientShare, n int64) bool {
	if c.maxBytes <= 0 {
		s.bytes.Add(n)
		return true
	}
	return reserve(&s.bytes, n, c.maxBytes)
}

package balancer

import (
	"container/list"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/mattingctl/mattingctl/internal/httpserver"
)

// Defaults for the zero values of Options; the body size and timeouts are
// those of the nginx setup mattingctl replaces.
const (
	DefaultMaxBody         = 50 << 20
	DefaultClientTimeout   = time.Minute
	DefaultUpstreamTimeout = 600 * time.Second
	DefaultConnectTimeout  = time.Second
)

// Options configure a Balancer.
type Options struct {
	// Policy chooses among the backends in rotation. Nil means LeastConn.
	Policy Policy
	// MaxBody is the largest request body accepted, in bytes; a larger one
	// is answered 413 before anything reaches a backend. Zero means
	// DefaultMaxBody.
	MaxBody int64
	// ClientTimeout bounds reading a client's request headers, and each
	// pause while reading its body (nginx's client_header_timeout and
	// client_body_timeout). Zero means DefaultClientTimeout.
	ClientTimeout time.Duration
	// UpstreamTimeout bounds the wait for a backend's response headers once
	// the request is sent. Zero means DefaultUpstreamTimeout.
	UpstreamTimeout time.Duration
	// ConnectTimeout bounds connecting to a backend; short, so that a hung
	// backend is skipped fast. Zero means DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// MaxInflight caps the requests in flight on each backend; the excess
	// waits in the queue. Zero means no cap.
	MaxInflight int
	// QueueSize bounds the requests waiting for a backend with room; one
	// more is answered 503 at once. Zero means no queue.
	QueueSize int
	// QueueTimeout bounds a request's wait for a backend with room, in the
	// queue and retrying busy backends; past it the request is answered
	// 503. A request whose predicted wait is longer is answered 503 at
	// once (admission.go). Zero means no limit: a request waits until a
	// backend has room or its client goes away.
	QueueTimeout time.Duration
	// Retries is how many more backends a request may be sent to when one
	// refuses, resets or drops it before sending any response. A request
	// during which a backend died is retried once at most, so one poison
	// input cannot take down every backend in turn. Zero means none.
	Retries int
	// Observer is told of every finished request. Nil means none.
	Observer Observer
	// Logger receives the proxy's own errors. Nil means no logging.
	Logger hclog.Logger
	// MaxConns caps the client connections open at once (HAProxy's
	// maxconn). Past it a new connection is not accepted: it waits in the
	// kernel's listen backlog until one closes, so the process keeps file
	// descriptors for its replicas and control socket. Zero means no cap.
	MaxConns int
	// MaxBuffer bounds the request bodies held in memory, whether being
	// read, queued or in flight, and the responses read ahead of their
	// clients (ResponseBuffer), in bytes. A body is reserved a 64 KiB
	// chunk at a time as it arrives; one that finds no room goes to a file
	// in BufferDir. Zero means DefaultMaxBuffer(); Off means none: every
	// body goes to disk.
	MaxBuffer int64
	// MaxDiskBuffer bounds the request bodies held in files, in bytes; a
	// body is reserved its whole declared length when it goes to disk.
	// Past both budgets a request is answered 503 with Retry-After. Zero
	// means DefaultMaxDiskBuffer; Off means none: a body that does not fit
	// in memory gets 503.
	MaxDiskBuffer int64
	// BufferDir is where bodies that do not fit in memory are written,
	// each to a file removed when its request ends. Empty means
	// os.TempDir().
	BufferDir string
	// ResponseBuffer is the largest response, by its Content-Length, read
	// from the backend ahead of the client, into memory counted in
	// MaxBuffer, so that the backend is released as soon as it has sent
	// the response rather than when a slow client has received it (nginx's
	// proxy_buffering). Responses without a Content-Length, event streams,
	// larger ones, and any that find no room in MaxBuffer pass through as
	// they arrive. Zero means DefaultResponseBuffer; Off means none.
	ResponseBuffer int64
	// MaxUpgraded caps the upgrade requests (WebSocket) open at once,
	// handshaking or upgraded, over all backends; one more is answered
	// 503 before reaching a backend. An upgraded connection holds no
	// MaxInflight slot. Zero means no cap.
	MaxUpgraded int
	// TLS, when set, makes the proxy port HTTPS: connections are TLS
	// handshaken with it, and HTTP/2 is offered by ALPN (h2, then
	// http/1.1) unless its NextProtos say otherwise. Nil means cleartext:
	// HTTP/1.1, and h2c with prior knowledge or by Upgrade.
	TLS *tls.Config
	// AccessLog is told of every request answered, for the access log.
	// Nil means none.
	AccessLog AccessLogger
	// UpstreamH2C makes the proxy speak HTTP/2 over cleartext with prior
	// knowledge (h2c) to the backends, as gRPC servers need, multiplexing
	// requests over one connection per backend (upstream.go). Upgrade
	// requests (WebSocket) are then answered 501. False means HTTP/1.1.
	UpstreamH2C bool
}

func (o *Options) setDefaults() {
	if o.Policy == nil {
		o.Policy = LeastConn{}
	}
	if o.MaxBody <= 0 {
		o.MaxBody = DefaultMaxBody
	}
	if o.ClientTimeout <= 0 {
		o.ClientTimeout = DefaultClientTimeout
	}
	if o.UpstreamTimeout <= 0 {
		o.UpstreamTimeout = DefaultUpstreamTimeout
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = DefaultConnectTimeout
	}
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	if o.MaxBuffer == 0 {
		o.MaxBuffer = DefaultMaxBuffer()
	}
	if o.MaxDiskBuffer == 0 {
		o.MaxDiskBuffer = DefaultMaxDiskBuffer
	}
	if o.BufferDir == "" {
		o.BufferDir = os.TempDir()
	}
	if o.ResponseBuffer == 0 {
		o.ResponseBuffer = DefaultResponseBuffer
	}
}

// Balancer is an HTTP reverse proxy over a changing set of backends.
type Balancer struct {
	opts      Options
	proxy     *httputil.ReverseProxy
	transport *http.Transport
	server    *http.Server
	bufs      *buffers // the request bodies' budgets

	// mu guards pool, queue, scratch, serviceTime, ejected and every
	// backend's inflight, inRotation, ejected, idle, current and latency.
	mu          sync.Mutex
	pool        []*Backend  // backends in rotation, in the order they were added
	queue       list.List   // of *waiter, oldest first
	scratch     []*Backend  // pickLocked's buffer
	serviceTime ewma        // of all responses, for admission and Retry-After
	ejected     int         // backends out of rotation by markFailed
	coldShed    *time.Timer // sheds the queue until a response is timed; nil when not armed

	queued   atomic.Int64  // queue length, for lock-free status reads
	rejected atomic.Uint64 // answered 503: no backend, queue full or timed out
	retried  atomic.Uint64 // attempts after the first
	failed   atomic.Uint64 // answered 502 or 504: no backend answered
	conns    atomic.Int64  // client connections open
	upgrades atomic.Int64  // upgrade requests open, for MaxUpgraded
	outcomes outcomes      // the rejected and failed requests by reason, for the summary

	h2c *h2cUpgrades // connections switched to HTTP/2 by Upgrade: h2c
	// connGoroutines counts the server's connections whose goroutine has
	// not ended, for Serve to wait for after a shutdown.
	connGoroutines httpserver.Conns
}

// Stats are the balancer's counters since it started.
type Stats struct {
	// Queued is the number of requests waiting for a backend now.
	Queued int
	// Rejected counts requests answered 503: no backend in rotation, queue
	// full, queue timeout, or request body buffers full.
	Rejected uint64
	// Retried counts attempts after the first, on another backend.
	Retried uint64
	// Failed counts requests no backend answered (502 or 504).
	Failed uint64
	// Conns is the number of client connections open now, at most
	// Options.MaxConns.
	Conns int64
	// MemoryBuffered and DiskBuffered are the bytes of request bodies held
	// in memory and on disk now (reserved: a chunk, or a spilled body's
	// declared length); MemoryBuffered includes responses read ahead of
	// their clients (ResponseBuffer).
	MemoryBuffered int64
	DiskBuffered   int64
}

// Stats returns the balancer's counters.
func (b *Balancer) Stats() Stats {
	return Stats{
		Queued:   int(b.queued.Load()),
		Rejected: b.rejected.Load(),
		Retried:  b.retried.Load(),
		Failed:   b.failed.Load(),
		Conns:    b.conns.Load(),

		MemoryBuffered: b.bufs.mem.Load(),
		DiskBuffered:   b.bufs.disk.Load(),
	}
}

// New returns a balancer with no backends in rotation.
func New(opts Options) *Balancer {
	opts.setDefaults()
	b := &Balancer{opts: opts, bufs: newBuffers(opts.MaxBuffer, opts.MaxDiskBuffer, opts.BufferDir)}
	b.transport = &http.Transport{
		Proxy: nil,
		DialContext: (&net.Dialer{
			Timeout:   opts.ConnectTimeout,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		// The default keeps 2 idle connections per host, which under load
		// means a new TCP connection for most requests.
		MaxIdleConns:          0,
		MaxIdleConnsPerHost:   1024,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: opts.UpstreamTimeout,
		DisableCompression:    true,
		// A request the size of the original load test's (~220 KB) fits the write
		// buffer whole and goes out in one write system call; a smaller
		// buffer hands the rest to a 32 KiB copy loop, a call per chunk.
		// There are about as many upstream connections as requests in
		// flight, so this costs 256 KiB per request being served.
		WriteBufferSize: 256 << 10,
		ReadBufferSize:  64 << 10,
	}
	if opts.UpstreamH2C {
		useH2C(b.transport)
	}
	errLog := opts.Logger.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true})
	b.proxy = &httputil.ReverseProxy{
		Rewrite:        rewrite,
		Transport:      b.transport,
		FlushInterval:  -1, // stream responses as the backend writes them
		BufferPool:     bufferPool{},
		ErrorLog:       errLog,
		ModifyResponse: modifyResponse,
		ErrorHandler:   proxyError,
	}
	b.server = &http.Server{
		Handler:           h2cHandler{b},
		ReadHeaderTimeout: opts.ClientTimeout,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          errLog,
		ConnContext:       connContext,
		ConnState:         b.connGoroutines.Track,
	}
	// HTTP/1.1, and HTTP/2 over cleartext with prior knowledge (h2c), as
	// gRPC clients speak it: the preface is never taken for an HTTP/1
	// request.
	b.server.Protocols = new(http.Protocols)
	b.server.Protocols.SetHTTP1(true)
	b.server.Protocols.SetUnencryptedHTTP2(true)
	b.h2c = newH2CUpgrades(b.server)
	if opts.TLS != nil {
		b.server.Protocols.SetHTTP2(true)
	}
	return b
}

// Add puts be into rotation.
func (b *Balancer) Add(be *Backend) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if be.inRotation {
		return
	}
	be.inRotation = true
	be.idle = nil
	b.unejectLocked(be)
	b.pool = append(b.pool, be)
	b.dispatchLocked()
}

// Remove takes be out of rotation: no new request is sent to it. The
// returned channel is closed once be has no request in flight and no
// upgraded connection open, which is when a draining replica may be
// stopped.
func (b *Balancer) Remove(be *Backend) <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.removeLocked(be)
	if be.idle != nil {
		return be.idle // already draining: the earlier caller waits too
	}
	idle := make(chan struct{})
	if be.inflight.Load() == 0 && be.upgraded.Load() == 0 {
		close(idle)
	} else {
		be.idle = idle
	}
	return idle
}

func (b *Balancer) removeLocked(be *Backend) {
	for i, p := range b.pool {
		if p == be {
			b.pool = append(b.pool[:i:i], b.pool[i+1:]...)
			break
		}
	}
	be.inRotation = false
	b.unejectLocked(be)
}

// Serve accepts connections on ln and proxies their requests until
// Shutdown; it then returns nil, once every connection's goroutine has
// ended. At most Options.MaxConns connections are open at once.
func (b *Balancer) Serve(ln net.Listener) error {
	ln = newLimitListener(ln, b.opts.MaxConns, &b.conns, b.opts.Logger)
	stop, summarized := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(summarized)
		b.summarize(summaryEvery, stop)
	}()
	defer func() {
		close(stop)
		<-summarized
	}()
	if err := b.server.Serve(b.tlsListener(trackingListener{ln})); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	// Shut down: every connection ends by the end of Shutdown.
	b.connGoroutines.Wait()
	return nil
}

// Shutdown stops accepting connections and waits, until ctx ends, for the
// requests in flight to complete. Then it closes every connection.
func (b *Balancer) Shutdown(ctx context.Context) error {
	b.h2c.beginShutdown()
	err := b.server.Shutdown(ctx)
	if err != nil {
		_ = b.server.Close()
	}
	if herr := b.h2c.wait(ctx); err == nil {
		err = herr
	}
	b.transport.CloseIdleConnections()
	return err
}

// bufferPool lends the proxy its 32 KiB copy buffers.
type bufferPool struct{}

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (bufferPool) Get() []byte  { return *copyBuffers.Get().(*[]byte) }
func (bufferPool) Put(b []byte) { copyBuffers.Put(&b) }

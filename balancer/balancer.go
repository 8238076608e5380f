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

	"github.com/mattingctl/mattingctl/internal/fdbudget"
	"github.com/mattingctl/mattingctl/internal/httpserver"
)

// Options configure a Balancer.
type Options struct {
	// Limits are the proxy's limits, each with its own zero value's
	// meaning; DefaultLimits are `mattingctl up`'s.
	Limits
	// Policy chooses among the backends in rotation. Nil means LeastConn.
	Policy Policy
	// Observer is told of every finished request. Nil means none.
	Observer Observer
	// Logger receives the proxy's own errors. Nil means no logging.
	Logger hclog.Logger
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
	// Share, when not nil, is the balancer whose body buffers' budgets
	// (MaxBuffer, MaxDiskBuffer, in its BufferDir) and client-address
	// shares (MaxClientUploads, MaxClientBuffer) this one draws on too,
	// in place of its own: one budget for the services behind one port.
	// Nil means its own.
	Share *Balancer
}

// resolve fills in what the zero values of o stand for where the
// balancer itself decides it: the policy, the logger, the buffer
// directory, and MaxConns, derived for one backend.
func (o *Options) resolve() {
	if o.Policy == nil {
		o.Policy = LeastConn{}
	}
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	if o.BufferDir == "" {
		o.BufferDir = os.TempDir()
	}
	if o.MaxConns == 0 {
		n, err := fdbudget.MaxConns(0, fdbudget.OpenFileLimit(), 1, o.MostInflight())
		if err != nil {
			o.Logger.Warn("client connections capped at the least", "max_conns", fdbudget.MinDefault, "error", err)
			n = fdbudget.MinDefault
		}
		o.MaxConns = n
	}
}

// Balancer is an HTTP reverse proxy over a changing set of backends.
type Balancer struct {
	// opts holds the Options in force, never changed once stored:
	// Reconfigure stores a new copy, so that a request reads one
	// consistent set (live.go).
	opts      atomic.Pointer[Options]
	batches   batcher
	proxy     *httputil.ReverseProxy
	transport liveTransport // the upstream transport; Reconfigure swaps it
	server    *http.Server
	router    *Router       // set before Serve; nil: b serves every request itself
	bufs      *buffers      // the request bodies' budgets
	clients   *clientShares // each client address's share of them
	watchers  *watchers     // checks the requests' watchdogs (watchdog.go)

	// mu guards pool, queue, scratch, serviceTime, ejected and every
	// backend's inflight, inRotation, ejected, idle, current, latency and
	// limiter.
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
	// arrived counts the requests that asked for a backend (retries not
	// again), completed the attempts that ended on one (load.go).
	arrived   atomic.Uint64
	completed atomic.Uint64
	conns     atomic.Int64 // client connections open
	upgrades  atomic.Int64 // upgrade requests open, for MaxUpgraded
	outcomes  outcomes     // the rejected and failed requests by reason, for the summary
	// spoolWarned is when a response last could not be spooled to disk
	// (unix nanoseconds), to log it once a minute.
	spoolWarned atomic.Int64

	quarantine     *quarantine   // requests that broke backends twice (poison.go)
	quarantined    atomic.Uint64 // requests put in quarantine
	quarantineHits atomic.Uint64 // requests answered 502 because they were quarantined
	exchanges      atomic.Uint64 // the last exchange.id given
	limited        atomic.Uint64 // uploads refused or cut for their client address's share or pace
	resetters      resetters     // addresses closed for rapid reset (clientconn.go)

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
	// MemoryBuffered and DiskBuffered are the bytes held in memory and on
	// disk now by request bodies, reserved as they arrive, and by
	// responses read ahead of their clients (ResponseBuffer), a chunk at
	// a time.
	MemoryBuffered int64
	DiskBuffered   int64
	// Quarantined counts the requests put in quarantine: their deliveries
	// killed or reset replicas twice, each time alone (Options.Quarantine);
	// QuarantineHits the requests then answered 502 at once as
	// quarantined. Both are counted in Failed too.
	Quarantined    uint64
	QuarantineHits uint64
	// Limited counts the uploads refused (429) because their client
	// address was over its share, or cut (408) because they were slower
	// than Options.MinUploadRate.
	Limited uint64
	// SendTimeouts counts the responses broken off because their client
	// took nothing for Options.SendTimeout, UpstreamTimeouts those broken
	// off because their backend sent nothing for Options.UpstreamTimeout
	// after its response headers.
	SendTimeouts     uint64
	UpstreamTimeouts uint64
	// Batches counts the batches sent (Limits.Batch) and Batched the
	// requests in them; BatchesSplit the batches a backend answered not
	// as a batch, whose requests then went alone.
	Batches, Batched, BatchesSplit uint64
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
		Quarantined:    b.quarantined.Load(),
		QuarantineHits: b.quarantineHits.Load(),
		Limited:        b.limited.Load(),

		SendTimeouts:     b.outcomes.brokenOff[sendTimeout].Load(),
		UpstreamTimeouts: b.outcomes.brokenOff[upstreamTimeout].Load(),

		Batches:      b.batches.sent.Load(),
		Batched:      b.batches.items.Load(),
		BatchesSplit: b.batches.split.Load(),
	}
}

// New returns a balancer with no backends in rotation. It does not check
// opts.Limits, each of which says what its zero means: the supervisor's
// validation refuses the values that mean nothing, naming their flags.
func New(opts Options) *Balancer {
	opts.resolve()
	b := &Balancer{bufs: newBuffers(opts.MaxBuffer, opts.MaxDiskBuffer, opts.BufferDir),
		quarantine: newQuarantine(opts.Quarantine), clients: newClientShares(opts.MaxClientUploads, opts.maxClientBuffer()),
		watchers: newWatchers(opts.UpstreamTimeout, opts.SendTimeout)}
	b.opts.Store(&opts)
	if opts.Share != nil {
		b.bufs, b.clients = opts.Share.bufs, opts.Share.clients
	} else {
		b.bufs.onRemade = func(dir string) {
			opts.Logger.Warn("the buffer directory had gone (a tmp cleaner?): made it again", "dir", dir)
		}
	}
	b.transport.swap(newTransport(&opts))
	errLog := opts.Logger.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true})
	b.proxy = &httputil.ReverseProxy{
		Rewrite:   rewrite,
		Transport: &b.transport,
		// A response of unknown length (a stream) or an event stream is
		// flushed after every write, as ReverseProxy does for them
		// whatever this says; one with a Content-Length goes out as the
		// writes fill the server's buffers, its headers with its first
		// bytes (a flush per write would send the headers alone, from a
		// timer's goroutine, and the body in small writes).
		FlushInterval:  0,
		BufferPool:     bufferPool{},
		ErrorLog:       errLog,
		ModifyResponse: modifyResponse,
		ErrorHandler:   proxyError,
	}
	b.server = &http.Server{
		Handler:           ownGoroutine{h2cHandler{b}},
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
	// An HTTP/2 client that takes nothing of its connection at all gets
	// no stream reset written either: the send timeout closes the whole
	// connection instead.
	b.server.HTTP2 = &http.HTTP2Config{WriteByteTimeout: opts.SendTimeout}
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
	b.fitLimiterLocked(be, b.cfg(), time.Now())
	be.idle = nil
	be.removedAt = time.Time{}
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
	if be.removedAt.IsZero() {
		be.removedAt = time.Now()
	}
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
	ln = newLimitListener(ln, b.cfg().MaxConns, &b.conns, b.cfg().Logger)
	stop := make(chan struct{})
	ended := b.background(stop, true)
	defer func() {
		close(stop)
		ended()
	}()
	if err := b.server.Serve(b.tlsListener(ln)); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	// Shut down: every connection ends by the end of Shutdown.
	b.connGoroutines.Wait()
	b.watchers.close()
	return nil
}

// ServeRouted is Serve for a balancer that a router in front of another's
// server hands requests to (SetRouter): it does the balancer's background
// work (the periodic summary, giving memory back) until stop is closed,
// which its owner does once that server's Serve has returned. Giving
// memory back is the serving balancer's: it follows the connections, and
// they are its.
func (b *Balancer) ServeRouted(stop <-chan struct{}) {
	b.background(stop, false)()
	b.watchers.close()
}

// background starts the balancer's periodic work until stop is closed,
// giving memory back too if release; wait returns once it has ended.
func (b *Balancer) background(stop <-chan struct{}, release bool) (wait func()) {
	summarized, released := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(summarized)
		b.summarize(summaryEvery, stop)
	}()
	if !release {
		close(released)
		return func() { <-summarized }
	}
	go func() {
		defer close(released)
		b.releaseMemory(stop)
	}()
	return func() {
		<-summarized
		<-released
	}
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

// upstreamIdleTimeout is how long a connection to a backend is kept idle
// for reuse: long enough for any steady load, short enough that a burst's
// connections do not linger.
const upstreamIdleTimeout = 30 * time.Second

// maxIdlePerBackend is how many idle connections are kept per backend: its
// cap of requests in flight, plus a few, or 1024 with no cap.
func maxIdlePerBackend(maxInflight int) int {
	if maxInflight <= 0 {
		return 1024
	}
	return maxInflight + 4
}

// copySize is the size of the proxy's copy buffers. A response being
// written to its client holds one until it is done, so a slow reader holds
// one too: 64 KiB would save a few writes on a 300 KB answer, and double
// what 10,000 slow readers hold (to 640 MiB).
const copySize = 32 << 10

// bufferPool lends ReverseProxy its copy buffers.
type bufferPool struct{}

var copyBuffers = sync.Pool{New: func() any { return new([copySize]byte) }}

func (bufferPool) Get() []byte { return copyBuffers.Get().(*[copySize]byte)[:] }

func (bufferPool) Put(b []byte) {
	if len(b) == copySize {
		copyBuffers.Put((*[copySize]byte)(b))
	}
}

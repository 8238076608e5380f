package balancer

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httputil"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Defaults for the zero values of Options; the body size and timeouts are
// those of the nginx setup mattingctl replaces.
const (
	DefaultMaxBody         = 50 << 20
	DefaultClientTimeout   = time.Minute
	DefaultUpstreamTimeout = 600 * time.Second
	DefaultConnectTimeout  = 2 * time.Second
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
	// ConnectTimeout bounds connecting to a backend. Zero means
	// DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// Logger receives the proxy's own errors. Nil means no logging.
	Logger hclog.Logger
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
}

// Balancer is an HTTP reverse proxy over a changing set of backends.
type Balancer struct {
	opts      Options
	proxy     *httputil.ReverseProxy
	transport *http.Transport
	server    *http.Server

	mu   sync.Mutex // guards pool and every backend's inflight, inRotation and idle
	pool []*Backend // backends in rotation, in the order they were added
}

// New returns a balancer with no backends in rotation.
func New(opts Options) *Balancer {
	opts.setDefaults()
	b := &Balancer{opts: opts}
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
		WriteBufferSize:       64 << 10,
		ReadBufferSize:        64 << 10,
	}
	errLog := opts.Logger.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true})
	b.proxy = &httputil.ReverseProxy{
		Rewrite:        rewrite,
		Transport:      b.transport,
		FlushInterval:  -1, // stream responses as the backend writes them
		BufferPool:     bufferPool{},
		ErrorLog:       errLog,
		ModifyResponse: countServerErrors,
		ErrorHandler:   b.proxyError,
	}
	b.server = &http.Server{
		Handler:           b,
		ReadHeaderTimeout: opts.ClientTimeout,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          errLog,
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
	b.pool = append(b.pool, be)
}

// Remove takes be out of rotation: no new request is sent to it. The
// returned channel is closed once be has no request in flight, which is
// when a draining replica may be stopped.
func (b *Balancer) Remove(be *Backend) <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, p := range b.pool {
		if p == be {
			b.pool = append(b.pool[:i:i], b.pool[i+1:]...)
			break
		}
	}
	be.inRotation = false
	if be.idle != nil {
		return be.idle // already draining: the earlier caller waits too
	}
	idle := make(chan struct{})
	if be.inflight.Load() == 0 {
		close(idle)
	} else {
		be.idle = idle
	}
	return idle
}

// acquire chooses a backend for r and counts the request in flight on it,
// or returns nil when no backend is in rotation.
func (b *Balancer) acquire(r *http.Request) *Backend {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.pool) == 0 {
		return nil
	}
	be := b.opts.Policy.Select(b.pool, r)
	if be != nil {
		be.inflight.Add(1)
	}
	return be
}

func (b *Balancer) release(be *Backend) {
	be.requests.Add(1)
	b.mu.Lock()
	defer b.mu.Unlock()
	if be.inflight.Add(-1) == 0 && be.idle != nil {
		close(be.idle)
		be.idle = nil
	}
}

// Serve accepts connections on ln and proxies their requests until
// Shutdown; it then returns nil.
func (b *Balancer) Serve(ln net.Listener) error {
	if err := b.server.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Shutdown stops accepting connections and waits, until ctx ends, for the
// requests in flight to complete. Then it closes every connection.
func (b *Balancer) Shutdown(ctx context.Context) error {
	err := b.server.Shutdown(ctx)
	if err != nil {
		_ = b.server.Close()
	}
	b.transport.CloseIdleConnections()
	return err
}

// bufferPool lends the proxy its 32 KiB copy buffers.
type bufferPool struct{}

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (bufferPool) Get() []byte  { return *copyBuffers.Get().(*[]byte) }
func (bufferPool) Put(b []byte) { copyBuffers.Put(&b) }

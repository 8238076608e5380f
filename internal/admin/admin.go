// Package admin serves what orchestrators and monitoring ask of an
// instance, on a listener apart from the proxy's port:
//
//	/livez    200 while the instance is responsive (a crashed replica does not fail it)
//	/readyz   200 while at least the minimum of replicas are ready; 503 once stopping
//	/metrics  Prometheus text
//	/         the dashboard (dashboard.go), when set
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/net/netutil"

	"github.com/mattingctl/mattingctl/internal/httpserver"
)

// Source is what the admin endpoints read from an instance.
type Source interface {
	// Readiness says how many replicas are ready, how many /readyz needs,
	// and whether a stop has begun.
	Readiness() Readiness
	// Ping returns once the instance's own state can be read; /livez
	// fails while it does not return.
	Ping()
}

// Readiness is what /readyz answers from.
type Readiness struct {
	Ready    int  `json:"ready"`
	MinReady int  `json:"min_ready"`
	Stopping bool `json:"stopping"`
}

// OK reports whether /readyz answers 200.
func (r Readiness) OK() bool { return !r.Stopping && r.Ready >= r.MinReady }

// The heartbeat pings the instance every HeartbeatInterval; /livez fails
// when no ping has returned for LivenessTimeout.
const (
	HeartbeatInterval = time.Second
	LivenessTimeout   = 10 * time.Second
)

// Server is the admin listener.
type Server struct {
	ln     net.Listener
	srv    *httpserver.Server // nil until Start
	cancel context.CancelFunc
	done   chan struct{} // closed when the heartbeat has stopped
	dash   *dashboard    // nil: no dashboard
}

// The admin listener serves probes, scrapes and a dashboard, a few clients
// at a time; its limits keep a flood of connections to it (idle,
// keep-alive or slow) from taking the file descriptors the proxy and the
// replicas need. Its connection cap is Listen's; past it a new connection
// waits in the kernel's listen backlog, costing no descriptor.
const (
	// readHeaderTimeout closes a connection that has not sent its request
	// headers in time, a new one or an idle keep-alive one alike.
	readHeaderTimeout = 5 * time.Second
	// readTimeout bounds reading a whole request; the largest body taken
	// is an action's, under 1 KiB.
	readTimeout = 10 * time.Second
	// writeTimeout bounds a response from its request's headers on. The
	// dashboard polls (no stream); only the actions, which wait for
	// replicas to be ready and need the token, lift it.
	writeTimeout = 30 * time.Second
	// idleTimeout closes a keep-alive connection with no new request.
	idleTimeout = 30 * time.Second
	// maxHeaderBytes bounds a request's headers: an Authorization header
	// and a browser's usual ones fit many times over.
	maxHeaderBytes = 16 << 10
)

// Listen binds the admin listener to addr (HOST:PORT), which will hold at
// most maxConns connections at once (at least 1); "none" returns a nil
// *Server, on which every method is a no-op.
func Listen(addr string, maxConns int) (*Server, error) {
	if addr == "none" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		switch {
		case errors.Is(err, syscall.EADDRINUSE):
			return nil, fmt.Errorf("admin listener %s: already in use; choose another with --admin HOST:PORT, or --admin none", addr)
		case errors.Is(err, syscall.EACCES):
			return nil, fmt.Errorf("admin listener %s: permission denied (ports below 1024 need root); choose another with --admin", addr)
		}
		return nil, fmt.Errorf("admin listener %s (--admin): %w", addr, err)
	}
	return &Server{ln: netutil.LimitListener(ln, max(maxConns, 1))}, nil
}

// Addr is the listener's address, "" when off.
func (a *Server) Addr() string {
	if a == nil {
		return ""
	}
	return a.ln.Addr().String()
}

// SetDashboard serves d at / from Start on. Its actions need d.Token on
// every address; on a loopback one, requests must also name a loopback
// host (guard.go).
func (a *Server) SetDashboard(d Dashboard) {
	if a == nil {
		return
	}
	tcp, ok := a.ln.Addr().(*net.TCPAddr)
	a.dash = &dashboard{Dashboard: d, loopback: ok && tcp.IP.IsLoopback()}
}

// Start serves the endpoints in the background until Close.
func (a *Server) Start(src Source, metrics http.Handler, log hclog.Logger) {
	if a == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	a.cancel, a.done = cancel, make(chan struct{})
	hb := newHeartbeat(LivenessTimeout)
	go func() {
		defer close(a.done)
		hb.run(ctx, src, HeartbeatInterval)
	}()
	mux := handler(src, metrics, hb)
	if a.dash != nil {
		a.dash.routes(mux)
	}
	a.srv = httpserver.Start(newHTTPServer(mux), a.ln, func(err error) {
		log.Error("admin listener stopped", "error", err)
	})
}

// Close stops the listener and the heartbeat. It returns once every
// handler has returned: past a second's grace, their connections are
// closed.
func (a *Server) Close() {
	if a == nil {
		return
	}
	if a.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = a.srv.Shutdown(ctx)
		cancel()
		a.cancel()
		<-a.done
	}
	a.ln.Close()
}

// heartbeat records when the instance last answered a ping.
type heartbeat struct {
	timeout time.Duration
	last    atomic.Int64 // unix nanoseconds
}

func newHeartbeat(timeout time.Duration) *heartbeat {
	h := &heartbeat{timeout: timeout}
	h.last.Store(time.Now().UnixNano())
	return h
}

// run pings src every interval until ctx ends. A ping that hangs holds
// run up with it, which is the point: the age then grows.
func (h *heartbeat) run(ctx context.Context, src Source, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			src.Ping()
			h.last.Store(time.Now().UnixNano())
		case <-ctx.Done():
			return
		}
	}
}

// stale returns how long the instance has not answered, when that is
// longer than the timeout, and 0 otherwise.
func (h *heartbeat) stale() time.Duration {
	if age := time.Since(time.Unix(0, h.last.Load())); age > h.timeout {
		return age
	}
	return 0
}

// handler serves /livez, /readyz and, when metrics is not nil, /metrics.
func handler(src Source, metrics http.Handler, hb *heartbeat) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, r *http.Request) {
		if age := hb.stale(); age > 0 {
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"live": false, "error": fmt.Sprintf("supervisor unresponsive for %s", age.Round(time.Second))})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"live": true})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		rd := src.Readiness()
		status := http.StatusOK
		if !rd.OK() {
			status = http.StatusServiceUnavailable
		}
		writeJSON(w, status, rd)
	})
	if metrics != nil {
		mux.Handle("GET /metrics", metrics)
	}
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// newHTTPServer is the admin listener's server for h: every phase of a
// connection has a timeout, so that none holds one of its few slots.
func newHTTPServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
	}
}

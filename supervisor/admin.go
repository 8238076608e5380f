package supervisor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// The admin listener serves what orchestrators and monitoring ask of an
// instance, apart from the proxy's port:
//
//	/livez    200 while the supervisor is responsive (a crashed replica does not fail it)
//	/readyz   200 while at least --min-ready replicas are ready; 503 once stopping
//	/metrics  Prometheus text
type admin struct {
	ln  net.Listener
	srv *http.Server
}

// heartbeatInterval is how often the watchdog proves the supervisor can
// take its own lock; /livez fails when that has not happened for
// livenessTimeout.
const (
	heartbeatInterval = time.Second
	livenessTimeout   = 10 * time.Second
)

func listenAdmin(addr string) (*admin, error) {
	if addr == "none" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin listener %s: %s", addr, portError(err))
	}
	return &admin{ln: ln}, nil
}

// addr is the listener's address, "" when off.
func (a *admin) addr() string {
	if a == nil {
		return ""
	}
	return a.ln.Addr().String()
}

func (a *admin) start(s *Supervisor) {
	if a == nil {
		return
	}
	var beat atomic.Int64
	beat.Store(time.Now().UnixNano())
	go func() {
		t := time.NewTicker(heartbeatInterval)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				s.mu.Lock()
				s.mu.Unlock() //nolint:staticcheck // taking the lock is the check
				beat.Store(time.Now().UnixNano())
			case <-s.stopped:
				return
			}
		}
	}()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, r *http.Request) {
		if age := time.Since(time.Unix(0, beat.Load())); age > livenessTimeout {
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"live": false, "error": fmt.Sprintf("supervisor unresponsive for %s", age.Round(time.Second))})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"live": true})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ready, stopping := s.readiness()
		body := map[string]any{"ready": ready, "min_ready": s.opts.MinReady, "stopping": stopping}
		if stopping || ready < s.opts.MinReady {
			writeJSON(w, http.StatusServiceUnavailable, body)
			return
		}
		writeJSON(w, http.StatusOK, body)
	})
	mux.Handle("GET /metrics", s.metrics.handler())
	a.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := a.srv.Serve(a.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("admin listener stopped", "error", err)
		}
	}()
}

func (a *admin) close() {
	if a == nil {
		return
	}
	if a.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = a.srv.Shutdown(ctx)
	}
	a.ln.Close()
}

// readiness counts the ready replicas and says whether a stop has begun.
func (s *Supervisor) readiness() (ready int, stopping bool) {
	select {
	case <-s.shutdown:
		stopping = true
	default:
	}
	for _, sl := range s.snapshot() {
		sl.mu.Lock()
		if sl.state == Ready {
			ready++
		}
		sl.mu.Unlock()
	}
	return ready, stopping
}

package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"
)

// Status is what `mattingctl status --json` prints.
type Status struct {
	Name      string    `json:"name"`
	Port      int       `json:"port"`
	Pid       int       `json:"pid"`
	Desired   int       `json:"desired"`
	Command   []string  `json:"command"`
	Policy    string    `json:"policy"`
	StartedAt time.Time `json:"started_at"`
	// Admin is the admin listener's address (/metrics, /livez, /readyz),
	// empty when it is off.
	Admin string `json:"admin"`
	// Queued is the number of requests waiting for a replica with room,
	// out of at most QueueMax.
	Queued   int `json:"queued"`
	QueueMax int `json:"queue_max"`
	// Rejected counts requests answered 503 (no ready replica, queue full,
	// queue timeout), Retried the attempts sent to another replica after
	// one failed, and Failed the requests no replica answered (502, 504).
	Rejected uint64          `json:"rejected"`
	Retried  uint64          `json:"retried"`
	Failed   uint64          `json:"failed"`
	Replicas []ReplicaStatus `json:"replicas"`
}

// ReplicaStatus is one replica in Status.
type ReplicaStatus struct {
	ID   int    `json:"id"`
	Name string `json:"name"`
	Port int    `json:"port"`
	// Pid is 0 while no process runs (backoff, failed, stopped).
	Pid int `json:"pid"`
	// State is one of starting, ready, draining, backoff, failed, stopped.
	State    string `json:"state"`
	Restarts int    `json:"restarts"`
	// Inflight counts requests being served now; Requests counts the
	// completed ones and Errors those that failed (no answer or 5xx).
	Inflight int64 `json:"inflight"`
	// MaxInflight is the replica's cap on Inflight; 0 means none.
	MaxInflight int     `json:"max_inflight"`
	Weight      int     `json:"weight,omitempty"`
	Requests    uint64  `json:"requests"`
	Errors      uint64  `json:"errors"`
	CPUPercent  float64 `json:"cpu_percent"`
	RSSBytes    uint64  `json:"rss_bytes"`
	// StartedAt is when the running process started; null when none runs.
	StartedAt *time.Time `json:"started_at"`
	// LastExit is how the previous process ended ("exit code 1").
	LastExit string `json:"last_exit,omitempty"`
	// LastRestart is why the current process was started, when it is not
	// the first: "crash: exit code 1", "rolling restart", "memory",
	// "max-requests" or "scale".
	LastRestart string `json:"last_restart,omitempty"`
	// GPU is the CUDA_VISIBLE_DEVICES the replica was given.
	GPU string `json:"gpu,omitempty"`
	// Error says why a failed replica failed.
	Error string `json:"error,omitempty"`
}

// ScaleResult is what a scale call changed.
type ScaleResult struct {
	Name    string          `json:"name"`
	From    int             `json:"from"`
	To      int             `json:"to"`
	Started []ReplicaStatus `json:"started"`
	Stopped []ReplicaStatus `json:"stopped"`
	// Errors lists replicas that were started but did not become ready.
	Errors []string `json:"errors,omitempty"`
}

type scaleRequest struct {
	Replicas int `json:"replicas"`
}

type apiError struct {
	Error string `json:"error"`
}

// ErrStopping is returned by Scale once the instance is stopping.
var ErrStopping = errors.New("the instance is stopping")

// Scale sets the number of replicas to n. New replicas take the next ports
// and are waited for until ready; removed ones (the highest numbered) are
// taken out of rotation, left to finish their requests and stopped. It
// returns when that is done or ctx ends; the change goes on regardless.
func (s *Supervisor) Scale(ctx context.Context, n int) (ScaleResult, error) {
	if n < 0 {
		return ScaleResult{}, errors.New("replica count must not be negative")
	}
	s.scaleMu.Lock()
	defer s.scaleMu.Unlock()
	select {
	case <-s.shutdown:
		return ScaleResult{}, ErrStopping
	default:
	}
	s.mu.Lock()
	from := s.desired
	res := ScaleResult{Name: s.opts.Name, From: from, To: n}
	var changed []*slot
	switch {
	case n > from:
		if n+s.opts.BasePort-1 > maxPort {
			s.mu.Unlock()
			return res, fmt.Errorf("cannot scale to %d: replica ports would pass 65535", n)
		}
		if err := s.checkNewPortsLocked(from+1, n); err != nil {
			s.mu.Unlock()
			return res, err
		}
		for id := from + 1; id <= n; id++ {
			sl := newSlot(s, id, ReasonScale)
			s.slots[id] = sl
			changed = append(changed, sl)
			go sl.run()
		}
	case n < from:
		deadline := time.Now().Add(s.opts.StopTimeout)
		for id := from; id > n; id-- {
			sl := s.slots[id]
			changed = append(changed, sl)
			sl.requestStop(deadline)
			go s.forget(sl)
		}
	}
	s.desired = n
	s.mu.Unlock()
	s.log.Info("scaling", "from", from, "to", n)

	for _, sl := range changed {
		wait := sl.firstDone
		if n < from {
			wait = sl.done
		}
		select {
		case <-wait:
		case <-ctx.Done():
			return res, fmt.Errorf("scaling from %d to %d: %w (it goes on in the background)", from, n, ctx.Err())
		}
		st := sl.status()
		if n < from {
			res.Stopped = append(res.Stopped, st)
			continue
		}
		res.Started = append(res.Started, st)
		if err := sl.failure(); err != nil {
			res.Errors = append(res.Errors, err.Error())
		}
	}
	return res, nil
}

// forget drops a removed slot from the table once it has stopped.
func (s *Supervisor) forget(sl *slot) {
	<-sl.done
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.slots[sl.id] == sl {
		delete(s.slots, sl.id)
	}
}

// controlServer serves the control API on the instance's Unix socket.
type controlServer struct {
	path string
	ln   net.Listener
	srv  *http.Server
}

// maxSocketPath is the longest path a Unix socket can bind to on Linux
// (sun_path is 108 bytes with its terminating NUL).
const maxSocketPath = 107

func listenControl(dir, name string) (*controlServer, error) {
	if err := ensureStateDir(dir); err != nil {
		return nil, err
	}
	path := SocketPath(dir, name)
	if len(path) > maxSocketPath {
		return nil, fmt.Errorf("control socket path %s is too long for a Unix socket; set MATTINGCTL_HOME to a shorter directory", path)
	}
	if _, err := os.Stat(path); err == nil {
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("an instance named %q is already running (control socket %s); stop it with `mattingctl down --name %s` or choose another --name", name, path, name)
		}
		// A socket left by an instance that was killed.
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("removing stale control socket %s: %w", path, err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	return &controlServer{path: path, ln: ln}, nil
}

// start serves the control API in the background until close.
func (c *controlServer) start(s *Supervisor) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.Status())
	})
	mux.HandleFunc("POST /v1/scale", func(w http.ResponseWriter, r *http.Request) {
		var req scaleRequest
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&req); err != nil {
			writeJSON(w, http.StatusBadRequest, apiError{"bad scale request: " + err.Error()})
			return
		}
		res, err := s.Scale(r.Context(), req.Replicas)
		if err != nil {
			writeJSON(w, http.StatusConflict, apiError{err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, res)
	})
	mux.HandleFunc("POST /v1/restart", func(w http.ResponseWriter, r *http.Request) {
		res, err := s.RollingRestart(r.Context())
		if err != nil {
			writeJSON(w, http.StatusConflict, apiError{err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, res)
	})
	mux.HandleFunc("POST /v1/down", func(w http.ResponseWriter, r *http.Request) {
		s.log.Info("stop requested through the control socket")
		s.requestShutdown()
		select {
		case <-s.stopped:
			writeJSON(w, http.StatusOK, struct {
				Stopped bool `json:"stopped"`
			}{true})
		case <-r.Context().Done():
		}
	})
	c.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = c.srv.Serve(c.ln) }()
}

// close lets a pending `down` call get its answer, then removes the socket.
func (c *controlServer) close() {
	if c.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = c.srv.Shutdown(ctx)
		cancel()
	}
	c.ln.Close()
	_ = os.Remove(c.path)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

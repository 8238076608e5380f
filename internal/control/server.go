package control

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/net/netutil"

	"github.com/mattingctl/mattingctl/internal/httpserver"
)

// Instance is what the control socket serves: a running instance.
type Instance interface {
	Status() Status
	// Scale sets the replica count to n and returns once the new replicas
	// are ready or the removed ones have stopped, or ctx ends.
	Scale(ctx context.Context, n int) (ScaleResult, error)
	// RollingRestart replaces every replica's process, one at a time.
	RollingRestart(ctx context.Context) (RestartResult, error)
	// RestartReplica replaces replica id's process, or starts it afresh
	// if it failed.
	RestartReplica(ctx context.Context, id int) (RestartResult, error)
	// Reload reads the instance's config file again and applies what
	// changed; Set applies settings given as FLAG=VALUE. Both refuse,
	// changing nothing, a change that cannot be made while the instance
	// runs, and return once every change is applied (after the rolling
	// restart any needs).
	Reload(ctx context.Context) (ReloadResult, error)
	Set(ctx context.Context, settings []string) (ReloadResult, error)
	// Stop asks the instance to stop gracefully and returns at once.
	Stop(reason string)
	// Stopped is closed once every replica has stopped.
	Stopped() <-chan struct{}
	// Dashboard says where the dashboard is and the token its actions
	// need, or why there is none (--admin none).
	Dashboard() (DashboardAccess, error)
}

// Services is what an instance of several services (several model servers
// behind one port) offers besides Instance: each service, as an Instance
// of its own, for the calls that name one (?service=NAME).
type Services interface {
	Service(name string) (Instance, error)
}

// Server serves the control API on an instance's Unix socket.
type Server struct {
	path string
	ln   net.Listener
	srv  *httpserver.Server // nil until Start
}

// MaxConns caps the control socket's connections open at once; past it
// a new one waits in the kernel's listen backlog. Commands hold one for
// the length of a call (a scale, a down), polls one at a time.
const MaxConns = 32

// maxSocketPath is the longest path a Unix socket can bind to on Linux
// (sun_path is 108 bytes with its terminating NUL).
const maxSocketPath = 107

// Listen creates the control socket of instance name in dir, replacing a
// socket left by a killed instance. It fails, naming the instance, when
// one of that name is running, and naming the directory when another user
// could change it (see CheckStateDir).
func Listen(dir, name string) (*Server, error) {
	if err := EnsureStateDir(dir); err != nil {
		return nil, err
	}
	path := SocketPath(dir, name)
	if len(path) > maxSocketPath {
		return nil, fmt.Errorf("control socket path %s is too long for a Unix socket; set MATTINGCTL_HOME to a shorter directory", path)
	}
	if _, err := os.Stat(path); err == nil {
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			err := checkPeer(c, path)
			c.Close()
			if err != nil {
				return nil, err
			}
			return nil, fmt.Errorf("an instance named %q is already running (control socket %s); stop it with `mattingctl down --name %s` or choose another --name", name, path, name)
		} else if isPermission(err) {
			return nil, fmt.Errorf("control socket %s: permission denied: it belongs to %s, not to you; remove it as that user or root, or choose another --name", path, ownerName(path))
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
	return &Server{path: path, ln: ln}, nil
}

// Path is the socket's path.
func (c *Server) Path() string { return c.path }

// Start serves the control API for inst in the background until Close.
// Connections from users other than this one and root are closed unread;
// at most MaxConns are open at once.
func (c *Server) Start(inst Instance, log hclog.Logger) {
	srv := &http.Server{Handler: Handler(inst, log), ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute}
	c.srv = httpserver.Start(srv, netutil.LimitListener(trustedListener{c.ln, log}, MaxConns), nil)
}

// Handler is the control API over HTTP:
//
//	GET  /v1/status   Status
//	POST /v1/scale    {"replicas": N} -> ScaleResult
//	POST /v1/restart  {} or {"replica": K} (or no body) -> RestartResult
//	POST /v1/reload   (no body) -> ReloadResult
//	POST /v1/set      {"settings": ["FLAG=VALUE", ...]} -> ReloadResult
//	POST /v1/down     {"stopped": true} once stopped
//	GET  /v1/dashboard DashboardAccess: the dashboard's URL and token
//
// scale, restart, reload and set take ?service=NAME: the service they
// apply to in an instance of several (Services).
//
// Errors are {"error": "..."}: 400 for a malformed request, 409 for one
// the instance refused. A body must be exactly the JSON object shown, with
// every field and no other; POST endpoints shown without one refuse any
// body, and GET ignores it.
func Handler(inst Instance, log hclog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, inst.Status())
	})
	mux.HandleFunc("POST /v1/scale", func(w http.ResponseWriter, r *http.Request) {
		var req scaleRequest
		if !decodeRequest(w, r, "scale", &req) {
			return
		}
		if req.Replicas == nil {
			writeJSON(w, http.StatusBadRequest, apiError{`bad scale request: "replicas" is missing`})
			return
		}
		inst, ok := serviceOf(w, r, inst)
		if !ok {
			return
		}
		res, err := inst.Scale(r.Context(), *req.Replicas)
		if err != nil {
			writeJSON(w, http.StatusConflict, apiError{err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, res)
	})
	mux.HandleFunc("POST /v1/restart", func(w http.ResponseWriter, r *http.Request) {
		var req restartRequest
		if !decodeOptional(w, r, "restart", &req) {
			return
		}
		inst, ok := serviceOf(w, r, inst)
		if !ok {
			return
		}
		var res RestartResult
		var err error
		switch {
		case req.Replica == nil:
			res, err = inst.RollingRestart(r.Context())
		case *req.Replica < 1:
			writeJSON(w, http.StatusBadRequest, apiError{fmt.Sprintf(`bad restart request: "replica" must be at least 1, not %d`, *req.Replica)})
			return
		default:
			res, err = inst.RestartReplica(r.Context(), *req.Replica)
		}
		if err != nil {
			writeJSON(w, http.StatusConflict, apiError{err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, res)
	})
	mux.HandleFunc("POST /v1/reload", func(w http.ResponseWriter, r *http.Request) {
		if !noBody(w, r, "reload") {
			return
		}
		inst, ok := serviceOf(w, r, inst)
		if !ok {
			return
		}
		res, err := inst.Reload(r.Context())
		if err != nil {
			writeJSON(w, http.StatusConflict, apiError{err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, res)
	})
	mux.HandleFunc("POST /v1/set", func(w http.ResponseWriter, r *http.Request) {
		var req setRequest
		if !decodeRequest(w, r, "set", &req) {
			return
		}
		if len(req.Settings) == 0 {
			writeJSON(w, http.StatusBadRequest, apiError{`bad set request: "settings" is missing or empty`})
			return
		}
		inst, ok := serviceOf(w, r, inst)
		if !ok {
			return
		}
		res, err := inst.Set(r.Context(), req.Settings)
		if err != nil {
			writeJSON(w, http.StatusConflict, apiError{err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, res)
	})
	mux.HandleFunc("GET /v1/dashboard", func(w http.ResponseWriter, r *http.Request) {
		d, err := inst.Dashboard()
		if err != nil {
			writeJSON(w, http.StatusConflict, apiError{err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, d)
	})
	mux.HandleFunc("POST /v1/down", func(w http.ResponseWriter, r *http.Request) {
		if !noBody(w, r, "down") {
			return
		}
		log.Info("stop requested through the control socket")
		inst.Stop("down")
		select {
		case <-inst.Stopped():
			writeJSON(w, http.StatusOK, struct {
				Stopped bool `json:"stopped"`
			}{true})
		case <-r.Context().Done():
		}
	})
	return mux
}

// serviceOf returns the service r names (?service=NAME) of inst, or inst
// when it names none. When there is no such service it answers 409, naming
// it, and returns false.
func serviceOf(w http.ResponseWriter, r *http.Request, inst Instance) (Instance, bool) {
	name := r.URL.Query().Get("service")
	if name == "" {
		return inst, true
	}
	var err error
	if svcs, ok := inst.(Services); ok {
		if inst, err = svcs.Service(name); err == nil {
			return inst, true
		}
	} else {
		err = fmt.Errorf("--service %s: this instance runs one service, unnamed; leave --service out", name)
	}
	writeJSON(w, http.StatusConflict, apiError{err.Error()})
	return nil, false
}

// Close lets a pending `down` call get its answer, then removes the socket.
// It returns once every handler has returned: past the grace, their
// connections are closed, as no handler may call into a stopped instance.
func (c *Server) Close() {
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

package admin

import (
	"context"
	"embed"
	"encoding/json"
	"io/fs"
	"net/http"
	"strconv"
	"time"

	"github.com/mattingctl/mattingctl/internal/control"
)

// Controller is what the dashboard shows and acts on: the same methods
// the control socket calls.
type Controller interface {
	Status() control.Status
	Scale(ctx context.Context, n int) (control.ScaleResult, error)
	RollingRestart(ctx context.Context) (control.RestartResult, error)
}

// Dashboard is the page at / and its API:
//
//	GET  /                the page (assets embedded, nothing loaded from elsewhere);
//	                      /?token=TOKEN hands the page the token
//	GET  /api/dashboard   State, as JSON; ?since=T&after=SEQ for what is new
//	POST /api/scale       {"replicas": N} -> control.ScaleResult (actions)
//	POST /api/restart     rolling restart -> control.RestartResult (actions)
type Dashboard struct {
	History  *History
	Instance Controller
	// Token is needed by every action, as "Authorization: Bearer TOKEN",
	// on any address, and by GET /api/dashboard to show the command line.
	// Empty turns the actions off.
	Token string
	// ActionsOff, when not empty, turns the actions off and says why.
	ActionsOff string
}

//go:embed dashboard
var assets embed.FS

// State is what GET /api/dashboard answers.
type State struct {
	// Time is the server's clock, in unix seconds.
	Time int64 `json:"time"`
	// Status is what `mattingctl status --json` prints.
	Status  control.Status `json:"status"`
	Actions Actions        `json:"actions"`
	// Series holds the points after ?since (all 15 minutes without it).
	Series Series `json:"series"`
	// Events are the timeline's entries after ?after (the last 500
	// without it), oldest first.
	Events []Event `json:"events"`
}

// Actions says whether the page may offer scale and restart.
type Actions struct {
	Offered bool `json:"offered"`
	// TokenRequired is set when an action needs the admin token, as
	// "Authorization: Bearer TOKEN": whenever actions are offered.
	TokenRequired bool `json:"token_required"`
	// Authorized is set when this request carried the token.
	Authorized bool `json:"authorized"`
	// Reason says why actions are not offered.
	Reason string `json:"reason,omitempty"`
}

// dashboard serves the Dashboard on a listener; loopback says whether
// that listener's address is a loopback one.
type dashboard struct {
	Dashboard
	loopback bool
}

// actions says what r may do: the actions are offered whenever a token
// is set, and r is authorized when it carries it.
func (d *dashboard) actions(r *http.Request) Actions {
	if d.ActionsOff != "" {
		return Actions{Reason: d.ActionsOff}
	}
	if d.Token == "" {
		return Actions{Reason: "the instance has no admin token"}
	}
	return Actions{Offered: true, TokenRequired: true, Authorized: d.authorized(r)}
}

func (d *dashboard) routes(mux *http.ServeMux) {
	static, _ := fs.Sub(assets, "dashboard")
	files := pageHeaders(http.FileServerFS(static))
	mux.Handle("GET /{$}", files)
	mux.Handle("GET /dashboard.js", files)
	mux.Handle("GET /dashboard.css", files)
	mux.HandleFunc("GET /api/dashboard", d.readGuard(d.state))
	mux.HandleFunc("POST /api/scale", d.guard(d.scale))
	mux.HandleFunc("POST /api/restart", d.guard(d.restart))
}

func (d *dashboard) state(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	since, _ := strconv.ParseInt(q.Get("since"), 10, 64)
	after, _ := strconv.ParseUint(q.Get("after"), 10, 64)
	st := State{
		Time:    time.Now().Unix(),
		Status:  d.Instance.Status(),
		Actions: d.actions(r),
		Series:  d.History.since(since),
		Events:  d.History.eventsAfter(after),
	}
	if !st.Actions.Authorized {
		// Its arguments may hold secrets (a key, a database URL), and
		// read-only views are open to every local user; so may the
		// settings (the command, env=, file paths) and those changed.
		st.Status.Command = nil
		st.Status.Settings, st.Status.Changed = nil, nil
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(st)
}

func (d *dashboard) scale(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Replicas *int `json:"replicas"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || req.Replicas == nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": `bad scale request: want {"replicas": N}`})
		return
	}
	noWriteDeadline(w)
	res, err := d.Instance.Scale(r.Context(), *req.Replicas)
	if err != nil {
		writeJSON(w, http.StatusConflict, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (d *dashboard) restart(w http.ResponseWriter, r *http.Request) {
	noWriteDeadline(w)
	res, err := d.Instance.RollingRestart(r.Context())
	if err != nil {
		writeJSON(w, http.StatusConflict, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// noWriteDeadline lifts the listener's write timeout for an action, which
// waits for replicas to be ready or to stop: the instance bounds that
// (--ready-timeout, --stop-timeout), and only a client with the token
// gets here.
func noWriteDeadline(w http.ResponseWriter) {
	_ = http.NewResponseController(w).SetWriteDeadline(time.Time{})
}

// pageHeaders adds to the page's files what keeps its token safe in the
// browser: nothing but its own files may run or load (so no injected
// script can read the token from sessionStorage), no other page may frame
// it (and trick a click on its buttons), and no Referer carries a ?token=
// elsewhere.
func pageHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

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
//	GET  /                the page (assets embedded, nothing loaded from elsewhere)
//	GET  /api/dashboard   State, as JSON; ?since=T&after=SEQ for what is new
//	POST /api/scale       {"replicas": N} -> control.ScaleResult (actions)
//	POST /api/restart     rolling restart -> control.RestartResult (actions)
type Dashboard struct {
	History  *History
	Instance Controller
	// Token, when not empty, is needed as a bearer token by every
	// action, on any address.
	Token string
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
	// TokenRequired is set when an action needs the --admin-token, as
	// "Authorization: Bearer TOKEN".
	TokenRequired bool `json:"token_required"`
	// Reason says why actions are not offered.
	Reason string `json:"reason,omitempty"`
}

// dashboard serves the Dashboard on a listener; loopback says whether
// that listener's address is a loopback one.
type dashboard struct {
	Dashboard
	loopback bool
}

func (d *dashboard) actions() Actions {
	switch {
	case d.Token != "":
		return Actions{Offered: true, TokenRequired: true}
	case d.loopback:
		return Actions{Offered: true}
	default:
		return Actions{Reason: "the admin listener is not on a loopback address and no --admin-token is set"}
	}
}

func (d *dashboard) routes(mux *http.ServeMux) {
	static, _ := fs.Sub(assets, "dashboard")
	files := http.FileServerFS(static)
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
		Actions: d.actions(),
		Series:  d.History.since(since),
		Events:  d.History.eventsAfter(after),
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
	res, err := d.Instance.Scale(r.Context(), *req.Replicas)
	if err != nil {
		writeJSON(w, http.StatusConflict, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (d *dashboard) restart(w http.ResponseWriter, r *http.Request) {
	res, err := d.Instance.RollingRestart(r.Context())
	if err != nil {
		writeJSON(w, http.StatusConflict, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, res)
}

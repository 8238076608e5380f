package admin

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/control"
)

// fakeInstance records the actions asked of it.
type fakeInstance struct {
	mu       sync.Mutex
	desired  int
	restarts int
}

func (f *fakeInstance) Status() control.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return control.Status{Name: "test", Desired: f.desired, Command: []string{"python3", "app.py", "--key", "secret"},
		Settings: map[string]string{"command": "python3 app.py --key secret", "env": "DB=postgres://u:secret@db"},
		Changed:  map[string]string{"env": "DB=postgres://u:secret@db"},
		Replicas: []control.ReplicaStatus{{ID: 1, Name: "replica-1", State: control.Ready, RPS: 12.5}}}
}

func (f *fakeInstance) Scale(_ context.Context, n int) (control.ScaleResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := control.CheckReplicaCount(n); err != nil {
		return control.ScaleResult{}, err
	}
	res := control.ScaleResult{Name: "test", From: f.desired, To: n}
	f.desired = n
	return res, nil
}

func (f *fakeInstance) RollingRestart(context.Context) (control.RestartResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.restarts++
	return control.RestartResult{Name: "test"}, nil
}

// testToken is the admin token of the tests' dashboards.
const testToken = "0123456789abcdef0123456789abcdef"

func dashboardMux(inst *fakeInstance, loopback bool, token string) *http.ServeMux {
	mux := http.NewServeMux()
	d := &dashboard{Dashboard: Dashboard{History: NewHistory(NewMetrics(&fakeSource{})), Instance: inst, Token: token}, loopback: loopback}
	d.routes(mux)
	return mux
}

func TestDashboardPageIsSelfContained(t *testing.T) {
	mux := dashboardMux(&fakeInstance{}, true, testToken)
	code, page := get(t, mux, "/")
	if code != 200 || !strings.Contains(page, `<table id="replicas">`) {
		t.Fatalf("GET /: %d\n%s", code, page)
	}
	// The page keeps its token from scripts and pages elsewhere.
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "http://127.0.0.1:9109/?token="+testToken, nil))
	if csp := rec.Header().Get("Content-Security-Policy"); rec.Code != 200 || !strings.Contains(csp, "default-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("GET /?token=: %d, Content-Security-Policy %q", rec.Code, csp)
	}
	if rp := rec.Header().Get("Referrer-Policy"); rp != "no-referrer" {
		t.Errorf("Referrer-Policy %q, want no-referrer", rp)
	}
	for _, path := range []string{"/dashboard.js", "/dashboard.css"} {
		code, body := get(t, mux, path)
		if code != 200 || len(body) < 500 {
			t.Fatalf("GET %s: %d, %d bytes", path, code, len(body))
		}
		page += body
	}
	// Nothing from elsewhere: no absolute URL, no font or script host.
	if m := regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}|@import|url\(`).FindString(page); m != "" {
		t.Errorf("the dashboard refers to %q; it must work offline", m)
	}
	if code, _ := get(t, mux, "/nothing-here"); code != 404 {
		t.Errorf("GET /nothing-here: %d, want 404", code)
	}
}

// state reads GET /api/dashboard from mux, with the bearer token when not
// empty.
func state(t *testing.T, mux http.Handler, token string) State {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "http://127.0.0.1:9109/api/dashboard?since=0&after=0", nil)
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, r)
	if rec.Code != 200 {
		t.Fatalf("GET /api/dashboard: %d %s", rec.Code, rec.Body)
	}
	var st State
	if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestDashboardState: the state is open to read, but the command line
// and the settings (which may hold secrets) only with the token.
func TestDashboardState(t *testing.T) {
	inst := &fakeInstance{desired: 2}
	mux := dashboardMux(inst, true, testToken)
	st := state(t, mux, testToken)
	if st.Status.Desired != 2 || len(st.Status.Replicas) != 1 || st.Status.Replicas[0].RPS != 12.5 ||
		st.Actions != (Actions{Offered: true, TokenRequired: true, Authorized: true}) || len(st.Status.Command) != 4 ||
		st.Status.Settings["env"] == "" || st.Status.Changed["env"] == "" {
		t.Errorf("state with the token: %+v", st)
	}
	if time.Since(time.Unix(st.Time, 0)) > time.Minute {
		t.Errorf("time %d is not now", st.Time)
	}
	for _, token := range []string{"", "wrong-token-0123456789"} {
		st := state(t, mux, token)
		if st.Status.Desired != 2 || st.Status.Command != nil || st.Status.Settings != nil || st.Status.Changed != nil ||
			st.Actions != (Actions{Offered: true, TokenRequired: true}) {
			t.Errorf("state with token %q: command %q, settings %v, changed %v, actions %+v", token, st.Status.Command, st.Status.Settings, st.Status.Changed, st.Actions)
		}
	}
}

// action posts to path as the dashboard's page does, with changes.
func action(mux http.Handler, path, body string, edit func(*http.Request)) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, "http://127.0.0.1:9109"+path, strings.NewReader(body))
	r.Header.Set(ActionHeader, "1")
	r.Header.Set("Origin", "http://127.0.0.1:9109")
	r.Header.Set("Sec-Fetch-Site", "same-origin")
	if edit != nil {
		edit(r)
	}
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, r)
	return rec
}

// withToken sends the test token, as the page does once it has it.
func withToken(r *http.Request) { r.Header.Set("Authorization", "Bearer "+testToken) }

func TestDashboardActions(t *testing.T) {
	inst := &fakeInstance{desired: 2}
	mux := dashboardMux(inst, true, testToken)
	if rec := action(mux, "/api/scale", `{"replicas": 3}`, withToken); rec.Code != 200 || inst.Status().Desired != 3 {
		t.Fatalf("scale up: %d %s, desired %d", rec.Code, rec.Body, inst.Status().Desired)
	}
	var res control.ScaleResult
	rec := action(mux, "/api/scale", `{"replicas": 2}`, withToken)
	if err := json.Unmarshal(rec.Body.Bytes(), &res); err != nil || res.From != 3 || res.To != 2 {
		t.Fatalf("scale down: %d %s", rec.Code, rec.Body)
	}
	if rec := action(mux, "/api/restart", `{}`, withToken); rec.Code != 200 || inst.restarts != 1 {
		t.Fatalf("restart: %d %s", rec.Code, rec.Body)
	}
	for _, body := range []string{``, `{}`, `{"replicas": "3"}`, `{"replicas": 3, "x": 1}`, `{"replicas": 1e100}`} {
		if rec := action(mux, "/api/scale", body, withToken); rec.Code != 400 {
			t.Errorf("scale %q: %d, want 400", body, rec.Code)
		}
	}
	// The instance's own refusal (control.CheckReplicaCount, the ports,
	// the open-file limit), word for word.
	for _, n := range []string{"0", "-1"} {
		rec := action(mux, "/api/scale", `{"replicas": `+n+`}`, withToken)
		if want := control.CheckReplicaCount(atoi(n)).Error(); rec.Code != 409 || !strings.Contains(rec.Body.String(), want) {
			t.Errorf("scale %s: %d %s, want 409 with %q", n, rec.Code, rec.Body, want)
		}
	}
	if code, _ := get(t, mux, "/api/scale"); code != 405 {
		t.Errorf("GET /api/scale: %d, want 405", code)
	}
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// TestDashboardActionGuard: every action needs the token, on a loopback
// listener too (any local user can connect to one), and a page elsewhere
// cannot act through a browser even with it.
func TestDashboardActionGuard(t *testing.T) {
	const token = testToken
	with := func(edit func(*http.Request)) func(*http.Request) {
		return func(r *http.Request) { withToken(r); edit(r) }
	}
	tests := []struct {
		name     string
		loopback bool
		token    string
		edit     func(*http.Request)
		want     int
	}{
		{"loopback, as the page sends it", true, token, withToken, 200},
		{"loopback, curl with the header and the token", true, token, with(func(r *http.Request) { r.Header.Del("Origin"); r.Header.Del("Sec-Fetch-Site") }), 200},
		{"loopback, the page without the token", true, token, nil, 401},
		{"loopback, curl without the token (another local user)", true, token, func(r *http.Request) { r.Header.Del("Origin"); r.Header.Del("Sec-Fetch-Site") }, 401},
		{"loopback, wrong token", true, token, func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+token+"x") }, 401},
		{"no action header (a plain form post)", true, token, with(func(r *http.Request) { r.Header.Del(ActionHeader) }), 403},
		{"cross-site fetch", true, token, with(func(r *http.Request) { r.Header.Set("Sec-Fetch-Site", "cross-site") }), 403},
		{"same-site, other origin", true, token, with(func(r *http.Request) { r.Header.Set("Sec-Fetch-Site", "same-site") }), 403},
		{"other origin", true, token, with(func(r *http.Request) { r.Header.Set("Origin", "https://evil.example") }), 403},
		{"null origin", true, token, with(func(r *http.Request) { r.Header.Set("Origin", "null") }), 403},
		{"DNS rebinding: a site's name on loopback", true, token, with(func(r *http.Request) {
			r.Host = "evil.example:9109"
			r.Header.Set("Origin", "http://evil.example:9109")
		}), 403},
		{"localhost", true, token, with(func(r *http.Request) { r.Host = "localhost:9109"; r.Header.Set("Origin", "http://localhost:9109") }), 200},
		{"no token set: actions off", true, "", nil, 403},
		{"not loopback, no token set", false, "", nil, 403},
		{"not loopback, token", false, token, func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+token) }, 200},
		{"not loopback, any host with the token", false, token, func(r *http.Request) {
			r.Host = "10.1.2.3:9109"
			r.Header.Set("Origin", "http://10.1.2.3:9109")
			r.Header.Set("Authorization", "Bearer "+token)
		}, 200},
		{"not loopback, no Authorization", false, token, nil, 401},
		{"not loopback, wrong token", false, token, func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+token+"x") }, 401},
		{"not loopback, token not as bearer", false, token, func(r *http.Request) { r.Header.Set("Authorization", token) }, 401},
		{"not loopback, token but cross-site", false, token, func(r *http.Request) {
			r.Header.Set("Authorization", "Bearer "+token)
			r.Header.Set("Sec-Fetch-Site", "cross-site")
		}, 403},
	}
	for _, tt := range tests {
		for _, path := range []string{"/api/scale", "/api/restart"} {
			inst := &fakeInstance{desired: 2}
			mux := dashboardMux(inst, tt.loopback, tt.token)
			rec := action(mux, path, `{"replicas": 3}`, tt.edit)
			if rec.Code != tt.want {
				t.Errorf("%s: POST %s: %d %s, want %d", tt.name, path, rec.Code, strings.TrimSpace(rec.Body.String()), tt.want)
			}
			acted := inst.Status().Desired != 2 || inst.restarts != 0
			if acted != (tt.want == 200) {
				t.Errorf("%s: POST %s answered %d but acted: %v", tt.name, path, rec.Code, acted)
			}
		}
	}
	// The page is told whether to offer actions; reading stays open.
	for _, tt := range []struct {
		loopback      bool
		token         string
		offered, need bool
	}{{true, "", false, false}, {false, "", false, false}, {false, token, true, true}, {true, token, true, true}} {
		_, body := get(t, dashboardMux(&fakeInstance{}, tt.loopback, tt.token), "/api/dashboard")
		var st State
		if err := json.Unmarshal([]byte(body), &st); err != nil {
			t.Fatal(err)
		}
		if st.Actions.Offered != tt.offered || st.Actions.TokenRequired != tt.need || !tt.offered && st.Actions.Reason == "" {
			t.Errorf("loopback %v, token %q: actions %+v", tt.loopback, tt.token, st.Actions)
		}
	}
}

// TestSetDashboardLoopback: the listener's own address decides, not the
// client's.
func TestSetDashboardLoopback(t *testing.T) {
	a, err := Listen("127.0.0.1:0", 8)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	a.SetDashboard(Dashboard{History: NewHistory(NewMetrics(&fakeSource{})), Instance: &fakeInstance{}, Token: testToken})
	if !a.dash.loopback {
		t.Fatal("127.0.0.1 is not taken for loopback")
	}
	a.Start(&fakeSource{}, nil, nil)
	resp, err := http.Get("http://" + a.Addr() + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), "dashboard.js") {
		t.Fatalf("GET / on the listener: %d %s", resp.StatusCode, b)
	}
	var none *Server
	none.SetDashboard(Dashboard{}) // --admin none: a no-op
}

// TestDashboardDataRefusedToARebindingPage: a page elsewhere whose name
// was rebound to 127.0.0.1 cannot read the dashboard's data (the command
// line, replicas' errors) from a loopback listener; loopback names can.
func TestDashboardDataRefusedToARebindingPage(t *testing.T) {
	for _, tt := range []struct {
		loopback bool
		host     string
		want     int
	}{
		{true, "127.0.0.1:9109", 200},
		{true, "localhost:9109", 200},
		{true, "[::1]:9109", 200},
		{true, "evil.example:9109", 403},
		{false, "10.1.2.3:9109", 200},
	} {
		mux := dashboardMux(&fakeInstance{}, tt.loopback, testToken)
		r := httptest.NewRequest(http.MethodGet, "http://127.0.0.1:9109/api/dashboard", nil)
		withToken(r)
		r.Host = tt.host
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, r)
		if rec.Code != tt.want {
			t.Errorf("loopback %v, Host %s: %d, want %d", tt.loopback, tt.host, rec.Code, tt.want)
		}
	}
}

// TestDashboardActionsOff: with ActionsOff, the state says why there are
// no actions, and an action with the token is refused, saying so.
func TestDashboardActionsOff(t *testing.T) {
	inst := &fakeInstance{desired: 2}
	mux := http.NewServeMux()
	d := &dashboard{Dashboard: Dashboard{History: NewHistory(NewMetrics(&fakeSource{})), Instance: inst, Token: testToken, ActionsOff: "several services"}, loopback: true}
	d.routes(mux)
	if st := state(t, mux, testToken); st.Actions != (Actions{Reason: "several services"}) {
		t.Errorf("actions %+v; want none, saying why", st.Actions)
	}
	if rec := action(mux, "/api/scale", `{"replicas": 3}`, withToken); rec.Code != http.StatusForbidden ||
		!strings.Contains(rec.Body.String(), "actions are off: several services") || inst.Status().Desired != 2 {
		t.Errorf("scale with actions off: %d %s, desired %d", rec.Code, rec.Body, inst.Status().Desired)
	}
}

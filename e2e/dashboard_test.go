package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/mattingctl/mattingctl/internal/testutil"
)

// screenshotEnv names a file: TestDashboardInBrowser saves a PNG of the
// page there, after a minute under load (docs/dashboard.png is one).
const screenshotEnv = "MATTINGCTL_SCREENSHOT"

// needChromium returns the path of a Chromium or Chrome, or skips t (fails
// it under MATTINGCTL_REQUIRE_E2E).
func needChromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if _, err := exec.LookPath(name); err == nil {
			return needTool(t, name, "chromium")
		}
	}
	return needTool(t, "chromium", "chromium")
}

// browser starts a headless Chromium for t, closed when t ends, and
// returns a context to run actions in.
func browser(t *testing.T, bin string) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(bin), chromedp.NoSandbox, chromedp.Headless,
		chromedp.DisableGPU, chromedp.WindowSize(1400, 1100), chromedp.UserDataDir(t.TempDir()))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc() // waits for the browser to exit
	})
	return ctx
}

// js evaluates expr in the page.
func js[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluating %s: %v", expr, err)
	}
	return v
}

// TestDashboardInBrowser drives the dashboard in headless Chromium against
// an instance under load: a row per replica, a request rate that agrees
// with /metrics, a kill -9 in the timeline within 3 s, and the scale-up
// button adding a replica.
func TestDashboardInBrowser(t *testing.T) {
	// Not parallel: it compares the rate chart with /metrics under load,
	// so it runs alone.
	chrome := needChromium(t)
	in := start(t, 2, "--health", "/health", "--", fakemodel, "-service", "5ms")
	st := in.waitReady(2)
	load := startLoad(in.url("/"), 8)
	defer load.finish()
	ctx := browser(t, chrome)
	// The page as `mattingctl dashboard` hands it over: the token in the
	// URL, which the page keeps and takes out of the address bar.
	link, token := dashboardLink(t, in)
	if !strings.HasPrefix(link, "http://"+st.Admin+"/?token=") {
		t.Fatalf("mattingctl dashboard printed %q, want the admin listener %s", link, st.Admin)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(link)); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 5*time.Second, "the token out of the address bar", func() bool {
		return js[string](t, ctx, "location.href") == "http://"+st.Admin+"/"
	})
	if got := js[string](t, ctx, `sessionStorage.getItem("mattingctl-token")`); got != token {
		t.Errorf("the page kept the token %q, want %q", got, token)
	}
	rows := `document.querySelectorAll("#replicas tbody tr[data-replica]").length`
	testutil.WaitFor(t, 10*time.Second, "a row per replica", func() bool { return js[int](t, ctx, rows) == 2 })
	for _, name := range []string{"replica-1", "replica-2"} {
		if got := js[string](t, ctx, `document.querySelector('tr[data-replica="`+name+`"]').dataset.state`); got != "ready" {
			t.Errorf("%s's row says %q, want ready", name, got)
		}
	}

	// The request-rate chart against /metrics over the same seconds: the
	// mean of the points the chart shows for the seconds after point
	// from, up to point from+n, against what /metrics counted between the
	// moments the page showed those two points. (One point against the
	// mean of several differs by more than 20% when the machine is busy
	// and the rate jumps from second to second.)
	points := map[int64]float64{}
	latest := func() (v float64, at int64) {
		s := js[string](t, ctx, `(d => d.latest + " " + d.latestT)(document.getElementById("chart-rps").dataset)`)
		if _, err := fmt.Sscan(s, &v, &at); err != nil {
			return 0, 0
		}
		points[at] = v
		return v, at
	}
	testutil.WaitFor(t, 10*time.Second, "the rate chart to show a point under load", func() bool { v, _ := latest(); return v > 0 })
	_, before := latest()
	var from int64
	testutil.WaitFor(t, 10*time.Second, "the next point on the rate chart", func() bool { _, from = latest(); return from > before })
	c0, t0 := requestsTotal(t, st.Admin), time.Now()
	const n = 6
	var to int64
	testutil.WaitFor(t, 20*time.Second, fmt.Sprintf("%d more points on the rate chart", n), func() bool { _, to = latest(); return to >= from+n })
	c1, t1 := requestsTotal(t, st.Admin), time.Now()
	sum, seen := 0.0, 0
	for at := from + 1; at <= to; at++ {
		if v, ok := points[at]; ok {
			sum += v
			seen++
		}
	}
	if seen < n/2 {
		t.Fatalf("the page showed %d of the rate chart's points %d to %d: %v", seen, from+1, to, points)
	}
	shown := sum / float64(seen)
	rate := (c1 - c0) / t1.Sub(t0).Seconds()
	if math.Abs(shown-rate) > 0.2*rate {
		t.Errorf("the rate chart shows %.1f/s on average, /metrics says %.1f/s over the same seconds: more than 20%% apart (points %v)", shown, rate, points)
	}
	t.Logf("rate chart %.1f/s on average over %d points, /metrics %.1f/s", shown, seen, rate)

	// kill -9 of replica-1: in the timeline within 3 s.
	victim := in.status().Replicas[0]
	if err := syscall.Kill(victim.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	crash := `document.querySelectorAll('#events li[data-kind="crash"][data-replica="replica-1"]').length`
	testutil.WaitFor(t, 3*time.Second, "replica-1's crash in the event timeline", func() bool { return js[int](t, ctx, crash) > 0 })
	if d := js[string](t, ctx, `document.querySelector('#events li[data-kind="crash"] .detail').textContent`); !strings.Contains(d, "signal killed") {
		t.Errorf("the crash event says %q, want the exit (signal killed)", d)
	}
	// Its parts read apart, as copied text too: "crash replica-1 pid ...".
	if line := js[string](t, ctx, `document.querySelector('#events li[data-kind="crash"]').textContent`); !strings.Contains(line, "crash replica-1 pid ") {
		t.Errorf("the crash event reads %q, want its kind, replica and detail apart", line)
	}
	// Every chart's axes say what they measure: a y title with the unit,
	// tick values on both axes.
	for id, unit := range map[string]string{"chart-rps": "req/s", "chart-latency": "ms", "chart-queue": "requests", "chart-inflight": "requests"} {
		axes := js[string](t, ctx, `(f => f.querySelector(".ytitle").textContent + "|" + f.querySelectorAll(".yticks span").length + "|" +
			f.querySelectorAll(".xticks span").length + "|" + f.querySelector(".xtitle").textContent)(document.getElementById("`+id+`"))`)
		var title, xtitle string
		var yticks, xticks int
		if _, err := fmt.Sscanf(strings.ReplaceAll(axes, "|", " "), "%s %d %d %s", &title, &yticks, &xticks, &xtitle); err != nil ||
			title != unit || yticks < 2 || xticks < 2 || xtitle != "time" {
			t.Errorf("%s's axes: %q; want the y axis in %s with ticks, the x axis in time with ticks", id, axes, unit)
		}
	}
	in.waitReady(2)

	// The scale-up button adds a replica.
	testutil.WaitFor(t, 5*time.Second, "the scale-up button", func() bool {
		return js[bool](t, ctx, `!document.getElementById("actions").hidden && !document.getElementById("scale-up").disabled`)
	})
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#scale-up"), chromedp.NodeVisible)); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 15*time.Second, "a third replica, ready, on the page", func() bool {
		return js[int](t, ctx, `document.querySelectorAll('#replicas tbody tr[data-state="ready"]').length`) == 3
	})
	if st := in.status(); st.Desired != 3 || st.Ready() != 3 {
		t.Errorf("after scale-up: desired %d, ready %d; want 3, 3", st.Desired, st.Ready())
	}
	if got := js[string](t, ctx, `document.getElementById("action-result").textContent`); got != "scaled 2 → 3" {
		t.Errorf("the page says %q after scaling up", got)
	}

	if path := os.Getenv(screenshotEnv); path != "" {
		// Enough history for the charts to show their shape.
		testutil.WaitFor(t, 90*time.Second, "a minute of history", func() bool {
			return js[int](t, ctx, `document.querySelectorAll("#chart-rps path")[0].getAttribute("d").split("L").length`) >= 60
		})
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot in %s", path)
	}
}

// post sends an action as a script would, with the action header and,
// if not empty, a bearer token.
func postAction(t *testing.T, url, body, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Mattingctl-Action", "1")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// dashboardLink runs `mattingctl dashboard` for in and returns the URL it
// printed and the token in it.
func dashboardLink(t *testing.T, in *instance) (link, token string) {
	t.Helper()
	out, errOut, code := in.ctl("dashboard", "--name", instanceName(in))
	link = strings.TrimSpace(out)
	u, err := url.Parse(link)
	if code != 0 || err != nil || strings.Count(out, "\n") != 1 {
		t.Fatalf("mattingctl dashboard: exit %d, printed %q, stderr %q", code, out, errOut)
	}
	token = u.Query().Get("token")
	if len(token) < 16 {
		t.Fatalf("mattingctl dashboard printed %q: no token in it", link)
	}
	return link, token
}

// instanceName is the --name in was started with, default without one.
func instanceName(in *instance) string {
	for i, a := range in.cmd.Args {
		if a == "--name" && i+1 < len(in.cmd.Args) {
			return in.cmd.Args[i+1]
		}
	}
	return "default"
}

// TestDashboardActionsNeedTheToken: with the admin listener on 0.0.0.0,
// as the Kubernetes example has it, an action without the token answers
// 401 even to a client on 127.0.0.1; with the token `mattingctl
// dashboard` prints it acts. Reading stays open, without the command
// line. With --admin-token, that token is the one, in the file too.
func TestDashboardActionsNeedTheToken(t *testing.T) {
	t.Parallel()
	port := testutil.FreePort(t)
	admin := "0.0.0.0:" + strconv.Itoa(port)
	in := start(t, 1, "--admin", admin, "--", fakemodel)
	in.waitReady(1)
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	for _, path := range []string{"/api/scale", "/api/restart"} {
		if code, body := postAction(t, base+path, `{"replicas": 2}`, ""); code != http.StatusUnauthorized {
			t.Errorf("POST %s on %s without a token: %d %s, want 401", path, admin, code, body)
		}
	}
	if st := in.status(); st.Desired != 1 || st.Replicas[0].Restarts != 0 {
		t.Errorf("a refused action acted: %+v", st)
	}
	var state struct {
		Status struct {
			Command []string `json:"command"`
		} `json:"status"`
		Actions struct {
			Offered    bool `json:"offered"`
			Authorized bool `json:"authorized"`
		} `json:"actions"`
	}
	resp, err := http.Get(base + "/api/dashboard")
	if err != nil {
		t.Fatal(err)
	}
	err = json.NewDecoder(resp.Body).Decode(&state)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || !state.Actions.Offered || state.Actions.Authorized || state.Status.Command != nil {
		t.Errorf("GET /api/dashboard without the token: %d, %+v, %v; want 200, actions offered, no command line", resp.StatusCode, state, err)
	}
	link, token := dashboardLink(t, in)
	if !strings.HasPrefix(link, base+"/?token=") {
		t.Errorf("mattingctl dashboard printed %q for --admin %s, want %s/?token=...", link, admin, base)
	}
	if code, body := postAction(t, base+"/api/scale", `{"replicas": 2}`, token); code != 200 {
		t.Errorf("with the token: %d %s", code, body)
	}
	if st := in.status(); st.Desired != 2 {
		t.Errorf("desired %d after a scale with the token, want 2", st.Desired)
	}
	in.ctl("down")
	in.wait(30 * time.Second)

	const given = "e2e-token-0123456789"
	in = start(t, 1, "--admin", admin, "--admin-token", given, "--", fakemodel)
	in.waitReady(1)
	if code, _ := postAction(t, base+"/api/scale", `{"replicas": 2}`, "wrong-token-0123456789"); code != http.StatusUnauthorized {
		t.Errorf("a wrong token: %d, want 401", code)
	}
	if code, body := postAction(t, base+"/api/scale", `{"replicas": 2}`, given); code != 200 {
		t.Errorf("with the token: %d %s", code, body)
	}
	if st := in.status(); st.Desired != 2 {
		t.Errorf("desired %d after a scale with the token, want 2", st.Desired)
	}
	if _, token := dashboardLink(t, in); token != given {
		t.Errorf("mattingctl dashboard gave the token %q, want --admin-token's %q", token, given)
	}
	if b, err := os.ReadFile(filepath.Join(in.home, "default.token")); err != nil || string(b) != given+"\n" {
		t.Errorf("token file: %q, %v; want --admin-token's", b, err)
	}
}

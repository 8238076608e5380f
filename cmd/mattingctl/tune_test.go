package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/tune"
)

// TestTuneFlags: the flags land in the options, and the command after --
// keeps its own flags.
func TestTuneFlags(t *testing.T) {
	var got *tuneOptions
	root := newRootCmd(testFactory(), runFuncs{tune: func(o *tuneOptions) error { got = o; return nil }})
	root.SetArgs([]string{"tune", "--request", "r.json", "--warmup", "w.json", "--health", "/health", "--duration", "5s", "--budget", "2m",
		"--replicas", "1,2", "--inflight", "1,4,auto", "--chart", "c.svg", "-e", "A=1", "--remeasure", "0", "--", "python3", "app.py", "--port", "1"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	if got.Request != "r.json" || got.Warmup != "w.json" || got.Health != "/health" || got.Duration != 5*time.Second || got.Budget != 2*time.Minute ||
		got.Replicas != "1,2" || got.Inflight != "1,4,auto" || got.Chart != "c.svg" || !slices.Equal(got.Env, []string{"A=1"}) || got.Remeasure != 0 ||
		!slices.Equal(got.Command, []string{"python3", "app.py", "--port", "1"}) {
		t.Errorf("options: %+v", got)
	}
	root = newRootCmd(testFactory(), runFuncs{tune: func(o *tuneOptions) error { got = o; return nil }})
	root.SetArgs([]string{"tune", "--", "srv"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	if got.Duration != 20*time.Second || got.Budget != 10*time.Minute || got.LogLevel != "off" || got.ReadyTimeout != 5*time.Minute || got.Remeasure != 2 {
		t.Errorf("defaults: duration %s budget %s log %s ready %s remeasure %d", got.Duration, got.Budget, got.LogLevel, got.ReadyTimeout, got.Remeasure)
	}
	root = newRootCmd(testFactory(), runFuncs{tune: func(o *tuneOptions) error { got = o; return nil }})
	root.SetArgs([]string{"tune", "--remeasure", "-1", "--", "srv"})
	if err := root.Execute(); err == nil || !strings.Contains(err.Error(), "--remeasure") {
		t.Errorf("--remeasure -1: %v, want a refusal naming the flag", err)
	}
}

func TestParseInflights(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []int
		auto bool
		err  bool
	}{
		{"", tune.DefaultInflights, true, false},
		{"1,2,4", []int{1, 2, 4}, false, false},
		{"auto", nil, true, false},
		{" 2, 8 ,auto", []int{2, 8}, true, false},
		{"0", nil, false, true},
		{"4,2", nil, false, true},
		{"1,x", nil, false, true},
		{"2000", nil, false, true},
	} {
		got, auto, err := parseInflights(c.in)
		if (err != nil) != c.err || !c.err && (!slices.Equal(got, c.want) || auto != c.auto) {
			t.Errorf("parseInflights(%q) = %v, %v, %v", c.in, got, auto, err)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "--inflight ") {
			t.Errorf("error %q does not name the flag", err)
		}
	}
	if _, err := parseCounts("1,0"); err == nil || !strings.HasPrefix(err.Error(), "--replicas ") {
		t.Errorf("parseCounts(1,0): %v", err)
	}
	if got, err := parseCounts("1,3,6"); err != nil || !slices.Equal(got, []int{1, 3, 6}) {
		t.Errorf("parseCounts(1,3,6) = %v, %v", got, err)
	}
}

// TestShapeOf: shapes pin as up --cpus auto does, a core's hyperthreads
// together, and write the sets as --cpus takes them.
func TestShapeOf(t *testing.T) {
	saved := coreOf
	defer func() { coreOf = saved }()
	coreOf = func(cpu int) int { return cpu % 4 } // 0 and 4 are one core
	cpus := []int{0, 1, 2, 3, 4, 5, 6, 7}
	for _, c := range []struct {
		n    int
		want tune.Shape
	}{
		{1, tune.Shape{Replicas: 1, CPUsEach: 8, CPUs: "0-7"}},
		{2, tune.Shape{Replicas: 2, CPUsEach: 4, CPUs: "0-1+4-5,2-3+6-7"}},
		{8, tune.Shape{Replicas: 8, CPUsEach: 1, CPUs: "0,4,1,5,2,6,3,7"}},
		{16, tune.Shape{Replicas: 16, CPUsEach: 1, Shared: true, CPUs: "0,4,1,5,2,6,3,7"}},
	} {
		if got := shapeOf(c.n, cpus); got != c.want {
			t.Errorf("shapeOf(%d) = %+v, want %+v", c.n, got, c.want)
		}
		if sets, err := parseCPUs(c.want.CPUs, c.n, cpus); err != nil || len(sets) != min(c.n, 8) {
			t.Errorf("--cpus %s does not parse back to %d sets: %v, %v", c.want.CPUs, min(c.n, 8), sets, err)
		}
	}
	if got := shapeOf(3, nil); got != (tune.Shape{Replicas: 3}) {
		t.Errorf("unpinned: %+v", got)
	}
}

// TestTunePlanRefuses: every refusal is one line naming what to fix, and
// comes before anything runs.
func TestTunePlanRefuses(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "req.json")
	os.WriteFile(good, []byte(`{"path": "/predict", "body": {"x": 1}}`), 0o644)
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"url": "/"}`), 0o644)
	for _, c := range []struct {
		opts tuneOptions
		want string
	}{
		{tuneOptions{}, "no command to tune: give it after --"},
		{tuneOptions{Command: []string{"true"}}, "no request to measure with: give --request FILE"},
		{tuneOptions{Command: []string{"true"}, Request: filepath.Join(dir, "none.json")}, "--request " + filepath.Join(dir, "none.json") + ": no such file"},
		{tuneOptions{Command: []string{"true"}, Warmup: bad}, "--warmup " + bad + ": unknown field"},
		{tuneOptions{Command: []string{"true"}, Request: good, Warmup: bad}, "--warmup " + bad + ": unknown field"},
		{tuneOptions{Command: []string{"/nonexistent/srv"}, Request: good}, "/nonexistent/srv"},
		{tuneOptions{Command: []string{"true"}, Request: good, Inflight: "0"}, "--inflight"},
	} {
		_, err := c.opts.plan()
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%+v: error %v, want one line with %q", c.opts, err, c.want)
		}
	}
	p, err := (&tuneOptions{Command: []string{"true"}, Warmup: good, Duration: 20 * time.Second}).plan()
	if err != nil {
		t.Fatal(err)
	}
	if p.request.Method != "POST" || p.request.Target != "/predict" || string(p.request.Body) != `{"x":1}` || p.cfg.Warmup != 5*time.Second {
		t.Errorf("plan from --warmup: request %+v, warm-up %s", p.request, p.cfg.Warmup)
	}
}

// TestTuneReport: the table comes best first, then the skips and the
// best's up line with the flags every layout ran with; an interrupt exits
// 130, no layout without errors 1.
func TestTuneReport(t *testing.T) {
	ms := time.Millisecond
	res := func(replicas, n int, rps float64, p99 time.Duration, errs int) tune.Result {
		return tune.Result{
			Layout:      tune.Layout{Shape: shapeOf(replicas, []int{0, 1}), Inflight: n},
			Measurement: tune.Measurement{Requests: int(rps * 10), Seconds: 10, P50: p99 / 2, P99: p99, Errors: errs},
		}
	}
	rep := tune.Report{
		Results: []tune.Result{res(1, 1, 5, 300*ms, 0), res(2, 1, 9.8, 250*ms, 0), res(2, 2, 10, 500*ms, 0)},
		Skipped: []tune.Skip{{Shape: shapeOf(4, []int{0, 1}), Inflights: []int{1, tune.Auto}, Reason: "out of time (--budget 1m0s)"}},
		Remeasure: &tune.Remeasure{Layouts: []tune.Layout{{Shape: shapeOf(2, []int{0, 1}), Inflight: 1}, {Shape: shapeOf(2, []int{0, 1}), Inflight: 2}},
			Runs: []int{3, 2}, Rounds: 2, Stopped: "out of time (--budget 1m0s)"},
	}
	for _, i := range []int{1, 2} {
		rep.Results[i].Finalist, rep.Results[i].Runs = true, rep.Remeasure.Runs[i-1]
	}
	var out bytes.Buffer
	chart := filepath.Join(t.TempDir(), "c.svg")
	opts := &tuneOptions{Out: &out, ErrOut: &out, Command: []string{"python3", "app.py"}, Health: "/health", ReadyTimeout: 5 * time.Minute, Chart: chart}
	if err := opts.report(rep); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(out.String(), "\n")
	if !strings.HasPrefix(lines[1], "2 ") || !strings.Contains(lines[1], "9.8") || !strings.HasSuffix(lines[1], " 3") {
		t.Errorf("first row is not 2x1 inflight 1 (within 5%% of the top, the lower p99):\n%s", out.String())
	}
	for _, want := range []string{
		"skipped: 4x1 shared inflight 1,auto: out of time (--budget 1m0s)",
		"re-measure stopped, out of time (--budget 1m0s), before 2 more runs each: measured 2x1 inflight 1 3 times, 2x1 inflight 2 twice in all",
		"  mattingctl up --replicas 2 --cpus 0,1 --max-inflight 1 --health /health -- python3 app.py\n",
		"note: 2 of the layouts answered fewer than 100 requests while measured", // 50 and 98 answers
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if b, err := os.ReadFile(chart); err != nil || !strings.Contains(string(b), "2x1 inflight 1 (best)") {
		t.Errorf("chart: %v", err)
	}

	rep.Interrupted = true
	var exit *exitError
	if err := opts.report(rep); !errors.As(err, &exit) || exit.code != 130 || err.Error() != "" {
		t.Errorf("interrupted: %v, want exit 130 with nothing more printed", err)
	}
	out.Reset()
	rep = tune.Report{Results: []tune.Result{res(1, 1, 5, 300*ms, 2)}}
	if err := opts.report(rep); !errors.As(err, &exit) || exit.code != 1 || !strings.Contains(out.String(), "no layout ran without errors") {
		t.Errorf("all with errors: %v\n%s", err, out.String())
	}
}

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"

	"github.com/mattingctl/mattingctl/internal/control"
	"github.com/mattingctl/mattingctl/internal/testutil"
)

// topStatus is an instance of three replicas, one of them failed, with
// numbers as wide as they get.
func topStatus(requests ...uint64) control.Status {
	started := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	st := control.Status{Name: "default", Port: 9110, Policy: "least_conn", Desired: 3, StartedAt: started,
		QueueMax: 1024, Queued: 17, Rejected: 123456, Retried: 42, Failed: 7}
	for i, n := range requests {
		r := control.ReplicaStatus{ID: i + 1, Name: fmt.Sprintf("replica-%d", i+1), Port: 9111 + i, Pid: 4000 + i,
			State: control.Ready, Inflight: int64(i), MaxInflight: 8, Limit: 8, Requests: n, Restarts: i * 1000,
			CPUPercent: 99.5 * float64(i+1), RSSBytes: 210 << 20}
		st.Replicas = append(st.Replicas, r)
	}
	last := &st.Replicas[len(st.Replicas)-1]
	last.State, last.Pid, last.Error = control.Failed, 0, "exited before becoming ready: "+strings.Repeat("x", 200)
	return st
}

// screenOf draws st after prev, a second earlier, as top would.
func screenOf(prev, st control.Status, s topScreen) []string {
	t0 := time.Date(2024, 5, 1, 12, 5, 0, 0, time.UTC)
	s.rates = newRateTracker()
	s.rates.observe(prev, t0)
	s.rates.observe(st, t0.Add(time.Second))
	s.st, s.now = st, t0.Add(time.Second)
	return s.lines()
}

func TestTopScreenFitsEightyColumns(t *testing.T) {
	withLatency := func(r control.ReplicaStatus) (float64, float64, bool) { return 12.5, 98765, true }
	for _, tc := range []struct {
		name   string
		screen topScreen
		width  int
	}{
		{"plain", topScreen{}, 80},
		{"colour", topScreen{styles: newTopStyles(), footer: "q or ctrl+c: quit"}, 80},
		{"latency", topScreen{latency: withLatency, styles: newTopStyles()}, 80},
		{"narrow terminal", topScreen{width: 60, styles: newTopStyles()}, 60},
		{"wide terminal", topScreen{width: 200}, 80},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lines := screenOf(topStatus(100, 2000, 5), topStatus(145, 9000, 5), tc.screen)
			rows := 0
			for _, l := range lines {
				if w := ansi.StringWidth(l); w > tc.width {
					t.Errorf("line %d columns wide, more than %d: %q", w, tc.width, l)
				}
				plain := ansi.Strip(l)
				if strings.HasPrefix(plain, "replica-") && (strings.Contains(plain, " ready ") || strings.Contains(plain, " failed ")) {
					rows++
				}
			}
			if rows != 3 {
				t.Errorf("%d replica rows, want 3:\n%s", rows, strings.Join(lines, "\n"))
			}
		})
	}
}

func TestTopScreenShowsRatesAndLatency(t *testing.T) {
	cur := topStatus(145, 9000, 5)
	cur.Latency = control.LatencyStatus{Responses: 4000, P50Ms: 3.25, P95Ms: 120.4, P99Ms: 180}
	lines := screenOf(topStatus(100, 2000, 5), cur, topScreen{
		latency: func(r control.ReplicaStatus) (float64, float64, bool) { return 3.25, 180, r.ID == 1 },
	})
	text := strings.Join(lines, "\n")
	for _, want := range []string{
		"instance default: proxy port 9110, least_conn, 2/3 replicas ready, up 5m1s",
		"queue: 17/1024 waiting; rejected 123456, retried 42, failed 7",
		"latency, last minute: p50 3.25ms, p95 120ms, p99 180ms",
		"REPLICA     STATE      PORT INFLIGHT    RPS RESTARTS    CPU    RSS    P50    P99",
		"replica-1   ready      9111      0/8   45.0        0  99.5% 210MiB 3.25ms  180ms",
		"replica-2   ready      9112      1/8   7000     1000 199.0% 210MiB      -      -",
		"replica-3   failed     9113      2/8    0.0     2000      -      -      -      -",
		"replica-3 failed: exited before becoming ready: xxx",
		"requests per second, last minute, all replicas 7045/s",
		"replica-1   █                                                       peak 45.0/s",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("screen lacks %q:\n%s", want, text)
		}
	}
	// Without latency the columns are not there.
	lines = screenOf(topStatus(1, 1, 1), topStatus(1, 1, 1), topScreen{})
	if text := strings.Join(lines, "\n"); strings.Contains(text, "P50") {
		t.Errorf("P50 column without latency:\n%s", text)
	}
}

// TestTopScreenServices: an instance of several services shows how many
// in its title, and a line of queue and latency for each.
func TestTopScreenServices(t *testing.T) {
	cur := topStatus(145, 9000, 5)
	m, f := cur, cur
	m.Service, m.Route, m.Queued = "matting", "/matting/", 3
	m.Latency = control.LatencyStatus{Responses: 10, P50Ms: 3.25, P95Ms: 10, P99Ms: 12}
	f.Service, f.Route, f.Queued = "flask", "/flask/", 14
	cur.Services = []control.Status{m, f}
	text := strings.Join(screenOf(topStatus(100, 2000, 5), cur, topScreen{}), "\n")
	for _, want := range []string{
		"instance default: proxy port 9110, 2 services, 2/3 replicas ready",
		"service matting: 3/1024 waiting; rejected 123456, failed 7; p50 3.25ms, p99 12.0",
		"service flask: 14/1024 waiting; rejected 123456, failed 7",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("screen lacks %q:\n%s", want, text)
		}
	}
}

func TestTopScreenCutsAtTheTerminalsHeight(t *testing.T) {
	lines := screenOf(topStatus(1, 1, 1), topStatus(2, 2, 2), topScreen{height: 6})
	if len(lines) != 6 || !strings.HasPrefix(lines[0], "instance default") || !strings.HasPrefix(lines[4], "replica-1") {
		t.Errorf("6 rows high:\n%s", strings.Join(lines, "\n"))
	}
}

func TestSparklineScalesToItsPeak(t *testing.T) {
	for _, tc := range []struct {
		values []float64
		width  int
		want   string
		peak   float64
	}{
		{[]float64{0, 1, 2, 3, 4, 5, 6, 7}, 8, "▁▂▃▄▅▆▇█", 7},
		{[]float64{0, 10, 20, 30, 40, 50, 60, 70}, 8, "▁▂▃▄▅▆▇█", 70}, // the scale is relative
		{[]float64{5, 10}, 8, "▅█", 10},                               // fewer values, shorter line
		{[]float64{0, 0, 0}, 8, "▁▁▁", 0},                             // idle is flat, not an error
		{[]float64{100, 1, 2, 3}, 3, "▃▆█", 3},                        // the window is the last width values
		{[]float64{-1, 4}, 8, "▁█", 4},                                // nothing below the floor
		{nil, 8, "", 0},
		{[]float64{1, 2}, 0, "", 0},
	} {
		got, peak := sparkline(tc.values, tc.width)
		if got != tc.want || peak != tc.peak {
			t.Errorf("sparkline(%v, %d) = %q, %v; want %q, %v", tc.values, tc.width, got, peak, tc.want, tc.peak)
		}
	}
}

func TestRateTrackerComputesRequestsPerSecond(t *testing.T) {
	tr := newRateTracker()
	t0 := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	tr.observe(topStatus(100, 0), t0)
	if _, ok := tr.rate("1"); ok {
		t.Error("a rate after one poll")
	}
	tr.observe(topStatus(300, 50), t0.Add(2*time.Second))
	if r, ok := tr.rate("1"); !ok || r != 100 {
		t.Errorf("replica 1: %v, %v; want 100/s", r, ok)
	}
	if r, _ := tr.rate("2"); r != 25 {
		t.Errorf("replica 2: %v; want 25/s", r)
	}
	// A count that went down is a new base, not a negative rate.
	tr.observe(topStatus(10, 60), t0.Add(3*time.Second))
	if h := tr.history("1"); len(h) != 1 || h[0] != 100 {
		t.Errorf("replica 1 after its count went down: %v", h)
	}
	tr.observe(topStatus(20, 60), t0.Add(4*time.Second))
	if r, _ := tr.rate("1"); r != 10 {
		t.Errorf("replica 1 after a new base: %v; want 10/s", r)
	}
	// The history keeps the last minute.
	for i := 0; i < 2*rateHistory; i++ {
		tr.observe(topStatus(uint64(100+i), 60), t0.Add(time.Duration(5+i)*time.Second))
	}
	if n := len(tr.history("1")); n != rateHistory {
		t.Errorf("history of %d rates, want %d", n, rateHistory)
	}
	// A replica no longer listed is forgotten.
	tr.observe(topStatus(1000), t0.Add(time.Hour))
	if _, ok := tr.rate("2"); ok || len(tr.hist) != 1 || len(tr.last) != 1 {
		t.Errorf("replica 2 still tracked after it left: %v", tr.hist)
	}
}

func TestReplicaKeysTellApartADrainingReplicaFromItsSuccessor(t *testing.T) {
	rs := []control.ReplicaStatus{{ID: 1}, {ID: 2, State: control.Draining}, {ID: 2}, {ID: 3}}
	if got := strings.Join(replicaKeys(rs), " "); got != "1 2 2#1 3" {
		t.Errorf("keys %q", got)
	}
}

func TestTopModelQuitsOnQAndCtrlC(t *testing.T) {
	m := newTopModel(&fakeClient{}, "default", topStatus(1), time.Now(), time.Second, time.Now, topScreen{})
	for _, key := range []tea.KeyPressMsg{
		{Code: 'q', Text: "q"},
		{Code: 'q', ShiftedCode: 'Q', Text: "Q", Mod: tea.ModShift},
		{Code: 'c', Mod: tea.ModCtrl},
	} {
		_, cmd := m.Update(key)
		if cmd == nil {
			t.Errorf("%s: no command", key)
			continue
		}
		if _, ok := cmd().(tea.QuitMsg); !ok {
			t.Errorf("%s does not quit", key)
		}
	}
	if _, cmd := m.Update(tea.KeyPressMsg{Code: 'x', Text: "x"}); cmd != nil {
		t.Error("x does something")
	}
}

// countingClient answers with a request count that grows by step each
// call; it is safe for the program's goroutines.
type countingClient struct {
	fakeClient
	mu    sync.Mutex
	n     uint64
	step  uint64
	polls int
	err   error
}

func (c *countingClient) Status(context.Context) (control.Status, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.polls++
	c.n += c.step
	return topStatus(c.n, 2*c.n, 0), c.err
}

func (c *countingClient) fail(err error) {
	c.mu.Lock()
	c.err = err
	c.mu.Unlock()
}

func TestTopModelPollsAndStopsWhenTheInstanceGoesAway(t *testing.T) {
	c := &countingClient{step: 10}
	clock := time.Date(2024, 5, 1, 12, 5, 0, 0, time.UTC)
	now := func() time.Time { clock = clock.Add(time.Second); return clock }
	st, _ := c.Status(context.Background())
	var m tea.Model = newTopModel(c, "gpu", st, now(), time.Second, now, topScreen{})
	var cmd tea.Cmd
	m, cmd = m.Update(tickMsg{})
	m, cmd = m.Update(cmd())
	if cmd == nil {
		t.Fatal("no next tick after a poll")
	}
	if r, _ := m.(topModel).rates.rate("1"); r != 10 {
		t.Errorf("replica 1 at %v/s, want 10", r)
	}
	if view := m.(topModel).frame(); !strings.Contains(view, "replica-2   ready      9112      1/8   20.0") {
		t.Errorf("view:\n%s", view)
	}
	c.fail(errors.New(`no mattingctl instance "gpu" is running (stale control socket at /x)`))
	m, cmd = m.Update(tickMsg{})
	m, cmd = m.Update(cmd())
	if _, ok := cmd().(tea.QuitMsg); !ok {
		t.Error("top goes on after the instance went away")
	}
	if err := m.(topModel).err; err == nil || err.Error() != `instance "gpu" went away: no mattingctl instance "gpu" is running (stale control socket at /x)` {
		t.Errorf("err = %v", err)
	}
	if m.(topModel).frame() != "" {
		t.Error("a stale frame is left on the screen")
	}
}

func TestTopPrintsOneFrameWhenNotATerminal(t *testing.T) {
	c := &countingClient{step: 5}
	var out strings.Builder
	clock := time.Date(2024, 5, 1, 12, 5, 0, 0, time.UTC)
	opts := &topOptions{Out: &out, In: strings.NewReader(""), Name: "default", Interval: time.Millisecond,
		Client: func() (instanceClient, error) { return c, nil },
		Now:    func() time.Time { clock = clock.Add(500 * time.Millisecond); return clock }}
	if err := topRun(opts); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	if c.polls != 2 || !strings.Contains(text, "replica-1   ready      9111      0/8   10.0") || strings.Contains(text, "\x1b") {
		t.Errorf("%d polls, printed:\n%q", c.polls, text)
	}
	if strings.Contains(text, "quit") {
		t.Errorf("the frame offers keys:\n%s", text)
	}
}

func TestTopWithoutAnInstanceFailsAsStatusDoes(t *testing.T) {
	noInstance := errors.New(`no mattingctl instance "default" is running (no control socket at /x); start one with ` + "`mattingctl up`")
	opts := &topOptions{Out: io.Discard, Client: func() (instanceClient, error) { return nil, noInstance }}
	if err := topRun(opts); err != noInstance {
		t.Errorf("top without an instance: %v", err)
	}
	// A socket that is there but not answering fails at the first poll.
	fake := &fakeClient{err: errors.New(`no mattingctl instance "default" is running (stale control socket at /x)`)}
	if _, _, err := runCmd(t, fake, "top"); err != fake.err {
		t.Errorf("top with a stale socket: %v", err)
	}
}

func TestTopTakesName(t *testing.T) {
	var got *topOptions
	root := newRootCmd(testFactory(), runFuncs{top: func(o *topOptions) error { got = o; return nil }})
	root.SetArgs([]string{"top", "--name", "gpu"})
	if err := root.Execute(); err != nil || got == nil || got.Name != "gpu" {
		t.Fatalf("top --name gpu: %v, %+v", err, got)
	}
	root = newRootCmd(testFactory(), runFuncs{top: func(o *topOptions) error { return nil }})
	root.SetArgs([]string{"top", "extra"})
	if err := root.Execute(); err == nil {
		t.Error("top takes an argument")
	}
}

// TestTopLiveScreenQuitsOnQ runs the whole program over pipes: it draws
// the screen in the alternate buffer, polls, and restores the terminal
// when q is typed.
func TestTopLiveScreenQuitsOnQ(t *testing.T) {
	c := &countingClient{step: 3}
	inR, inW := io.Pipe()
	var out testutil.SyncBuffer
	opts := &topOptions{Out: &out, In: inR, Name: "default", Interval: 10 * time.Millisecond,
		Client: func() (instanceClient, error) { return c, nil }, Interactive: func() bool { return true }}
	done := make(chan error, 1)
	go func() { done <- topRun(opts) }()
	testutil.WaitFor(t, 10*time.Second, "a few polls drawn", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.polls >= 3 && strings.Contains(out.String(), "replica-2")
	})
	if _, err := inW.Write([]byte("q")); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("top after q: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("top still running 10s after q")
	}
	inW.Close()
	// The alternate screen is entered, and left after the last frame.
	text := out.String()
	enter, leave := strings.Index(text, "\x1b[?1049h"), strings.LastIndex(text, "\x1b[?1049l")
	if enter < 0 || leave < strings.LastIndex(text, "replica-") {
		t.Errorf("the alternate screen is not entered and left:\n%q", text)
	}
}

func TestTopLiveScreenExitsWhenTheInstanceGoesAway(t *testing.T) {
	c := &countingClient{step: 3}
	inR, inW := io.Pipe()
	defer inW.Close()
	var out testutil.SyncBuffer
	opts := &topOptions{Out: &out, In: inR, Name: "default", Interval: 10 * time.Millisecond,
		Client: func() (instanceClient, error) { return c, nil }, Interactive: func() bool { return true }}
	done := make(chan error, 1)
	go func() { done <- topRun(opts) }()
	testutil.WaitFor(t, 10*time.Second, "a poll drawn", func() bool { return strings.Contains(out.String(), "replica-1") })
	c.fail(errors.New(`instance "default" did not answer in time`))
	select {
	case err := <-done:
		if err == nil || err.Error() != `instance "default" went away: instance "default" did not answer in time` {
			t.Errorf("top after the instance went away: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("top still running 10s after the instance went away")
	}
}

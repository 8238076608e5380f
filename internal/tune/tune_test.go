package tune

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestReplicaCounts(t *testing.T) {
	for _, c := range []struct {
		cpus int
		want []int
	}{
		{0, []int{1, 2}},
		{1, []int{1, 2}},
		{2, []int{1, 2, 4}},
		{3, []int{1, 2, 3, 6}},
		{8, []int{1, 2, 4, 8, 16}},
		{12, []int{1, 2, 4, 8, 12, 24}},
	} {
		if got := ReplicaCounts(c.cpus); !slices.Equal(got, c.want) {
			t.Errorf("ReplicaCounts(%d) = %v, want %v", c.cpus, got, c.want)
		}
	}
}

func TestUpLine(t *testing.T) {
	l := Layout{Shape: Shape{Replicas: 2, CPUsEach: 1, CPUs: "0,1"}, Inflight: 4}
	got := UpLine(l, []string{"--health", "/health"}, []string{"python3", "app.py", "--name", "a b"})
	want := "mattingctl up --replicas 2 --cpus 0,1 --max-inflight 4 --health /health -- python3 app.py --name 'a b'"
	if got != want {
		t.Errorf("UpLine:\n got %s\nwant %s", got, want)
	}
	l = Layout{Shape: Shape{Replicas: 1}, Inflight: Auto}
	if got, want := UpLine(l, nil, []string{"srv", "it's"}), `mattingctl up --replicas 1 --max-inflight auto -- srv 'it'\''s'`; got != want {
		t.Errorf("UpLine unpinned:\n got %s\nwant %s", got, want)
	}
}

// result makes a measured layout: inflight n, rps requests a second over
// 10s, p99, errors.
func result(n int, rps float64, p99 time.Duration, errs int) Result {
	return Result{
		Layout:      Layout{Shape: Shape{Replicas: 1, CPUsEach: 2}, Inflight: n},
		Measurement: Measurement{Requests: int(rps * 10), Seconds: 10, P50: p99 / 2, P99: p99, Errors: errs},
	}
}

func TestGrows(t *testing.T) {
	ms := time.Millisecond
	for _, c := range []struct {
		name string
		best *Result
		last Result
		want bool
		why  string
	}{
		{"first", nil, result(1, 10, 100*ms, 0), true, ""},
		{"first with errors", nil, result(1, 10, 100*ms, 3), false, "inflight 1 had 3 errors"},
		{"rises", ptr(result(1, 10, 100*ms, 0)), result(2, 19, 110*ms, 0), true, ""},
		{"rises too little", ptr(result(2, 20, 100*ms, 0)), result(4, 20.9, 200*ms, 0), false, "did not raise requests/s by 5% over inflight 2"},
		{"falls", ptr(result(4, 40, 100*ms, 0)), result(8, 30, 500*ms, 0), false, "did not raise"},
		{"p99 explodes", ptr(result(4, 40, 100*ms, 0)), result(8, 50, 310*ms, 0), false, "p99 310ms is more than 3x inflight 4's"},
		{"errors", ptr(result(4, 40, 100*ms, 0)), result(8, 80, 100*ms, 1), false, "had 1 errors"},
	} {
		got, why := Grows(c.best, c.last)
		if got != c.want || !strings.Contains(why, c.why) || (c.why == "") != (why == "") {
			t.Errorf("%s: Grows = %v, %q; want %v, %q", c.name, got, why, c.want, c.why)
		}
	}
}

func ptr(r Result) *Result { return &r }

func TestBest(t *testing.T) {
	ms := time.Millisecond
	for _, c := range []struct {
		name    string
		results []Result
		want    int
	}{
		{"none", nil, -1},
		{"all err", []Result{result(1, 10, ms, 1), result(2, 20, ms, 2)}, -1},
		{"top throughput", []Result{result(1, 10, 50*ms, 0), result(2, 20, 100*ms, 0), result(4, 30, 200*ms, 0)}, 2},
		{"close: lower p99 wins", []Result{result(4, 100, 200*ms, 0), result(8, 104, 400*ms, 0), result(2, 70, 50*ms, 0)}, 0},
		{"not close enough", []Result{result(4, 94, 200*ms, 0), result(8, 100, 400*ms, 0)}, 1},
		{"errors excluded", []Result{result(4, 100, 200*ms, 0), result(8, 200, 100*ms, 1)}, 0},
		{"p99 tie: higher throughput", []Result{result(4, 98, 200*ms, 0), result(8, 100, 200*ms, 0)}, 1},
	} {
		if got := Best(c.results); got != c.want {
			t.Errorf("%s: Best = %d, want %d", c.name, got, c.want)
		}
	}
}

func TestRanked(t *testing.T) {
	ms := time.Millisecond
	rs := []Result{result(1, 10, 50*ms, 0), result(2, 50, 100*ms, 3), result(4, 30, 200*ms, 0), result(8, 31, 300*ms, 0), result(16, 40, 300*ms, 1)}
	var got []int
	for _, r := range Ranked(rs) {
		got = append(got, r.Layout.Inflight)
	}
	if want := []int{4, 8, 1, 16, 2}; !slices.Equal(got, want) {
		t.Errorf("Ranked inflights = %v, want %v (best, then by throughput, then errors fewest first)", got, want)
	}
}

// curveRunner simulates replicas of a server that serves best at k in
// flight: each does k/service requests a second at n >= k, slower past k
// by thrash per k more; a closed loop of c clients sees c/throughput.
// It moves the clock by the load's time plus overhead.
type curveRunner struct {
	k       int
	service time.Duration
	clock   *time.Time
	over    time.Duration
	rss     uint64
	ran     []Layout
	fail    map[string]error // by layout
	cancel  func()           // called after the run numbered cancelAt
	after   int
}

func (c *curveRunner) Run(ctx context.Context, l Layout, load Load) (Result, error) {
	c.ran = append(c.ran, l)
	*c.clock = c.clock.Add(load.Warmup + load.Duration + c.over)
	if err := c.fail[l.String()]; err != nil {
		return Result{}, err
	}
	if c.cancel != nil && len(c.ran) == c.after {
		c.cancel()
		return Result{}, ctx.Err()
	}
	n := float64(l.Inflight)
	if l.Inflight == Auto {
		n = float64(c.k) // auto settles near k
	}
	k := float64(c.k)
	each := min(n, k) / c.service.Seconds() / (1 + 0.25*max(0, n-k)/k)
	rps := each * float64(l.Replicas)
	lat := time.Duration(float64(load.Clients) / rps * float64(time.Second))
	return Result{
		Measurement: Measurement{Requests: int(math.Round(rps * load.Duration.Seconds())), Seconds: load.Duration.Seconds(), P50: lat, P99: lat * 3 / 2},
		RSS:         c.rss * uint64(l.Replicas),
	}, nil
}

func shapes(counts ...int) []Shape {
	var out []Shape
	for _, n := range counts {
		out = append(out, Shape{Replicas: n, CPUsEach: 1})
	}
	return out
}

func TestSweepFindsTheCurvesKnee(t *testing.T) {
	clock := time.Unix(0, 0)
	r := &curveRunner{k: 4, service: 100 * time.Millisecond, clock: &clock, over: time.Second, rss: 100 << 20}
	rep := Sweep(context.Background(), r, Config{
		Shapes: shapes(1), Inflights: DefaultInflights, Auto: true,
		Warmup: time.Second, Duration: 10 * time.Second, Budget: 10 * time.Minute,
		Now: func() time.Time { return clock },
	})
	var ran []string
	for _, l := range r.ran {
		ran = append(ran, l.InflightString())
	}
	if want := []string{"1", "2", "4", "8", "auto"}; !slices.Equal(ran, want) {
		t.Fatalf("ran inflight %v, want %v: growth stops at the first that does not pay (8), then auto", ran, want)
	}
	if len(rep.Skipped) != 1 || !slices.Equal(rep.Skipped[0].Inflights, []int{16, 32, 64}) || !strings.Contains(rep.Skipped[0].Reason, "inflight 8 did not raise") {
		t.Fatalf("skipped %v, want 16,32,64 for inflight 8 not paying", rep.Skipped)
	}
	best := rep.Results[Best(rep.Results)]
	if best.Layout.Inflight != 4 {
		t.Errorf("best is %s, want inflight 4 (auto ties on throughput with twice the clients: a higher p99)", best.Layout)
	}
	if rep.Interrupted || rep.Err != nil {
		t.Errorf("interrupted %v, err %v", rep.Interrupted, rep.Err)
	}
	// Clients: 2 per replica and in-flight unit; auto takes the largest
	// fixed value measured.
	var clients []int
	for _, res := range rep.Results {
		clients = append(clients, res.Clients)
	}
	if want := []int{2, 4, 8, 16, 16}; !slices.Equal(clients, want) {
		t.Errorf("clients %v, want %v", clients, want)
	}
}

func TestSweepBudgetSkips(t *testing.T) {
	clock := time.Unix(0, 0)
	r := &curveRunner{k: 4, service: 100 * time.Millisecond, clock: &clock, over: 4 * time.Second, rss: 100 << 20}
	// Each layout takes 1+10+4 = 15s; 50s fit three, and the fourth
	// would end past the budget.
	rep := Sweep(context.Background(), r, Config{
		Shapes: shapes(1, 2), Inflights: []int{1, 2, 4, 8}, Auto: true,
		Warmup: time.Second, Duration: 10 * time.Second, Budget: 50 * time.Second,
		Now: func() time.Time { return clock },
	})
	if len(rep.Results) != 3 {
		t.Fatalf("%d measured, want 3 within the budget", len(rep.Results))
	}
	var skipped []string
	for _, s := range rep.Skipped {
		skipped = append(skipped, s.String())
	}
	want := []string{"1x1 inflight 8,auto: out of time (--budget 50s)", "2x1 inflight 1,2,4,8,auto: out of time (--budget 50s)"}
	if !slices.Equal(skipped, want) {
		t.Errorf("skipped:\n%s\nwant:\n%s", strings.Join(skipped, "\n"), strings.Join(want, "\n"))
	}
}

func TestSweepMemorySkips(t *testing.T) {
	clock := time.Unix(0, 0)
	r := &curveRunner{k: 1, service: 100 * time.Millisecond, clock: &clock, rss: 1 << 30}
	rep := Sweep(context.Background(), r, Config{
		Shapes: shapes(1, 2, 4), Inflights: []int{1, 2}, Budget: time.Hour, Duration: time.Second,
		MemAvailable: 3 << 30, Now: func() time.Time { return clock },
	})
	if len(rep.Skipped) != 1 || rep.Skipped[0].Shape.Replicas != 4 || !strings.Contains(rep.Skipped[0].Reason, "4 replicas of 1.0GiB each would not fit") {
		t.Errorf("skipped %v; want 4 replicas of 1GiB skipped with 3GiB available", rep.Skipped)
	}
}

func TestSweepStopsOnErrorAndInterrupt(t *testing.T) {
	clock := time.Unix(0, 0)
	broken := errors.New("replica-1 never became ready")
	r := &curveRunner{k: 2, service: 100 * time.Millisecond, clock: &clock, fail: map[string]error{"2x1 inflight 1": broken}}
	rep := Sweep(context.Background(), r, Config{
		Shapes: shapes(1, 2, 4), Inflights: []int{1, 2, 4}, Auto: true, Budget: time.Hour, Duration: time.Second,
		Now: func() time.Time { return clock },
	})
	if !errors.Is(rep.Err, broken) || !strings.HasPrefix(rep.Err.Error(), "2x1 inflight 1: ") || len(rep.Results) != 4 {
		t.Fatalf("err %v after %d results; want the 2x1 layout's error after 1x1's four", rep.Err, len(rep.Results))
	}
	if last := rep.Skipped[len(rep.Skipped)-1]; last.Shape.Replicas != 4 {
		t.Errorf("the shapes after the error are not listed as skipped: %v", rep.Skipped)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r = &curveRunner{k: 4, service: 100 * time.Millisecond, clock: &clock, cancel: cancel, after: 3}
	rep = Sweep(ctx, r, Config{
		Shapes: shapes(1), Inflights: DefaultInflights, Auto: true, Budget: time.Hour, Duration: time.Second,
		Now: func() time.Time { return clock },
	})
	if !rep.Interrupted || rep.Err != nil || len(rep.Results) != 2 {
		t.Errorf("interrupted %v, err %v, %d results; want interrupted after 2", rep.Interrupted, rep.Err, len(rep.Results))
	}
	if fmt.Sprint(rep.Skipped) == "[]" || !strings.Contains(rep.Skipped[0].Reason, "interrupted") {
		t.Errorf("skipped %v, want the rest as interrupted", rep.Skipped)
	}
}

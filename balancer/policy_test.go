package balancer

import (
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// pool returns backends named b0, b1, ... with the given in-flight counts.
func pool(inflight ...int64) []*Backend {
	p := make([]*Backend, len(inflight))
	for i, n := range inflight {
		p[i] = NewBackend(i, "b"+string(rune('0'+i)), "")
		p[i].inflight.Store(n)
	}
	return p
}

func TestLeastConnSelect(t *testing.T) {
	tests := []struct {
		name     string
		inflight []int64
		want     []int // indexes that may be chosen
	}{
		{"single", []int64{7}, []int{0}},
		{"minimum first", []int64{0, 3, 5}, []int{0}},
		{"minimum last", []int64{4, 3, 1}, []int{2}},
		{"minimum in the middle", []int64{2, 0, 9}, []int{1}},
		{"tie among some", []int64{2, 1, 5, 1}, []int{1, 3}},
		{"all tied", []int64{0, 0, 0}, []int{0, 1, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := pool(tt.inflight...)
			seen := map[int]bool{}
			// Enough tries that each allowed tie shows up: missing one of
			// up to 3 in 300 tries has odds below 1e-50.
			for range 300 {
				got := LeastConn{}.Select(p, nil)
				i := slices.Index(p, got)
				if !slices.Contains(tt.want, i) {
					t.Fatalf("Select chose %d (in flight %v), want one of %v", i, tt.inflight, tt.want)
				}
				seen[i] = true
			}
			for _, i := range tt.want {
				if !seen[i] {
					t.Errorf("backend %d, tied for fewest, was never chosen", i)
				}
			}
		})
	}
}

func TestLeastConnSpreadsTies(t *testing.T) {
	tests := []struct {
		name     string
		inflight []int64
		tied     []int
	}{
		{"three tied", []int64{0, 0, 0}, []int{0, 1, 2}},
		{"three tied behind a busier one", []int64{4, 2, 2, 2}, []int{1, 2, 3}},
		{"two tied around a busier one", []int64{1, 3, 1}, []int{0, 2}},
	}
	const n = 30000
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := pool(tt.inflight...)
			counts := make([]int, len(p))
			for range n {
				counts[slices.Index(p, LeastConn{}.Select(p, nil))]++
			}
			// The binomial's standard deviation is under 1% of n here;
			// 3 points is over 10 of them.
			want := 1 / float64(len(tt.tied))
			for _, i := range tt.tied {
				if share := float64(counts[i]) / n; math.Abs(share-want) > 0.03 {
					t.Errorf("backend %d got %.1f%% of %d selections, want %.1f%% ± 3 (counts %v)", i, 100*share, n, 100*want, counts)
				}
			}
		})
	}
}

func TestRoundRobinCycles(t *testing.T) {
	tests := []struct {
		name  string
		size  int
		picks int
		want  []int
	}{
		{"one", 1, 3, []int{0, 0, 0}},
		{"three", 3, 7, []int{0, 1, 2, 0, 1, 2, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// In-flight counts do not matter to round robin.
			p := pool(make([]int64, tt.size)...)
			p[0].inflight.Store(100)
			var rr RoundRobin
			var got []int
			for range tt.picks {
				got = append(got, slices.Index(p, rr.Select(p, nil)))
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("picks %v, want %v", got, tt.want)
			}
		})
	}
}

func TestNewPolicy(t *testing.T) {
	tests := []struct {
		name    string
		check   func(Policy) bool
		wantErr string
	}{
		{"least_conn", func(p Policy) bool { _, ok := p.(LeastConn); return ok }, ""},
		{"round_robin", func(p Policy) bool { _, ok := p.(*RoundRobin); return ok }, ""},
		{"weighted", func(p Policy) bool { _, ok := p.(Weighted); return ok }, ""},
		{"ip_hash", func(p Policy) bool { _, ok := p.(IPHash); return ok }, ""},
		{"fair", func(p Policy) bool { _, ok := p.(Fair); return ok }, ""},
		{"random", nil, `unknown policy "random" (choose one of fair, ip_hash, least_conn, round_robin, weighted)`},
		{"", nil, `unknown policy "" (choose one of fair, ip_hash, least_conn, round_robin, weighted)`},
		{"LEAST_CONN", nil, `unknown policy "LEAST_CONN" (choose one of fair, ip_hash, least_conn, round_robin, weighted)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := NewPolicy(tt.name)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("NewPolicy(%q) = %v, %v; want error %q", tt.name, p, err, tt.wantErr)
				}
				return
			}
			if err != nil || !tt.check(p) {
				t.Fatalf("NewPolicy(%q) = %T, %v", tt.name, p, err)
			}
		})
	}
	// Each call gets its own round-robin position.
	a, _ := NewPolicy("round_robin")
	b, _ := NewPolicy("round_robin")
	p := pool(0, 0)
	a.Select(p, nil)
	if got := b.Select(p, nil); got != p[0] {
		t.Errorf("a fresh round_robin policy started at %s, want b0", got.Name)
	}
}

func TestPolicyNames(t *testing.T) {
	if got, want := PolicyNames(), []string{"fair", "ip_hash", "least_conn", "round_robin", "weighted"}; !slices.Equal(got, want) {
		t.Errorf("PolicyNames() = %q, want %q", got, want)
	}
}

func TestWeightedSmooth(t *testing.T) {
	tests := []struct {
		weights []int
		want    string // names of 2*sum(weights) choices
	}{
		{[]int{5, 1, 1}, "a a b a c a a a a b a c a a"},
		{[]int{2, 1, 1, 1}, "a b c d a a b c d a"},
		{[]int{1, 1}, "a b a b"},
		{[]int{0, 1}, "a b a b"}, // zero counts as 1
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.weights), func(t *testing.T) {
			var p []*Backend
			for i, w := range tt.weights {
				b := NewBackend(i+1, string(rune('a'+i)), "")
				b.SetWeight(w)
				p = append(p, b)
			}
			var got []string
			for range strings.Count(tt.want, " ") + 1 {
				got = append(got, Weighted{}.Select(p, nil).Name)
			}
			if s := strings.Join(got, " "); s != tt.want {
				t.Errorf("choices %q, want %q", s, tt.want)
			}
		})
	}
}

func TestIPHashSticksAndFallsOver(t *testing.T) {
	p := pool(0, 0, 0, 0)
	req := func(addr string) *http.Request { return &http.Request{RemoteAddr: addr} }
	first := map[string]*Backend{}
	spread := map[*Backend]int{}
	for i := range 200 {
		ip := fmt.Sprintf("10.0.%d.%d:5000", i/250, i%250)
		b := IPHash{}.Select(p, req(ip))
		first[ip] = b
		spread[b]++
		// Same client, another port: same backend.
		if again := (IPHash{}).Select(p, req(strings.Replace(ip, ":5000", ":6001", 1))); again != b {
			t.Fatalf("%s went to %s then %s", ip, b.Name, again.Name)
		}
	}
	for _, b := range p {
		if spread[b] < 20 {
			t.Errorf("%s got %d of 200 clients", b.Name, spread[b])
		}
	}
	// Take b1 out: only its clients move.
	rest := []*Backend{p[0], p[2], p[3]}
	for ip, b := range first {
		got := IPHash{}.Select(rest, req(ip))
		if b != p[1] && got != b {
			t.Errorf("client %s moved from %s to %s though its backend stayed", ip, b.Name, got.Name)
		}
		if got == p[1] {
			t.Errorf("client %s sent to a backend that is out", ip)
		}
	}
}

func TestFairPrefersFastAndIdle(t *testing.T) {
	now := time.Now()
	mk := func(name string, latency time.Duration, inflight int64) *Backend {
		b := NewBackend(0, name, "")
		if latency > 0 {
			b.observe(latency, now)
		}
		b.inflight.Store(inflight)
		return b
	}
	tests := []struct {
		name string
		pool []*Backend
		want string
	}{
		{"faster wins", []*Backend{mk("slow", 200*time.Millisecond, 0), mk("fast", 50*time.Millisecond, 0)}, "fast"},
		{"busy fast loses to idle slow", []*Backend{mk("slow", 100*time.Millisecond, 0), mk("fast", 30*time.Millisecond, 4)}, "slow"},
		{"unmeasured is tried first", []*Backend{mk("known", 10*time.Millisecond, 0), mk("new", 0, 0)}, "new"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := (Fair{}).Select(tt.pool, nil); got.Name != tt.want {
				t.Errorf("Fair chose %s, want %s", got.Name, tt.want)
			}
		})
	}
}

func TestPeakEWMA(t *testing.T) {
	b := NewBackend(0, "b", "")
	t0 := time.Now()
	b.observe(100*time.Millisecond, t0)
	b.observe(500*time.Millisecond, t0.Add(time.Second)) // a peak is taken at once
	if b.latency != 0.5 {
		t.Fatalf("after a peak latency = %v, want 0.5", b.latency)
	}
	b.observe(100*time.Millisecond, t0.Add(2*time.Second)) // faster decays gradually
	if b.latency <= 0.1 || b.latency >= 0.5 {
		t.Fatalf("after a faster sample latency = %v, want between 0.1 and 0.5", b.latency)
	}
	b.observe(100*time.Millisecond, t0.Add(time.Minute)) // long after, mostly the new value
	if b.latency > 0.11 {
		t.Fatalf("a minute later latency = %v, want close to 0.1", b.latency)
	}
}

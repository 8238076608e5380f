package balancer

import (
	"math"
	"slices"
	"testing"
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
		{"random", nil, `unknown policy "random" (choose one of least_conn, round_robin)`},
		{"", nil, `unknown policy "" (choose one of least_conn, round_robin)`},
		{"LEAST_CONN", nil, `unknown policy "LEAST_CONN" (choose one of least_conn, round_robin)`},
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
	if got, want := PolicyNames(), []string{"least_conn", "round_robin"}; !slices.Equal(got, want) {
		t.Errorf("PolicyNames() = %q, want %q", got, want)
	}
}

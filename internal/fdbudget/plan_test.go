package fdbudget

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// instance is the Want of an instance at up's defaults: admin listener 64,
// control socket 32.
func instance(replicas, maxInflight int) Want {
	return Want{Replicas: replicas, MaxInflight: maxInflight, AdminConns: 64, ControlConns: 32}
}

func TestPlanDerived(t *testing.T) {
	tests := []struct {
		name            string
		want            Want
		limit           uint64
		conns, upgraded int
	}{
		// Kept: 64 + 64 + 32 + (2+1)*(8+8) = 208; of the 816 left a
		// quarter (204) is room to scale, a quarter of the rest (153) for
		// upgraded connections.
		{"ulimit -n 1024, 2 replicas", instance(2, 8), 1024, 459, 153},
		// Kept: 160 + 5*16 = 240; 19760 left, 14820 after the room.
		{"ulimit -n 20000, 4 replicas", instance(4, 8), 20000, 11115, 3705},
		// Kept: 160 + 31*16 = 656, 368 left. With room kept: 207 client
		// connections, fewer than the 30*8 the replicas serve at once;
		// without, 276.
		{"no room to keep", instance(30, 8), 1024, 276, 92},
		// With --max-inflight 0, half of it, upgraded as many: 160 + 3*8
		// kept, 840 left, 630 after the room.
		{"no max-inflight", instance(2, 0), 1024, 315, 315},
		{"a high limit caps both", instance(4, 8), 1 << 20, 65536, 65536 / 3},
		// 64 + 32 + 2*16 = 128 kept, 384 left, 288 after the room.
		{"--admin none", Want{Replicas: 1, MaxInflight: 8, ControlConns: 32}, 512, 216, 72},
		// Explicit values are kept; the other is derived around them.
		{"--max-conns given", Want{Replicas: 2, MaxInflight: 8, MaxConns: 300, AdminConns: 64, ControlConns: 32}, 1024, 300, 100},
		{"--max-conns given, past the room", Want{Replicas: 2, MaxInflight: 8, MaxConns: 780, AdminConns: 64, ControlConns: 32}, 1024, 780, 36},
		{"--max-upgraded given", Want{Replicas: 2, MaxInflight: 8, MaxUpgraded: 600, AdminConns: 64, ControlConns: 32}, 1024, 216, 600},
		{"both given", Want{Replicas: 2, MaxInflight: 8, MaxConns: 500, MaxUpgraded: 300, AdminConns: 64, ControlConns: 32}, 1024, 500, 300},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := Plan(tt.want, tt.limit)
			if err != nil || b.MaxConns != tt.conns || b.MaxUpgraded != tt.upgraded {
				t.Fatalf("Plan(%+v, %d) = conns %d, upgraded %d, %v; want %d, %d", tt.want, tt.limit, b.MaxConns, b.MaxUpgraded, err, tt.conns, tt.upgraded)
			}
			// Whatever is derived, the replicas asked for fit.
			if need := b.Need(tt.want.Replicas); need > tt.limit {
				t.Errorf("%d replicas need %d descriptors, over the limit %d", tt.want.Replicas, need, tt.limit)
			}
		})
	}
}

func TestPlanErrors(t *testing.T) {
	tests := []struct {
		name  string
		want  Want
		limit uint64
		errs  []string
	}{
		{"negative --max-conns", Want{Replicas: 1, MaxInflight: 8, MaxConns: -1}, 1024, []string{"--max-conns must not be negative", "0 means the default"}},
		{"negative --max-upgraded", Want{Replicas: 1, MaxInflight: 8, MaxUpgraded: -1}, 1024, []string{"--max-upgraded must not be negative", "0 means the default"}},
		// 160 + 3*16 = 208 kept for 2 replicas; 816 left.
		{"--max-conns over", Want{Replicas: 2, MaxInflight: 8, MaxConns: 816, AdminConns: 64, ControlConns: 32}, 1024,
			[]string{"--max-conns 816 does not fit the open-file limit", "ulimit -n is 1024 and 208 are kept for 2 replicas", "at most 815", "raise ulimit -n"}},
		{"both over", Want{Replicas: 2, MaxInflight: 8, MaxConns: 500, MaxUpgraded: 317, AdminConns: 64, ControlConns: 32}, 1024,
			[]string{"--max-conns 500 and --max-upgraded 317 do not fit", "sum at most 816"}},
		{"--max-upgraded leaves too few", Want{Replicas: 2, MaxInflight: 8, MaxUpgraded: 760, AdminConns: 64, ControlConns: 32}, 1024,
			[]string{"--max-upgraded 760 leaves only 56 client connections", "fewer than 64", "lower --max-upgraded"}},
		// 64 + 32 + 2*16 = 128 kept; 64 left, 48 after the upgraded quarter.
		{"a limit too low for the default", Want{Replicas: 1, MaxInflight: 8, ControlConns: 32}, 192,
			[]string{"leaves only 48 client connections", "fewer than 64", "raise ulimit -n", "set --max-conns 48 or lower"}},
		{"a limit under the reserve", instance(4, 8), 200, []string{"leaves no client connections", "ulimit -n is 200"}},
		// 64 + 32 + 2*8 = 112 kept; half of 912 left.
		{"no max-inflight, --max-conns over", Want{Replicas: 1, MaxInflight: 0, MaxConns: 457, ControlConns: 32}, 1024,
			[]string{"--max-conns 457 does not fit", "each client connection may hold a replica connection", "at most 456"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Plan(tt.want, tt.limit)
			if err == nil {
				t.Fatal("no error")
			}
			for _, s := range tt.errs {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
		})
	}
	// The hint of the default's error is a value that works.
	if _, err := Plan(Want{Replicas: 1, MaxInflight: 8, MaxConns: 48, ControlConns: 32}, 192); err != nil {
		t.Errorf("--max-conns 48, as the error suggests: %v", err)
	}
}

// TestCheckScale: a budget planned for 2 replicas at ulimit -n 1024 takes
// up to 14 (the room derived caps leave), and refuses 15 in one line
// naming the limit and how to raise it.
func TestCheckScale(t *testing.T) {
	b, err := Plan(instance(2, 8), 1024)
	if err != nil {
		t.Fatal(err)
	}
	if got := b.MaxReplicas(); got != 14 {
		t.Errorf("MaxReplicas = %d, want 14", got)
	}
	for n := 1; n <= 14; n++ {
		if err := b.CheckScale(n); err != nil {
			t.Errorf("scale to %d: %v", n, err)
		}
	}
	err = b.CheckScale(15)
	if err == nil {
		t.Fatal("scale to 15 past the limit: no error")
	}
	// 160 + 16*16 + 459 + 153 = 1028.
	pid := strconv.Itoa(os.Getpid())
	for _, s := range []string{"cannot scale to 15", "needs 1028 file descriptors", "--max-conns 459", "--max-upgraded 153", "ulimit -n is 1024",
		"enough for 14", "prlimit --pid " + pid + " --nofile=1028:1028", "LimitNOFILE=", "lower --max-conns"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not say %q", err, s)
		}
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error %q is more than one line", err)
	}
	// The limit raised on the running instance (prlimit): 15 fit.
	b.Limit = 1028
	if err := b.CheckScale(15); err != nil {
		t.Errorf("at the limit needed: %v", err)
	}
	// Nothing fits beside caps that took everything.
	full := Budget{Limit: 1024, MaxInflight: 8, MaxConns: 1000}
	if err := full.CheckScale(1); err == nil || !strings.Contains(err.Error(), "no more replicas fit") {
		t.Errorf("caps over the limit: %v", err)
	}
}

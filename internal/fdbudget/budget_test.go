package fdbudget

import (
	"strings"
	"testing"
)

func TestMaxConnsDefault(t *testing.T) {
	tests := []struct {
		name                  string
		limit                 uint64
		replicas, maxInflight int
		want                  int
	}{
		// 64 + (4+1)*(8+8) = 144 kept.
		{"a ulimit -n of 20000", 20000, 4, 8, 20000 - 144},
		{"ulimit -n 1024", 1024, 4, 8, 1024 - 144},
		// 64 + (2+1)*(8+8) = 112 kept: the e2e test's setting.
		{"ulimit -n 512, 2 replicas", 512, 2, 8, 512 - 112},
		// No cap on in-flight requests: each client connection may hold a
		// replica connection, so half of what is left.
		{"no max-inflight", 20000, 4, 0, (20000 - 64 - 5*8) / 2},
		{"systemd's hard limit is capped", 524288, 4, 8, 65536},
		{"unlimited is capped", ^uint64(0), 4, 8, 65536},
		// At the bound: exactly the least allowed default.
		{"just enough", 144 + 64, 4, 8, 64},
		{"just enough for 16 replicas at 32", 64 + 17*40 + 512, 16, 32, 512},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := MaxConns(0, tt.limit, tt.replicas, tt.maxInflight)
			if err != nil || got != tt.want {
				t.Fatalf("MaxConns(0, %d, %d, %d) = %d, %v; want %d", tt.limit, tt.replicas, tt.maxInflight, got, err, tt.want)
			}
		})
	}
}

func TestMaxConnsErrors(t *testing.T) {
	tests := []struct {
		name                        string
		want, replicas, maxInflight int
		limit                       uint64
		errs                        []string
	}{
		{"negative", -1, 4, 8, 20000, []string{"--max-conns must not be negative", "0 means the default"}},
		{"default one short", 0, 4, 8, 144 + 63, []string{"leaves only 63 client connections", "fewer than 64", "ulimit -n is 207", "144 are kept for 4 replicas at --max-inflight 8", "raise ulimit -n", "set --max-conns 63 or lower"}},
		{"default under what the replicas take", 0, 16, 32, 64 + 17*40 + 511, []string{"leaves only 511", "fewer than 512"}},
		{"limit under the reserve", 0, 4, 8, 100, []string{"--max-conns: the open-file limit leaves no client connections", "ulimit -n is 100", "raise ulimit -n"}},
		{"explicit over the limit", 20000, 4, 8, 20000, []string{"--max-conns 20000 does not fit the open-file limit", "at most 19856", "raise ulimit -n"}},
		{"explicit one over", 19857, 4, 8, 20000, []string{"at most 19856"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := MaxConns(tt.want, tt.limit, tt.replicas, tt.maxInflight)
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
}

func TestMaxConnsExplicit(t *testing.T) {
	// An explicit value is kept as it is, below the default and at the
	// most the limit allows; the least allowed default does not apply.
	for _, want := range []int{1, 10, 19856} {
		if got, err := MaxConns(want, 20000, 4, 8); err != nil || got != want {
			t.Errorf("MaxConns(%d, 20000, 4, 8) = %d, %v; want it kept", want, got, err)
		}
	}
}

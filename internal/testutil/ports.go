package testutil

import (
	"math/rand/v2"
	"net"
	"strconv"
	"testing"

	"github.com/prometheus/procfs"
)

// FreePorts returns a port p such that p..p+n-1 are all free on 127.0.0.1.
// It probes by listening on loopback only, so that a test never opens a
// port on the machine's other interfaces. The base is random, so that
// tests running in parallel rarely pick the same ports, and below the
// kernel's ephemeral range, so that no client connection's own port takes
// one of them (a replica spare port after the range included) between this
// check and its use.
func FreePorts(t testing.TB, n int) int {
	t.Helper()
	if n < 1 || n > 10000 {
		t.Fatalf("FreePorts(%d): want 1 to 10000 ports", n)
	}
	low, high := 10000, ephemeralLow()-n-16
	if high <= low {
		low, high = ephemeralLow()/2, ephemeralLow()-n-16
	}
	for try := 0; try < 200; try++ {
		base := low + rand.IntN(high-low)
		if allFree(base, n) {
			return base
		}
	}
	t.Fatalf("no %d consecutive free ports on 127.0.0.1", n)
	return 0
}

// FreePort is FreePorts(t, 1).
func FreePort(t testing.TB) int {
	t.Helper()
	return FreePorts(t, 1)
}

// allFree reports whether ports base..base+n-1 can all be listened on at
// 127.0.0.1.
func allFree(base, n int) bool {
	for p := base; p < base+n; p++ {
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			return false
		}
		ln.Close()
	}
	return true
}

// ephemeralLow returns the first port of the kernel's ephemeral range
// (Linux's default 32768 elsewhere).
func ephemeralLow() int {
	if fs, err := procfs.NewDefaultFS(); err == nil {
		if r, err := fs.SysctlInts("net.ipv4.ip_local_port_range"); err == nil && len(r) == 2 && r[0] > 2048 {
			return r[0]
		}
	}
	return 32768
}

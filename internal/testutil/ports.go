package testutil

import (
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"testing"

	"github.com/prometheus/procfs"
)

// portBlock is the unit in which ports are reserved: a range of n ports
// takes the blocks it covers.
const portBlock = 16

// reserved holds the blocks this process has handed out and not yet
// released; blockLocks holds the same across processes.
var (
	reservedMu sync.Mutex
	reserved   = map[int]bool{}
)

// FreePorts returns a port p such that p..p+n-1 are all free on 127.0.0.1
// and reserved for t until it ends: FreePorts gives none of them to
// another test meanwhile, in this test binary or, where file locks work,
// in another one running at the same time (go test runs packages side by
// side). A test's instance may start a replica on a port of its range at
// any time, long after the probe, so probing alone would not do: two
// tests could be handed overlapping ranges.
//
// It probes by listening on loopback only, so that a test never opens a
// port on the machine's other interfaces. The base is random, and below
// the kernel's ephemeral range, so that no client connection's own port
// takes one of them (a replica spare port after the range included)
// between this check and its use.
func FreePorts(t testing.TB, n int) int {
	t.Helper()
	if n < 1 || n > 10000 {
		t.Fatalf("FreePorts(%d): want 1 to 10000 ports", n)
	}
	low, high := 10000, ephemeralLow()-n-16
	if high <= low {
		low, high = ephemeralLow()/2, ephemeralLow()-n-16
	}
	first, last := low/portBlock+1, high/portBlock
	blocks := (n + portBlock - 1) / portBlock
	for try := 0; try < 200 && last > first; try++ {
		b := first + rand.IntN(last-first)
		release, ok := reserve(b, blocks)
		if !ok {
			continue
		}
		base := b * portBlock
		if allFree(base, n) {
			t.Cleanup(release)
			return base
		}
		release()
	}
	t.Fatalf("no %d consecutive free ports on 127.0.0.1", n)
	return 0
}

// reserve takes blocks b..b+count-1, in this process and across
// processes, and returns the function that gives them back; false if
// one of them is taken.
func reserve(b, count int) (release func(), ok bool) {
	reservedMu.Lock()
	defer reservedMu.Unlock()
	for i := b; i < b+count; i++ {
		if reserved[i] {
			return nil, false
		}
	}
	var unlocks []func()
	undo := func() {
		for _, u := range unlocks {
			u()
		}
	}
	for i := b; i < b+count; i++ {
		unlock, ok := lockBlock(i)
		if !ok {
			undo()
			return nil, false
		}
		unlocks = append(unlocks, unlock)
	}
	for i := b; i < b+count; i++ {
		reserved[i] = true
	}
	return func() {
		reservedMu.Lock()
		defer reservedMu.Unlock()
		for i := b; i < b+count; i++ {
			delete(reserved, i)
		}
		undo()
	}, true
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

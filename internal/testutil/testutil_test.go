package testutil

import (
	"net"
	"strconv"
	"testing"
	"time"
)

func TestFreePortsAreFreeOnLoopback(t *testing.T) {
	base := FreePorts(t, 5)
	for p := base; p < base+5; p++ {
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Fatalf("port %d of FreePorts(5) = %d: %v", p, base, err)
		}
		ln.Close()
	}
	if p, low := FreePort(t), ephemeralLow(); p < 1024 || p >= low {
		t.Errorf("FreePort() = %d, want a port below the ephemeral range (from %d)", p, low)
	}
}

func TestFreePortsSkipsABusyPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	busy := ln.Addr().(*net.TCPAddr).Port
	if allFree(busy, 1) || allFree(busy-1, 2) {
		t.Errorf("allFree counts port %d, which is listened on, as free", busy)
	}
}

func TestWaitForReturnsOnceTheConditionHolds(t *testing.T) {
	calls := 0
	start := time.Now()
	WaitFor(t, 10*time.Second, "the third call", func() bool { calls++; return calls == 3 })
	if calls != 3 {
		t.Errorf("cond called %d times, want 3", calls)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("WaitFor took %s for a condition true on the third poll", took)
	}
}

func TestFreePortsNeverOverlapWhileHeld(t *testing.T) {
	taken := map[int]int{}
	for i := range 100 {
		base := FreePorts(t, 20)
		for p := base; p < base+20; p++ {
			if j, ok := taken[p]; ok {
				t.Fatalf("port %d given to range %d and range %d", p, j, i)
			}
			taken[p] = i
		}
	}
}

func TestFreePortsReleasesAtCleanup(t *testing.T) {
	var base int
	t.Run("holder", func(t *testing.T) { base = FreePorts(t, 1) })
	release, ok := reserve(base/portBlock, 1)
	if !ok {
		t.Fatalf("the block of port %d is still reserved after its test ended", base)
	}
	release()
}

func TestPortBlockLockExcludesOtherHolders(t *testing.T) {
	// Each lockBlock opens the file anew, as another process would: flock
	// locks of two open files exclude each other even in one process.
	b := FreePort(t)/portBlock + 1
	unlock, ok := lockBlock(b)
	if !ok {
		t.Skipf("block %d is held elsewhere", b)
	}
	if again, ok := lockBlock(b); ok {
		again()
		unlock()
		t.Fatalf("block %d locked twice", b)
	}
	unlock()
	again, ok := lockBlock(b)
	if !ok {
		t.Fatalf("block %d still locked after its unlock", b)
	}
	again()
}

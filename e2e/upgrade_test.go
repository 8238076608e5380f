package e2e

import (
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/testutil"
)

// dialWebSocket opens a WebSocket to the instance's /ws. It returns the
// connection on 101, or the status the proxy answered instead; it fails t
// on anything else. Past its 20 s deadline a test fails rather than hangs:
// before upgrades left their slot, the 17th socket on 2 replicas waited
// the whole queue timeout.
func dialWebSocket(t *testing.T, in *instance) (*testutil.WebSocket, int) {
	t.Helper()
	c, code, err := testutil.DialWebSocket(in.addr(), "/ws", 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if c != nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, code
}

// echo sends msg on c and checks that it comes back, failing t if not.
func echo(t *testing.T, c *testutil.WebSocket, msg string) {
	t.Helper()
	if err := c.Echo(msg); err != nil {
		t.Fatal(err)
	}
}

// upgradedInflight sums the replicas' upgraded connections and requests in
// flight.
func (in *instance) upgradedInflight() (upgraded, inflight int64) {
	for _, r := range in.status().Replicas {
		upgraded += r.Upgraded
		inflight += r.Inflight
	}
	return upgraded, inflight
}

// TestIdleWebSocketsHoldNoSlot is the WebSocket case: 40 idle
// WebSockets through 2 replicas at --max-inflight 8 (16 slots). Before,
// each held a slot for its life and the 17th waited 30 s for a 503; now
// all 40 connect, ordinary requests still flow, and status counts them as
// upgraded, not in flight, until they close.
func TestIdleWebSocketsHoldNoSlot(t *testing.T) {
	t.Parallel()
	in := start(t, 2, "--max-inflight", "8", "--", fakemodel)
	in.waitReady(2)
	conns := make([]*testutil.WebSocket, 40)
	for i := range conns {
		c, code := dialWebSocket(t, in)
		if code != http.StatusSwitchingProtocols {
			t.Fatalf("WebSocket %d: %d, want 101", i+1, code)
		}
		echo(t, c, "hello "+strconv.Itoa(i))
		conns[i] = c
	}
	// Ordinary requests, more than the 16 slots at once, all answered.
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for i := 0; i < 32; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := get(in.url("/?sleep=100ms")); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("ordinary request with 40 WebSockets open: %v", err)
	}
	testutil.WaitFor(t, 10*time.Second, "40 upgraded, none in flight", func() bool {
		up, fl := in.upgradedInflight()
		return up == 40 && fl == 0
	})
	st := in.status()
	for _, r := range st.Replicas {
		if r.Upgraded < 10 {
			t.Errorf("%s has %d of the 40 WebSockets; least-conn should share them", r.Name, r.Upgraded)
		}
	}
	if out, _, _ := in.ctl("status"); !strings.Contains(out, "UPGRADED") {
		t.Errorf("status table has no UPGRADED column with 40 open:\n%s", out)
	}
	for i, c := range conns {
		echo(t, c, "still there "+strconv.Itoa(i))
		c.Close()
	}
	testutil.WaitFor(t, 10*time.Second, "every WebSocket counted closed", func() bool {
		up, _ := in.upgradedInflight()
		return up == 0
	})
	if out, _, _ := in.ctl("status"); strings.Contains(out, "UPGRADED") {
		t.Errorf("status table keeps the UPGRADED column with none open:\n%s", out)
	}
}

// TestMaxUpgraded: with --max-upgraded 3 a fourth WebSocket gets 503
// before reaching a replica, ordinary requests do not count, and a closed
// socket makes room.
func TestMaxUpgraded(t *testing.T) {
	t.Parallel()
	in := start(t, 2, "--max-upgraded", "3", "--", fakemodel)
	in.waitReady(2)
	var conns []*testutil.WebSocket
	for i := 0; i < 3; i++ {
		c, code := dialWebSocket(t, in)
		if code != http.StatusSwitchingProtocols {
			t.Fatalf("WebSocket %d of 3: %d, want 101", i+1, code)
		}
		conns = append(conns, c)
	}
	if _, code := dialWebSocket(t, in); code != http.StatusServiceUnavailable {
		t.Fatalf("WebSocket 4 at --max-upgraded 3: %d, want 503", code)
	}
	if _, err := get(in.url("/")); err != nil {
		t.Fatalf("ordinary request at --max-upgraded: %v", err)
	}
	st := in.status()
	var requests uint64
	for _, r := range st.Replicas {
		requests += r.Requests
	}
	if requests != 4 || st.Rejected != 1 {
		t.Errorf("replicas saw %d requests, %d rejected; want 4 (3 handshakes, 1 GET) and 1", requests, st.Rejected)
	}
	conns[0].Close()
	testutil.WaitFor(t, 10*time.Second, "a WebSocket counted closed", func() bool {
		up, _ := in.upgradedInflight()
		return up == 2
	})
	// The proxy stops counting the socket as its handler ends, just
	// after the replica's count: poll.
	testutil.WaitFor(t, 10*time.Second, "room for a WebSocket", func() bool {
		c, code := dialWebSocket(t, in)
		if c != nil {
			echo(t, c, "room again")
		}
		return code == http.StatusSwitchingProtocols
	})
}

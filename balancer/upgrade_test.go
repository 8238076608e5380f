package balancer

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/testutil"
)

// tunnelBackend switches every request to a raw echo tunnel that lasts
// until the client closes it.
func tunnelBackend(t *testing.T) *testBackend {
	return newTestBackend(t, 1, func(w http.ResponseWriter, r *http.Request) {
		if !isUpgrade(r) {
			fmt.Fprint(w, "plain")
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		_, _ = io.Copy(conn, brw)
	})
}

// openTunnel asks the proxy at addr for an upgrade and returns the
// connection and the answer's status; on 101 it checks that the tunnel
// echoes.
func openTunnel(t *testing.T, addr string) (net.Conn, int) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(settle))
	fmt.Fprint(conn, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: echo\r\nConnection: keep-alive, Upgrade\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		resp.Body.Close()
		return conn, resp.StatusCode
	}
	fmt.Fprint(conn, "ping\n")
	if line, err := br.ReadString('\n'); err != nil || line != "ping\n" {
		t.Fatalf("tunnel echoed %q, %v", line, err)
	}
	return conn, resp.StatusCode
}

// TestUpgradedHoldNoSlot: tunnels past a backend's MaxInflight all open,
// ordinary requests still get through, and the backend counts them as
// upgraded, not in flight; a draining backend waits for them to close.
func TestUpgradedHoldNoSlot(t *testing.T) {
	be := tunnelBackend(t)
	bal, srv := newTestBalancer(t, testOptions(func(o *Options) { o.MaxInflight = 1; o.Queue = 10 }), be.Backend)
	addr := srv.Listener.Addr().String()
	var conns []net.Conn
	for i := 0; i < 5; i++ {
		conn, code := openTunnel(t, addr)
		if code != http.StatusSwitchingProtocols {
			t.Fatalf("tunnel %d: %d, want 101", i+1, code)
		}
		conns = append(conns, conn)
	}
	if code, _, body := get(t, srv.Client(), srv.URL+"/"); code != 200 || body != "plain" {
		t.Fatalf("ordinary request with 5 tunnels open: %d %q", code, body)
	}
	testutil.WaitFor(t, settle, "5 upgraded, none in flight", func() bool {
		return be.Upgraded() == 5 && be.InFlight() == 0
	})
	if be.Requests() != 6 {
		t.Errorf("requests %d, want 6: the handshakes and the GET", be.Requests())
	}
	idle := bal.Remove(be.Backend)
	for _, c := range conns[1:] {
		c.Close()
	}
	testutil.WaitFor(t, settle, "4 tunnels closed", func() bool { return be.Upgraded() == 1 })
	if isClosed(idle) {
		t.Fatal("a draining backend with a tunnel open was reported idle")
	}
	conns[0].Close()
	waitClosed(t, idle, settle, "idle once the last tunnel closed")
	testutil.WaitFor(t, settle, "no upgrade counted open", func() bool { return bal.upgrades.Load() == 0 })
}

// TestMaxUpgraded: past MaxUpgraded an upgrade request gets 503 without
// reaching a backend; a closed tunnel makes room; ordinary requests are
// not counted.
func TestMaxUpgraded(t *testing.T) {
	be := tunnelBackend(t)
	bal, srv := newTestBalancer(t, testOptions(func(o *Options) { o.MaxUpgraded = 2 }), be.Backend)
	addr := srv.Listener.Addr().String()
	first, _ := openTunnel(t, addr)
	if _, code := openTunnel(t, addr); code != http.StatusSwitchingProtocols {
		t.Fatalf("second tunnel at MaxUpgraded 2: %d", code)
	}
	hits := be.hits.Load()
	if _, code := openTunnel(t, addr); code != http.StatusServiceUnavailable {
		t.Fatalf("third tunnel at MaxUpgraded 2: %d, want 503", code)
	}
	if be.hits.Load() != hits {
		t.Error("the refused upgrade reached the backend")
	}
	if bal.Stats().Rejected != 1 {
		t.Errorf("rejected %d, want 1", bal.Stats().Rejected)
	}
	if code, _, _ := get(t, srv.Client(), srv.URL+"/"); code != 200 {
		t.Fatalf("ordinary request at MaxUpgraded: %d", code)
	}
	first.Close()
	testutil.WaitFor(t, settle, "a tunnel closed", func() bool { return bal.upgrades.Load() == 1 })
	if _, code := openTunnel(t, addr); code != http.StatusSwitchingProtocols {
		t.Fatalf("tunnel after one closed: %d, want 101", code)
	}
}

// TestUpgradeRefused: an upgrade request the backend answers with a plain
// response is an ordinary request, and stops counting.
func TestUpgradeRefused(t *testing.T) {
	be := newTestBackend(t, 1, nil)
	bal, srv := newTestBalancer(t, testOptions(func(o *Options) { o.MaxUpgraded = 1 }), be.Backend)
	for i := 0; i < 3; i++ {
		conn, code := openTunnel(t, srv.Listener.Addr().String())
		conn.Close()
		if code != 200 {
			t.Fatalf("try %d: %d, want the backend's 200", i+1, code)
		}
		testutil.WaitFor(t, settle, "the request done", func() bool { return bal.upgrades.Load() == 0 && be.InFlight() == 0 })
	}
	if be.Upgraded() != 0 || be.Requests() != 3 {
		t.Errorf("upgraded %d, requests %d; want 0 and 3", be.Upgraded(), be.Requests())
	}
}

func TestIsUpgrade(t *testing.T) {
	tests := []struct {
		conn, upgrade string
		want          bool
	}{
		{"Upgrade", "websocket", true},
		{"keep-alive, upgrade", "websocket", true},
		{"keep-alive", "websocket", false},
		{"Upgrade", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		r, _ := http.NewRequest("GET", "http://x/", nil)
		if tt.conn != "" {
			r.Header.Set("Connection", tt.conn)
		}
		if tt.upgrade != "" {
			r.Header.Set("Upgrade", tt.upgrade)
		}
		if got := isUpgrade(r); got != tt.want {
			t.Errorf("Connection %q, Upgrade %q: %v, want %v", tt.conn, tt.upgrade, got, tt.want)
		}
	}
}

package replica

import (
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestWrongPortJudge: a tree that listens on other ports only, idle, for
// after is named; one that listens on its own port too, one that works
// meanwhile (a metrics port opened while the model loads), and a port
// that answers are not.
func TestWrongPortJudge(t *testing.T) {
	refused := &checkError{cause: "no listener on 127.0.0.1:9111 (connection refused)", err: syscall.ECONNREFUSED}
	elsewhere := listenSocket{Pid: 4242, Addr: netip.MustParseAddrPort("127.0.0.1:5000")}
	own := listenSocket{Pid: 4242, Addr: netip.MustParseAddrPort("127.0.0.1:9111")}
	tests := []struct {
		name  string
		socks []listenSocket
		// cpuPerLook is the CPU the tree uses between looks, 0.5s apart.
		cpuPerLook time.Duration
		err        error
		want       bool
	}{
		{"idle, elsewhere only", []listenSocket{elsewhere}, 10 * time.Millisecond, refused, true},
		{"its own port too", []listenSocket{elsewhere, own}, 0, refused, false},
		{"busy", []listenSocket{elsewhere}, 200 * time.Millisecond, refused, false},
		{"nowhere", nil, 0, refused, false},
		{"answering", []listenSocket{elsewhere}, 0, &StatusError{Path: "/health", Code: 503}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cpu time.Duration
			w := wrongPort{after: 3 * time.Second, name: "replica-1", own: 9111, look: func() treeLook {
				cpu += tt.cpuPerLook
				return treeLook{socks: tt.socks, cpu: cpu}
			}}
			begun := time.Now()
			var verdict error
			var at time.Duration
			for at = 0; at <= 5*time.Second && verdict == nil; at += 100 * time.Millisecond {
				verdict = w.observe(begun.Add(at), tt.err)
			}
			if (verdict != nil) != tt.want {
				t.Fatalf("verdict %v after %s, want one: %v", verdict, at, tt.want)
			}
			if !tt.want {
				return
			}
			if at < 3*time.Second || at > 4*time.Second {
				t.Errorf("verdict after %s, want 3s to 3.5s", at)
			}
			want := "replica-1 (pid 4242) listens on 127.0.0.1:5000, not 9111: read $PORT or pass {port}"
			if verdict.Error() != want {
				t.Errorf("verdict %q, want %q", verdict, want)
			}
			if got := w.explain(refused).Error(); !strings.HasSuffix(got, "; pid 4242 listens on 127.0.0.1:5000 instead") {
				t.Errorf("explain = %q", got)
			}
		})
	}
	var off wrongPort
	if off.observe(time.Now(), refused) != nil {
		t.Error("a wrongPort with after 0 decided")
	}
}

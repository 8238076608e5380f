package replica

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/testutil"
)

// TestWaitReadyWrongPort: a process that listens on another port than its
// own, itself or through a child, is named with that port.
func TestWaitReadyWrongPort(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"listen", "listenchild"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			other := testutil.FreePort(t)
			c := newCapture()
			proc := startHelper(t, c, mode, strconv.Itoa(other))
			own := testutil.FreePort(t)
			p := Probe{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(own)), Timeout: time.Second}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			started := time.Now()
			err := p.WaitReady(ctx, proc, Wait{WrongPort: 300 * time.Millisecond})
			var wrong *WrongPortError
			if !errors.As(err, &wrong) {
				t.Fatalf("WaitReady() = %v (output %q), want a *WrongPortError", err, c.stderr.String())
			}
			if took := time.Since(started); took > 10*time.Second {
				t.Errorf("took %s", took)
			}
			if mode == "listen" && wrong.Pid != proc.Pid() || mode == "listenchild" && wrong.Pid == proc.Pid() {
				t.Errorf("pid %d named, the replica's is %d (%s)", wrong.Pid, proc.Pid(), mode)
			}
			want := "replica-1 (pid " + strconv.Itoa(wrong.Pid) + ") listens on 127.0.0.1:" + strconv.Itoa(other) +
				", not " + strconv.Itoa(own) + ": read $PORT or pass {port}"
			if err.Error() != want {
				t.Errorf("Error() = %q, want %q", err, want)
			}
		})
	}
}

// TestWrongPortNotWhileOwn: a process listening on its own port as well as
// another is not taken for one that ignores its port.
func TestWrongPortNotWhileOwn(t *testing.T) {
	t.Parallel()
	other := testutil.FreePort(t)
	proc := startHelper(t, newCapture(), "listen", strconv.Itoa(other))
	// Its own port is the one it listens on: the probe passes.
	p := Probe{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(other)), Timeout: time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := p.WaitReady(ctx, proc, Wait{WrongPort: 100 * time.Millisecond}); err != nil {
		t.Fatalf("WaitReady() = %v, want ready", err)
	}
	socks := proc.look().socks
	if len(socks) != 1 || int(socks[0].Addr.Port()) != other || !strings.HasPrefix(socks[0].Addr.String(), "127.0.0.1:") {
		t.Errorf("look().socks = %v, want 127.0.0.1:%d", socks, other)
	}
}

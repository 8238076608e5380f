package sdnotify

import (
	"fmt"
	"os"
	"testing"
)

// systemd's own NOTIFY_SOCKET is often abstract ("@/org/freedesktop/...")
// in containers and for user managers: the leading @ stands for a NUL.
func TestAbstractSocket(t *testing.T) {
	sd := listen(t, fmt.Sprintf("@mattingctl-sdnotify-test-%d", os.Getpid()))
	New(nil).Ready()
	if got := sd.next(); got != "READY=1\nSTATUS=ready" {
		t.Fatalf("got %q over the abstract socket, want READY=1", got)
	}
}

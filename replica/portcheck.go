package replica

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"syscall"
)

// checkPortFree fails when something already listens on the replica's
// port. A TCP readiness check only proves that something accepts on the
// port: against a leftover of an earlier process (a setsid'd grandchild
// that inherited the listening socket, say) it would pass while nobody
// answers. Binding first proves the port was free, so whatever accepts
// there afterwards is the replica's. Errors other than "in use" (a
// privileged port, say) are the replica's own to report.
func checkPortFree(spec Spec) error {
	if spec.Port <= 0 {
		return nil
	}
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(spec.Port)))
	if err == nil {
		return ln.Close()
	}
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("%s: port %d is already in use by a process this instance did not start or could not stop; not starting it there", spec.Name(), spec.Port)
	}
	return nil
}

package replica

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"syscall"
)

// ErrPortInUse is wrapped by the errors of a port that something already
// listens on.
var ErrPortInUse = errors.New("is already in use by a process this instance did not start or could not stop")

// forkMu is held while a port is probed by binding it and while a replica
// is forked and exec'd. A forked child holds copies of the parent's
// descriptors until its exec closes them, so a probe socket open at that
// moment stays bound in the child after the probe has closed it, and the
// replica's own bind of that port a moment later fails as "in use" (seen
// with replicas starting at once). cmd.Start returns only once the child
// has exec'd, so nothing leaks past the lock.
var forkMu sync.Mutex

// CheckPort reports whether 127.0.0.1:port is free, by binding it: nil if
// it is, an error wrapping ErrPortInUse if something listens there, else
// the bind's own error (mattingctl out of descriptors, say).
func CheckPort(port int) error {
	forkMu.Lock()
	defer forkMu.Unlock()
	return checkPortLocked(port)
}

// checkPortLocked is CheckPort for a caller holding forkMu.
func checkPortLocked(port int) error {
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err == nil {
		return ln.Close()
	}
	if errors.Is(err, syscall.EADDRINUSE) {
		return &portInUseError{port: port, err: err}
	}
	return err
}

// checkPortFree fails when something already listens on the replica's
// port. A TCP readiness check only proves that something accepts on the
// port: against a leftover of an earlier process (a setsid'd grandchild
// that inherited the listening socket, say) it would pass while nobody
// answers. Binding first proves the port was free, so whatever accepts
// there afterwards is the replica's. Errors other than "in use" (a
// privileged port, say) are the replica's own to report. The caller holds
// forkMu.
func checkPortFree(spec Spec) error {
	if spec.Port <= 0 {
		return nil
	}
	if err := checkPortLocked(spec.Port); errors.Is(err, ErrPortInUse) {
		return fmt.Errorf("%s: %w; not starting it there", spec.Name(), err)
	}
	return nil
}

// portInUseError is a port something listens on: it is ErrPortInUse, and
// the bind's own error (EADDRINUSE) too.
type portInUseError struct {
	port int
	err  error
}

func (e *portInUseError) Error() string {
	return "port " + strconv.Itoa(e.port) + " " + ErrPortInUse.Error()
}

func (e *portInUseError) Unwrap() []error { return []error{ErrPortInUse, e.err} }

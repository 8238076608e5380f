package supervisor

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"syscall"
	"time"

	"github.com/mattingctl/mattingctl/internal/control"
)

// errPortHeld says that a replica's port is held by another process, as a
// leftover of a crashed replica may do for a moment.
var errPortHeld = errors.New("is in use by another process")

// transientStartError reports whether a replica could not be started for a
// reason that is not its command's fault and may pass: mattingctl out of
// file descriptors (EMFILE), the system out of them (ENFILE), out of memory
// (ENOMEM), out of processes (EAGAIN from fork), or its port held by
// another process. Such a start is retried with the crash backoff's delays
// and counts neither as a boot failure nor as a crash.
func transientStartError(err error) bool {
	for _, errno := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOMEM, syscall.EAGAIN} {
		if errors.Is(err, errno) {
			return true
		}
	}
	return errors.Is(err, errPortHeld)
}

// startPrimary starts the slot's primary process on port, as launch does,
// after checking that nothing else holds the port: a process that cannot
// bind would exit before it is ready, counted against the replica.
func (s *slot) startPrimary(port int) (*incarnation, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		return nil, fmt.Errorf("%s: port %d %w", s.name, port, errPortHeld)
	case err != nil: // out of descriptors, say: no sign of the port
		return nil, fmt.Errorf("%s: checking port %d: %w", s.name, port, err)
	}
	ln.Close()
	return s.launch(port, true)
}

// retryStart waits, after a transient start error (the n-th in a row), for
// the crash backoff's delay before the next try. It returns false when the
// slot must stop instead.
func (s *slot) retryStart(err error, n int) bool {
	delay := s.backoff.delay(n)
	s.log.Warn("replica could not be started; retrying", "error", err, "retry_in", delay)
	s.mu.Lock()
	s.state, s.err = control.Backoff, err
	s.mu.Unlock()
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.ctx.Done():
		s.set(control.Stopped)
		return false
	}
}

package supervisor

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/mattingctl/mattingctl/internal/pidbudget"
	"github.com/mattingctl/mattingctl/replica"
)

// transientStartError reports whether a replica could not be started for a
// reason that is not its command's fault and may pass: mattingctl out of
// file descriptors (EMFILE), the system out of them (ENFILE), out of memory
// (ENOMEM), out of processes (EAGAIN from fork), or its port held by
// another process. Such a start is retried with the crash backoff's delays
// and counts neither as a boot failure nor as a crash (crashpolicy.go).
func transientStartError(err error) bool {
	for _, errno := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOMEM, syscall.EAGAIN} {
		if errors.Is(err, errno) {
			return true
		}
	}
	return errors.Is(err, replica.ErrPortInUse)
}

// startPrimary starts the slot's primary process on port, as launch does,
// after checking that nothing else holds the port: a process that cannot
// bind would exit before it is ready, counted against the replica.
func (s *slot) startPrimary(port int) (*incarnation, error) {
	if err := replica.CheckPort(port); err != nil {
		if errors.Is(err, replica.ErrPortInUse) {
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
		return nil, fmt.Errorf("%s: checking port %d: %w", s.name, port, err) // out of descriptors, say
	}
	refused := pidbudget.Refused()
	inc, err := s.launch(port, true)
	switch {
	case inc == nil && err != nil:
		err = explainTaskLimit(err)
	case inc != nil && err != nil && pidbudget.Refused() > refused:
		// It started, but a pids limit refused forks meanwhile: a process
		// that cannot start its threads dies, and that is the limit's
		// doing, to retry, not a broken command to give up on. launch
		// has killed it.
		return nil, starvedStart(fmt.Errorf("%s (port %d) %w", s.name, port, err))
	}
	return inc, err
}

package control

import (
	"errors"
	"fmt"
)

// ErrNotRunning is in the chain of the errors saying that no instance
// runs under a name: there is no control socket, or one that nothing
// serves (a stale socket, left by a killed instance). ErrPermission is in
// the chain of those saying that this user may not reach the instance.
// Their messages are their own; these only sort them (`mattingctl ls`).
var (
	ErrNotRunning = errors.New("no instance is running")
	ErrPermission = errors.New("permission denied")
)

// kindError is an error of one of the kinds above, with its own message.
type kindError struct {
	err  error
	kind error
}

func (e *kindError) Error() string   { return e.err.Error() }
func (e *kindError) Unwrap() []error { return []error{e.err, e.kind} }

// errorOf returns fmt.Errorf(format, args...) as an error of kind.
func errorOf(kind error, format string, args ...any) error {
	return &kindError{err: fmt.Errorf(format, args...), kind: kind}
}

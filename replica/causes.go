package replica

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"syscall"
	"time"
)

// A failed check reads as its cause in a few words, `GET /health -> 404` or
// `no listener on 127.0.0.1:9112 (connection refused)`, not as the dialer's
// or the HTTP client's error text: the operator reads it in the log while
// a replica starts, in the ready-timeout error and in status.

// StatusError is a health check answered with a status outside 2xx.
type StatusError struct {
	// Path is the health-check path.
	Path string
	// Code is the status the replica answered.
	Code int
}

func (e *StatusError) Error() string { return fmt.Sprintf("GET %s -> %d", e.Path, e.Code) }

// checkError is a check that got no answer: cause says why, err is what the
// dial or the request returned (for errors.Is: EMFILE, ECONNREFUSED, ...).
type checkError struct {
	cause string
	err   error
}

func (e *checkError) Error() string { return e.cause }

func (e *checkError) Unwrap() error { return e.err }

// failed turns the error of a check that got no answer within timeout into
// its cause. A check cut short because the caller's ctx ended keeps ctx's
// error: it says nothing about the replica.
func (p Probe) failed(err error, timeout time.Duration, callerDone bool) error {
	if callerDone || errors.Is(err, context.Canceled) {
		return err
	}
	what := "connect to " + p.Addr
	switch {
	case p.GRPC:
		what = "grpc health check"
	case p.Path != "":
		what = "GET " + p.Path
	}
	var cause string
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		cause = "no listener on " + p.Addr + " (connection refused)"
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		cause = fmt.Sprintf("%s: no answer within %s", what, timeout)
	case (p.H2C || p.GRPC) && answeredHTTP1(err):
		cause = what + ": the replica answered in HTTP/1.1, not HTTP/2 (h2c)"
	case errors.Is(err, syscall.ECONNRESET):
		cause = what + ": connection reset"
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		cause = what + ": connection closed without an answer"
	default:
		cause = what + ": " + innermost(err)
	}
	return &checkError{cause: cause, err: err}
}

// ended reports whether ctx has ended or is about to: a dial gives up at
// ctx's deadline by a timer of its own, which may fire before ctx's.
func ended(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	d, ok := ctx.Deadline()
	return ok && !time.Now().Before(d)
}

// isTimeout reports whether err is a network timeout.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// innermost is err's text without the URL and the dial's address, which
// the cause already names: `socket: too many open files`, not
// `Get "http://127.0.0.1:9112/health": dial tcp 127.0.0.1:9112: socket: ...`.
func innermost(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		err = oe.Err
	}
	return err.Error()
}

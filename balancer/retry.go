package balancer

import (
	"context"
	"errors"
	"net"
	"time"

	"github.com/hashicorp/go-hclog"
)

// When a backend does not answer an attempt, the loop in ServeHTTP asks
// two questions, each answered here by a small function with no server
// behind it: how did it fail (failureOf: refused, dropped, slow, or busy
// rather than dead), and does the request try again (tryAgain)? Keeping
// the second in one place means a change of the retry rules changes one
// function and its table.

// How a backend failed to answer.
type failure int

const (
	refused failure = iota // no connection: the request never reached it
	dropped                // connection reset or closed before any response
	slow                   // no response within the upstream timeout
	// busy: no connection within the connect timeout (its accept backlog
	// is full), or refused or reset by a backend whose process is alive
	// and passing its liveness checks.
	busy
)

// logLevel is the level "replica did not answer" is logged at: a busy
// replica is ordinary under load, and the summary counts what it costs.
func (f failure) logLevel() hclog.Level {
	if f == busy {
		return hclog.Debug
	}
	return hclog.Warn
}

// classify tells from the transport's error alone how a backend failed.
func classify(err error) failure {
	var op *net.OpError
	var ne net.Error
	switch {
	case errors.As(err, &op) && op.Op == "dial" && op.Timeout():
		return busy
	case errors.As(err, &op) && op.Op == "dial":
		return refused
	case errors.As(err, &ne) && ne.Timeout():
		return slow
	default:
		return dropped
	}
}

// failureOf is how a backend failed an attempt with err: as classify says,
// except that a backend that refused or reset the connection before
// responding is busy, not dead, when alive says that its process lives.
// alive is asked only then, as it takes a moment (Balancer.alive).
func failureOf(err error, responded bool, alive func() bool) failure {
	kind := classify(err)
	if !responded && (kind == refused || kind == dropped) && alive() {
		return busy
	}
	return kind
}

// dead reports whether a backend that failed with f before responding is
// to be taken out of rotation (passive health, eject.go).
func (f failure) dead() bool { return f == refused || f == dropped }

// aliveSettle is how long the proxy waits, after a backend said to be alive
// refused or reset a connection, before asking again. A process that has
// just died closes its sockets a moment before its owner learns of its
// exit; and a busy one is given a moment before the request tries again.
const aliveSettle = 50 * time.Millisecond

// alive reports whether be, which refused or reset a connection, is alive
// and so busy rather than dead. Without an Alive function it is taken for
// dead, as before backends could tell.
func (b *Balancer) alive(ctx context.Context, be *Backend) bool {
	if be.Alive == nil || !be.Alive() {
		return false
	}
	t := time.NewTimer(aliveSettle)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
	return be.Alive()
}

// retryState is what a request's earlier failed attempts count for.
type retryState struct {
	retries int  // tries after the first that count against Options.Retries
	died    bool // a backend died (dropped it) during this request once already
}

// after is the state once an attempt that failed with f is to be tried
// again. A busy backend's refusal is not counted against Options.Retries:
// the request waits for room, as in the queue.
func (s retryState) after(f failure) retryState {
	if f != busy {
		s.retries++
	}
	s.died = s.died || f == dropped
	return s
}

// tryAgain decides whether a request whose attempt failed with f goes to a
// backend again, given its earlier failures s, Options.Retries (maxRetries)
// and the end of its wait (deadline, zero: none) at now. Never after the
// backend responded (the response may have reached the client) nor after
// an upstream timeout (the next would likely time out too); a busy backend
// is waited for within the queue timeout; a refused or dropped one is
// retried up to maxRetries times, but a request dropped a second time is
// not tried again: it is likely what kills the backends.
func tryAgain(f failure, responded bool, s retryState, maxRetries int, deadline, now time.Time) bool {
	switch {
	case responded || f == slow || maxRetries == 0:
		return false
	case f == busy:
		return deadline.IsZero() || now.Before(deadline)
	default:
		return s.retries < maxRetries && !(f == dropped && s.died)
	}
}

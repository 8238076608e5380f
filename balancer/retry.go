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
// behind it: how did it fail (failureOf: refused, busy, died, reset, slow,
// or spoken to in the wrong protocol), and does the request try again
// (tryAgain)? Keeping the second in one place means a change of the retry
// rules changes one function and its table.
//
// The rules, in short: a request that never reached a backend (no
// connection) waits for room within the queue timeout, as in the queue;
// every delivery that failed counts against Options.Retries, whatever the
// failure, so that no request is re-sent without end; and a request whose
// deliveries killed or reset backends twice stops there, as it is likely
// what breaks them (poison.go).

// How a backend failed to answer.
type failure int

const (
	// refused: no connection, from a backend that is dead. Nothing was
	// delivered.
	refused failure = iota
	// busy: no connection within the connect timeout (its accept backlog
	// is full), or refused by a backend whose process is alive and
	// passing its liveness checks. Nothing was delivered.
	busy
	// dropped: the request was delivered, at least in part, and the
	// connection was reset or closed before any response, by a backend
	// whose process then turned out dead: the request may have killed it.
	dropped
	// reset: as dropped, by a backend whose process lives on.
	reset
	// slow: no response within the upstream timeout.
	slow
	// wrongProtocol: the backend speaks only HTTP/2 over cleartext (h2c)
	// and was spoken HTTP/1.1 to (upstream.go).
	wrongProtocol
	numFailures
)

var failureText = [...]string{refused: "refused", busy: "busy", dropped: "died", reset: "reset", slow: "slow", wrongProtocol: "wrong protocol"}

func (f failure) String() string { return failureText[f] }

// logLevel is the level "replica did not answer" is logged at: a busy
// replica is ordinary under load, and so is one resetting connections past
// its capacity; the summaries count what they cost, and a request that
// broke replicas is logged apart (poison.go).
func (f failure) logLevel() hclog.Level {
	if f == busy || f == reset {
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
// except that a backend that refused a connection is busy, not dead, and
// one that reset it before responding reset it rather than died, when
// alive says that its process lives; and that such a reset is
// wrongProtocol when onlyH2C says the backend speaks only h2c. alive and
// onlyH2C are asked only then, as they take a moment (Balancer.alive,
// Balancer.speaksOnlyH2C).
func failureOf(err error, responded bool, alive, onlyH2C func() bool) failure {
	kind := classify(err)
	if responded || (kind != refused && kind != dropped) || !alive() {
		return kind
	}
	switch {
	case kind == refused:
		return busy
	case onlyH2C():
		return wrongProtocol
	default:
		return reset
	}
}

// dead reports whether a backend that failed with f before responding is
// to be taken out of rotation (passive health, eject.go).
func (f failure) dead() bool { return f == refused || f == dropped }

// harmful reports whether f is a delivery that killed or reset its backend:
// two of them, unless its owner was stopping it (poison.go), and the
// request is not tried again.
func (f failure) harmful() bool { return f == dropped || f == reset }

// maxHarms is how many deliveries of one request may kill or reset a
// backend: at the second, the request is answered 502 and not tried again.
// One may be bad luck (a replica that crashed with the request in flight);
// two in a row are likely the request's doing.
const maxHarms = 2

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
	waitUntil(ctx, time.Now().Add(aliveSettle))
	return be.Alive()
}

// waitUntil waits until t, or until ctx ends.
func waitUntil(ctx context.Context, t time.Time) {
	d := time.Until(t)
	if d <= 0 {
		return
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-ctx.Done():
	}
}

// What a failed attempt says against its request (poison.go).
type blame int

const (
	// innocent: the attempt killed or reset no backend, or the backend's
	// owner was stopping it.
	innocent blame = iota
	// shared: it killed or reset its backend, and so did other requests
	// under way with it: a crash or an overload.
	shared
	// alone: it killed or reset its backend, and no other request failed
	// with it.
	alone
)

// retryState is what a request's failed attempts so far count for.
type retryState struct {
	retries int // failures that count against Options.Retries: every delivery, and refusals by dead backends
	harms   int // deliveries that killed or reset a backend, not shared or alone
	blamed  int // of those, the ones it did alone
}

// after is the state once an attempt failed with f, which says bl against
// the request. A busy backend's refusal is not counted against
// Options.Retries: nothing was delivered, and the request waits for room,
// as in the queue.
func (s retryState) after(f failure, bl blame) retryState {
	if f != busy {
		s.retries++
	}
	if bl != innocent {
		s.harms++
		if bl == alone {
			s.blamed++
		}
	}
	return s
}

// poisoned reports whether a request in state s broke backends often
// enough to stop: it is answered 502, and quarantined when each time was
// its own doing (quarantine.go).
func (s retryState) poisoned() bool { return s.harms >= maxHarms }

// tryAgain decides whether a request whose attempt failed with f goes to a
// backend again, given its failures s, this one included,
// Options.Retries (maxRetries) and the end of its wait (deadline, zero:
// none) at now. Never after the backend responded (the response may have
// reached the client), after an upstream timeout (the next would likely
// time out too), or when the backend speaks another protocol; a busy
// backend, which was not delivered the request, is waited for within the
// queue timeout; any other failure is retried up to maxRetries times, but
// not once the request's deliveries killed or reset backends twice.
func tryAgain(f failure, responded bool, s retryState, maxRetries int, deadline, now time.Time) bool {
	switch {
	case responded || f == slow || f == wrongProtocol || maxRetries == 0:
		return false
	case f == busy:
		return deadline.IsZero() || now.Before(deadline)
	default:
		return s.retries <= maxRetries && !s.poisoned()
	}
}

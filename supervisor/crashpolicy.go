package supervisor

import (
	"errors"
	"fmt"
	"time"
)

// What the slot's loop (loop.go) does after each try of a replica's process
// is decided here, by a policy that starts nothing and reads no clock, as
// Nomad's restart tracker is: the loop says how the try ended (an outcome)
// and gets a verdict back (start again after a delay, give up on the
// replica as failed, or stop, which is not a failure), then acts on it.

// outcomeKind is how far a try of a replica's process got.
type outcomeKind int

const (
	// startFailed: no process ran (it could not be started, or its port
	// was held).
	startFailed outcomeKind = iota
	// notReady: a process started but did not become ready (it exited, or
	// the ready timeout passed) and was killed.
	notReady
	// exited: a process that was ready and served has exited, or was
	// killed for staying unhealthy.
	exited
)

// outcome is how one try of a replica's process ended.
type outcome struct {
	kind outcomeKind
	err  error // why the start failed, or why the process did not become ready
	// stopping is set when a stop was asked for: a start that failed, or a
	// process that did not become ready, is then no failure. A process
	// that served and exited is judged as any crash (run's wait for its
	// restart ends with the stop).
	stopping bool
	at       time.Time     // when the try ended
	port     int           // the port it was started on
	uptime   time.Duration // how long the process ran (notReady, exited)
	exit     string        // how the process ended (notReady, exited)
}

// verdictKind is what the slot does next.
type verdictKind int

const (
	startAgain verdictKind = iota // start a new process after the delay
	giveUp                        // mark the replica failed; not retried on its own
	stopped                       // a stop was asked for: the slot ends, not failed
)

// verdict is the crash policy's answer to an outcome.
type verdict struct {
	kind  verdictKind
	delay time.Duration // startAgain: the wait before the next start
	err   error         // giveUp: why the replica failed
	// crash is set when the process's end counts as a crash: the loop
	// records its exit and restarts it as one (restart count, event),
	// rather than retrying a start that did not happen.
	crash bool
}

// crashPolicy decides, try after try, whether a replica's slot starts its
// process again. As gunicorn's arbiter does, it tells a boot failure (the
// first process never became ready: a broken command or model, not
// retried) from a crash after boot (restarted with CrashBackoff's
// delays). A start error that is not the command's fault (out of file
// descriptors, the port held: transientStartError) is retried with the
// same delays, counted neither as a crash nor as a boot failure, until
// ReadyTimeout has passed without the replica ever being ready.
type crashPolicy struct {
	name         string // the replica's, for the errors
	backoff      CrashBackoff
	readyTimeout time.Duration
	begun        time.Time // when the slot began
	booted       bool      // a process of this slot has been ready
	transient    int       // transient start errors in a row
}

func newCrashPolicy(name string, backoff CrashBackoff, readyTimeout time.Duration, begun time.Time) *crashPolicy {
	return &crashPolicy{name: name, backoff: backoff, readyTimeout: readyTimeout, begun: begun}
}

// decide returns the verdict on outcome o and records o for later ones.
func (p *crashPolicy) decide(o outcome) verdict {
	if o.stopping && o.kind != exited {
		return verdict{kind: stopped}
	}
	if o.kind == startFailed {
		switch {
		case !transientStartError(o.err):
			return verdict{kind: giveUp, err: o.err}
		case !p.booted && o.at.Sub(p.begun) > p.readyTimeout:
			return verdict{kind: giveUp, err: fmt.Errorf("%w (still, after --ready-timeout %s)", o.err, p.readyTimeout)}
		}
		p.transient++
		return verdict{kind: startAgain, delay: p.backoff.delay(p.transient)}
	}
	p.transient = 0
	if o.kind == notReady && !p.booted {
		// A replica that never came up is a broken command or model, not
		// a crash to retry.
		var named *startupError
		if errors.As(o.err, &named) {
			return verdict{kind: giveUp, err: o.err}
		}
		return verdict{kind: giveUp, err: fmt.Errorf("%s (port %d) %w", p.name, o.port, o.err)}
	}
	served := o.kind == exited
	p.booted = p.booted || served
	delay, ok := p.backoff.Crash(o.uptime)
	if !ok {
		if !served {
			// Restarted and never ready again, time after time: a
			// broken command or model, as at boot.
			return verdict{kind: giveUp, crash: true, err: fmt.Errorf("%s crashed %d times in a row (last: %s) and did not become ready again; not restarting it",
				p.name, p.backoff.crashes, o.exit)}
		}
		// A replica that served before it crashed is always brought back,
		// as Kubernetes does, at the longest backoff: an OOM kill every
		// minute must not leave the service with no replica.
		delay = p.backoff.longest()
	}
	return verdict{kind: startAgain, delay: delay, crash: true}
}

// Crash backoff: a crashed replica is restarted after 0.5s, then 1s, 2s,
// 4s and 8s for each further crash in a row (at most 30s). A replica that
// stayed up for ResetAfter (10s) before crashing starts the series afresh:
// only a process that dies within seconds, time after time, is in a crash
// loop (a model that loads for minutes never is).
// Past MaxRestarts restarts in a row, a replica whose last process never
// became ready is marked failed (not retried; the others keep serving);
// one whose last process served is restarted after the longest delay.
const (
	DefaultBackoffInitial    = 500 * time.Millisecond
	DefaultBackoffMax        = 30 * time.Second
	DefaultBackoffResetAfter = 10 * time.Second
	DefaultMaxRestarts       = 5
)

// CrashBackoff is the crash policy's delays: how long to wait before
// starting a crashed replica again, and when to give up on it. The zero
// value uses the defaults above. (A restart asked for, rolling or of one
// replica, is another thing: see restart.go.)
type CrashBackoff struct {
	Initial     time.Duration
	Max         time.Duration
	ResetAfter  time.Duration
	MaxRestarts int

	crashes int // crashes in a row, each after less than ResetAfter up
}

// Crash records a crash after uptime and returns the delay before the next
// start, or ok=false when the replica has crashed too often to retry.
func (b *CrashBackoff) Crash(uptime time.Duration) (delay time.Duration, ok bool) {
	reset, maxRestarts := b.ResetAfter, b.MaxRestarts
	if reset <= 0 {
		reset = DefaultBackoffResetAfter
	}
	if maxRestarts <= 0 {
		maxRestarts = DefaultMaxRestarts
	}
	if uptime >= reset {
		b.crashes = 0
	}
	b.crashes++
	if b.crashes > maxRestarts {
		return 0, false
	}
	return b.delay(b.crashes), true
}

// delay returns the wait before the n-th restart in a row (n >= 1).
func (b *CrashBackoff) delay(n int) time.Duration {
	initial, maxDelay := b.Initial, b.Max
	if initial <= 0 {
		initial = DefaultBackoffInitial
	}
	if maxDelay <= 0 {
		maxDelay = DefaultBackoffMax
	}
	d := initial
	for i := 1; i < n && d < maxDelay; i++ {
		d *= 2
	}
	return min(d, maxDelay)
}

// longest returns the longest delay between restarts.
func (b *CrashBackoff) longest() time.Duration {
	if b.Max <= 0 {
		return DefaultBackoffMax
	}
	return b.Max
}

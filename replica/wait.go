package replica

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"time"
)

// The readiness checks of a starting process back off: the first comes at
// once, the next after FirstCheckInterval, and the wait doubles after every
// check the replica answered, up to MaxCheckInterval. A model server that
// answers 503 while it loads, or 404 on a wrong --health path, then logs a
// request every 2 seconds, not ten a second. A refused connection reaches
// no application and costs nothing, so it does not lengthen the wait: a
// replica that starts listening after a long model load is still seen
// ready within FirstCheckInterval.
const (
	FirstCheckInterval = 100 * time.Millisecond
	MaxCheckInterval   = 2 * time.Second
)

// checkBackoff is the wait between a starting process's readiness checks.
// The zero checkBackoff uses FirstCheckInterval and MaxCheckInterval. A
// new process starts with a new one, so a restart checks fast again.
type checkBackoff struct {
	first, max time.Duration
	next       time.Duration // the wait after the next answered check; 0 before the first
}

// after returns the wait before the check that follows a failed one, whose
// error is err, and lengthens the next one if the replica answered.
func (b *checkBackoff) after(err error) time.Duration {
	first, most := b.first, b.max
	if first <= 0 {
		first = FirstCheckInterval
	}
	if most <= 0 {
		most = MaxCheckInterval
	}
	if b.next == 0 {
		b.next = first
	}
	d := b.next
	if !errors.Is(err, syscall.ECONNREFUSED) {
		b.next = min(2*b.next, most)
	}
	return d
}

// ErrExited is returned by WaitReady when the process exits first.
type ErrExited struct {
	Exit Exit
	// Name is the replica's, to prefix the lines of Tail with.
	Name string
	// Tail is the process's last lines of output (see TailLines).
	Tail []string
}

func (e *ErrExited) Error() string { return e.Summary() + e.Quote() }

// Summary is the error's first line: how the process exited.
func (e *ErrExited) Summary() string {
	return "exited before becoming ready (" + e.Exit.String() + ")"
}

// Quote is the error's end that quotes Tail, a line each under the
// replica's name, or "" when there is none.
func (e *ErrExited) Quote() string {
	if len(e.Tail) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("; its last lines of output:")
	for _, line := range e.Tail {
		b.WriteString("\n  " + e.Name + " | " + line)
	}
	return b.String()
}

// NotReadyError is returned by WaitReady when ctx ends before a check
// passes. It is ctx's error, and says why the replica was not ready.
type NotReadyError struct {
	// Err is ctx's error.
	Err error
	// Last is the last check's failure: the last one that ran to its end,
	// unless ctx cut short every check.
	Last error
}

func (e *NotReadyError) Error() string {
	return fmt.Sprintf("%v; last check: %v", e.Err, e.Last)
}

func (e *NotReadyError) Unwrap() []error { return []error{e.Err, e.Last} }

// Progress reports on a replica that is not ready yet. The zero Progress
// reports nothing.
type Progress struct {
	// Every is how often Report is called while the replica is not ready.
	Every time.Duration
	// Report is given how long WaitReady has waited and the last check's
	// failure.
	Report func(waited time.Duration, last error)
}

// Wait says how WaitReady waits. The zero Wait checks with the default
// backoff, reports nothing and waits for ctx, however the replica answers.
type Wait struct {
	// First and Max bound the wait between checks (checkBackoff); zero
	// means FirstCheckInterval and MaxCheckInterval.
	First, Max time.Duration
	// Progress is called now and then while the replica is not ready.
	Progress Progress
	// Checked, if set, is given every failed check's cause as it comes,
	// for status to show why the replica is not ready.
	Checked func(cause error)
	// WrongPath, if more than zero, ends the wait with a *WrongPathError
	// once the health path has answered 404 or 405, and nothing else, for
	// that long: the path is not the application's.
	WrongPath time.Duration
	// WrongPort, if more than zero, ends the wait with a *WrongPortError
	// once the process's tree has listened on other ports, and not on its
	// own, for that long (Linux; elsewhere it has no effect).
	WrongPort time.Duration
}

// WaitReady checks p, with checkBackoff's waits between checks, until it
// passes, the process exits (an *ErrExited), ctx ends (a *NotReadyError),
// or w's rules find the process cannot become ready (a *WrongPathError or
// *WrongPortError). Meanwhile it reports to w.Progress why the replica is
// not ready.
func (p Probe) WaitReady(ctx context.Context, proc *Process, w Wait) error {
	begun := time.Now()
	backoff := checkBackoff{first: w.First, max: w.Max}
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	var report <-chan time.Time // nil: no reports
	if w.Progress.Every > 0 && w.Progress.Report != nil {
		r := time.NewTicker(w.Progress.Every)
		defer r.Stop()
		report = r.C
	}
	path := wrongPath{after: w.WrongPath}
	port := newWrongPort(w.WrongPort, proc, p)
	var last error
	for {
		err := p.Check(ctx)
		if err == nil {
			return nil
		}
		// A check that ctx cut short says only that time ran out; the
		// one before it says why the replica was not ready.
		if ended(ctx) {
			if last == nil {
				last = err
			}
		} else {
			now := time.Now()
			if verdict := path.observe(ctx, p, now, err); verdict != nil {
				return verdict
			}
			if verdict := port.observe(now, err); verdict != nil {
				return verdict
			}
			last = port.explain(err)
			if w.Checked != nil {
				w.Checked(last)
			}
		}
		timer.Reset(path.due(time.Now(), backoff.after(err)))
		for next := false; !next; {
			select {
			case <-proc.Done():
				return proc.exitedBeforeReady()
			case <-ctx.Done():
				return &NotReadyError{Err: ctx.Err(), Last: last}
			case <-report:
				w.Progress.Report(time.Since(begun), last)
			case <-timer.C:
				next = true
			}
		}
	}
}

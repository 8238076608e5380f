// Package sdnotify tells systemd what a foreground `mattingctl up` is
// doing, by the sd_notify protocol: ready, reloading, stopping, a status
// line, and that it is alive (the watchdog). Nothing is sent when systemd
// did not ask for it (NOTIFY_SOCKET unset).
//
// The datagrams are sent by go-systemd's daemon package, which reads
// NOTIFY_SOCKET at each call and addresses abstract sockets ("@...")
// as systemd does; WatchdogTimeout applies systemd's rules for
// WATCHDOG_USEC and WATCHDOG_PID through it.
package sdnotify

import (
	"context"
	"os"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/hashicorp/go-hclog"
)

// SocketEnv is the variable through which systemd hands a Type=notify
// service the socket to notify.
const SocketEnv = "NOTIFY_SOCKET"

// Env lists the variables systemd sets for the service's main process
// only: a replica must not inherit them, or a model server that speaks
// sd_notify itself (gunicorn does) would tell systemd it is ready for
// the whole service.
var Env = []string{SocketEnv, "WATCHDOG_USEC", "WATCHDOG_PID"}

// Enabled reports whether systemd asked this process to notify it.
func Enabled() bool { return os.Getenv(SocketEnv) != "" }

// WatchdogTimeout returns systemd's watchdog timeout for this process
// (WATCHDOG_USEC), or 0 when there is none or it is meant for another
// process (WATCHDOG_PID). A WATCHDOG_USEC that is not a positive number
// is an error.
func WatchdogTimeout() (time.Duration, error) {
	return daemon.SdWatchdogEnabled(false)
}

// StatusEvery is how often Run refreshes the STATUS= line.
const StatusEvery = 2 * time.Second

// phase is where the instance is in its life, as systemd sees it.
type phase int

const (
	starting  phase = iota // until READY=1
	ready                  // serving its current configuration
	reloading              // between RELOADING=1 and READY=1
	stopping               // after STOPPING=1: nothing else is sent but the watchdog
)

// Notifier sends one instance's state to systemd. A nil *Notifier is
// valid and sends nothing, so callers need not check Enabled.
type Notifier struct {
	log  hclog.Logger
	poke chan struct{} // wakes Run to refresh the status at once

	mu     sync.Mutex // guards the fields below, and orders the datagrams
	phase  phase
	sent   string // the last STATUS= sent
	failed bool   // a send has failed: later failures are logged at debug
}

// New returns a Notifier that logs failed sends to log, or nil when
// NOTIFY_SOCKET is unset.
func New(log hclog.Logger) *Notifier {
	if !Enabled() {
		return nil
	}
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &Notifier{log: log, poke: make(chan struct{}, 1)}
}

// Ready sends READY=1: the instance has started (every initial replica
// is ready), or a reload has ended. It is ignored once Stopping was sent,
// and when the instance is ready already.
func (n *Notifier) Ready() {
	n.to(ready, func(from phase) bool { return from == starting || from == reloading }, "READY=1")
}

// Reloading sends RELOADING=1 with MONOTONIC_USEC, which systemd 253 and
// later use to tell this reload from an earlier one (Type=notify-reload).
// It is ignored unless the instance is ready: a reload during the start
// must not end with a READY=1 before the replicas are.
func (n *Notifier) Reloading() {
	n.to(reloading, func(from phase) bool { return from == ready }, reloadingMessage())
}

// Reloaded sends READY=1 after Reloading, whether the reload was applied
// or refused (the instance serves either way; systemd would otherwise
// wait for the end of a reload until its timeout). Unlike Ready it never
// ends the start.
func (n *Notifier) Reloaded() {
	n.to(ready, func(from phase) bool { return from == reloading }, "READY=1")
}

// Stopping sends STOPPING=1: the instance has begun to stop. After it,
// only the watchdog is sent.
func (n *Notifier) Stopping() {
	n.to(stopping, func(from phase) bool { return from != stopping }, "STOPPING=1")
}

// reloadingMessage is RELOADING=1 with the CLOCK_MONOTONIC time, in
// microseconds, that systemd compares with the time it sent SIGHUP.
func reloadingMessage() string {
	return "RELOADING=1\n" + daemon.SdNotifyMonotonicUsec() // ends in \n where the clock is known
}

// to moves the instance to phase next, if allowed from where it is, and
// sends state with the new status line.
func (n *Notifier) to(next phase, allowed func(phase) bool, state string) {
	if n == nil {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if !allowed(n.phase) {
		return
	}
	n.phase = next
	n.sent = statusLine(next, "") // the last counts may be stale: Run sends fresh ones at once
	n.sendLocked(trimNewline(state) + "\nSTATUS=" + n.sent)
	select { // refresh the counts now rather than at the next tick
	case n.poke <- struct{}{}:
	default:
	}
}

// status sends the status line for counts, the status function's text,
// if it changed.
func (n *Notifier) status(counts string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if line := statusLine(n.phase, counts); line != n.sent {
		n.sent = line
		n.sendLocked("STATUS=" + line)
	}
}

// watchdog sends WATCHDOG=1.
func (n *Notifier) watchdog() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.sendLocked("WATCHDOG=1")
}

// statusLine is the STATUS= text for a phase, given the counts, e.g.
// "4/4 replicas ready".
func statusLine(ph phase, counts string) string {
	switch {
	case ph == stopping:
		return "stopping"
	case counts == "" && ph == ready:
		return "ready"
	case counts == "":
		return phaseNames[ph]
	case ph == ready:
		return counts
	default:
		return phaseNames[ph] + ": " + counts
	}
}

var phaseNames = map[phase]string{starting: "starting", ready: "ready", reloading: "reloading", stopping: "stopping"}

// sendLocked sends state; the caller holds n.phase.mu. The first failure
// is logged as a warning, later ones at debug: systemd going away is
// worth one line, not one a tick.
func (n *Notifier) sendLocked(state string) {
	// false and no error: NOTIFY_SOCKET was unset since New, nobody to tell.
	_, err := daemon.SdNotify(false, state)
	if err == nil {
		return
	}
	if n.failed {
		n.log.Debug("sd_notify failed", "socket", os.Getenv(SocketEnv), "error", err)
		return
	}
	n.failed = true
	n.log.Warn("cannot notify systemd; it may restart or time out this service", "socket", os.Getenv(SocketEnv), "error", err)
}

// trimNewline drops one trailing newline, so that fields join with one.
func trimNewline(s string) string {
	if len(s) > 0 && s[len(s)-1] == '\n' {
		return s[:len(s)-1]
	}
	return s
}

// Run keeps systemd informed until ctx ends: it sends STATUS= whenever
// the text of status (e.g. "3/4 replicas ready") changes, checked every
// StatusEvery and at once after each phase change, and, when watchdog is
// more than 0, WATCHDOG=1 every watchdog/2. status is called before each
// ping, so a supervisor stuck so that status cannot answer stops the
// pings, and systemd restarts the service: the watchdog vouches for the
// supervisor, not only for this goroutine.
func (n *Notifier) Run(ctx context.Context, watchdog time.Duration, status func() string) {
	if n == nil {
		return
	}
	refresh := time.NewTicker(StatusEvery)
	defer refresh.Stop()
	var pings <-chan time.Time
	if watchdog > 0 {
		t := time.NewTicker(watchdog / 2)
		defer t.Stop()
		pings = t.C
	}
	n.status(status())
	if watchdog > 0 {
		n.watchdog()
	}
	for {
		select {
		case <-refresh.C:
			n.status(status())
		case <-n.poke:
			n.status(status())
		case <-pings:
			n.status(status())
			n.watchdog()
		case <-ctx.Done():
			return
		}
	}
}

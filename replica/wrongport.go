package replica

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"time"
)

// An application that ignores PORT listens on a port of its own choosing
// (Flask's 5000, say), and its replica's port is refused forever. Its
// process tree's listening sockets (listeners_linux.go) say so: mattingctl
// names the port it listens on rather than waiting out --ready-timeout.

// wrongPortScanEvery is how often a process whose port refuses connections
// has its tree's sockets looked up: a walk of /proc.
const wrongPortScanEvery = 500 * time.Millisecond

// wrongPortIdle is the most CPU, as a share of the time, that a tree
// listening elsewhere may use to be taken for an app that ignores PORT: a
// server waiting for requests uses next to none, while an app that opened
// a port of its own (metrics, say) before its model has loaded is busy
// loading it, and will listen on its port later.
const wrongPortIdle = 0.1

// treeLook is what a look at a process tree found.
type treeLook struct {
	socks []listenSocket // listening sockets, by port
	cpu   time.Duration  // CPU time used, user and system, all processes together
}

// listenSocket is a TCP socket a process listens on.
type listenSocket struct {
	Pid  int
	Addr netip.AddrPort
}

// WrongPortError is returned by WaitReady when the process's tree has
// listened on another port, and not on its own, for Wait.WrongPort.
type WrongPortError struct {
	// Name is the replica's.
	Name string
	// Pid is the process that listens on Addr.
	Pid  int
	Addr netip.AddrPort
	// Port is the replica's own port.
	Port int
}

func (e *WrongPortError) Error() string {
	return fmt.Sprintf("%s (pid %d) listens on %s, not %d: read $PORT or pass {port}", e.Name, e.Pid, e.Addr, e.Port)
}

// wrongPort tells, check after check, whether the process listens on
// another port than its own. One with after 0 never looks.
type wrongPort struct {
	after    time.Duration
	name     string          // the replica's
	own      int             // its port
	look     func() treeLook // looks at its process tree
	scanned  time.Time       // the last look at the tree
	since    time.Time       // since when it listens elsewhere only; zero: it does not
	cpuSince time.Duration   // the tree's CPU time then
	cpu      time.Duration   // the tree's CPU time at the last look
	elsewhen []listenSocket  // what it listened on, at the last look
}

// newWrongPort returns the wrongPort of proc, checked by probe.
func newWrongPort(after time.Duration, proc *Process, probe Probe) wrongPort {
	_, port, _ := net.SplitHostPort(probe.Addr)
	own, _ := strconv.Atoi(port)
	return wrongPort{after: after, name: proc.spec.Name(), own: own, look: proc.look}
}

// observe records a check's failure err at now and returns a
// *WrongPortError once the process has listened elsewhere only for after.
func (w *wrongPort) observe(now time.Time, err error) error {
	if w.after <= 0 || !errors.Is(err, syscall.ECONNREFUSED) {
		w.since, w.elsewhen = time.Time{}, nil
		return nil
	}
	if now.Sub(w.scanned) >= wrongPortScanEvery {
		w.scanned = now
		look := w.look() // unreadable: as if it listened nowhere
		w.elsewhen, w.cpu = nil, look.cpu
		for _, s := range look.socks {
			if int(s.Addr.Port()) == w.own {
				w.elsewhen = nil
				break
			}
			w.elsewhen = append(w.elsewhen, s)
		}
		switch {
		case len(w.elsewhen) == 0:
			w.since = time.Time{}
		case w.since.IsZero():
			w.since, w.cpuSince = now, look.cpu
		}
	}
	// Decided on what the last look saw: the CPU time is as of then.
	seen := w.scanned.Sub(w.since)
	if w.since.IsZero() || seen < w.after {
		return nil
	}
	if busy := w.cpu - w.cpuSince; float64(busy) > wrongPortIdle*float64(seen) {
		return nil // busy: still starting, it may listen on its port yet
	}
	s := w.elsewhen[0]
	return &WrongPortError{Name: w.name, Pid: s.Pid, Addr: s.Addr, Port: w.own}
}

// explain adds to a refused check's cause where the process listens
// instead, once that is known.
func (w *wrongPort) explain(err error) error {
	if len(w.elsewhen) == 0 || !errors.Is(err, syscall.ECONNREFUSED) {
		return err
	}
	s := w.elsewhen[0]
	return &checkError{cause: fmt.Sprintf("%v; pid %d listens on %s instead", err, s.Pid, s.Addr), err: err}
}

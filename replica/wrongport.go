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
// another port than its own. Its zero value, and any with after 0, never
// looks.
type wrongPort struct {
	after    time.Duration
	proc     *Process
	probe    Probe
	scanned  time.Time      // the last look at the tree's sockets
	since    time.Time      // since when it listens elsewhere only; zero: it does not
	elsewhen []listenSocket // what it listened on, at the last look
}

// observe records a check's failure err at now and returns a
// *WrongPortError once the process has listened elsewhere only for after.
func (w *wrongPort) observe(now time.Time, err error) error {
	if w.after <= 0 || !errors.Is(err, syscall.ECONNREFUSED) {
		w.since, w.elsewhen = time.Time{}, nil
		return nil
	}
	own := w.ownPort()
	if now.Sub(w.scanned) >= wrongPortScanEvery {
		w.scanned = now
		socks, _ := w.proc.listeners() // unreadable: as if it listened nowhere
		w.elsewhen = nil
		for _, s := range socks {
			if int(s.Addr.Port()) == own {
				w.elsewhen = nil
				break
			}
			w.elsewhen = append(w.elsewhen, s)
		}
		switch {
		case len(w.elsewhen) == 0:
			w.since = time.Time{}
		case w.since.IsZero():
			w.since = now
		}
	}
	if w.since.IsZero() || now.Sub(w.since) < w.after {
		return nil
	}
	s := w.elsewhen[0]
	return &WrongPortError{Name: w.proc.spec.Name(), Pid: s.Pid, Addr: s.Addr, Port: own}
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

// ownPort is the port the probe checks.
func (w *wrongPort) ownPort() int {
	_, port, _ := net.SplitHostPort(w.probe.Addr)
	n, _ := strconv.Atoi(port)
	return n
}

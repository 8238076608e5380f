package supervisor

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"syscall"

	"github.com/mattingctl/mattingctl/replica"
)

// Replica ports. Replica k's home port is BasePort+k-1. A successor started
// by a rolling restart or recycling needs another port while its
// predecessor still serves: the first free one of the replica's home port
// and the ports after the range, so a replica alternates between its home
// port and a spare one. The supervisor records which slot holds each port.

func (s *Supervisor) homePort(id int) int { return s.cfg().BasePort + id - 1 }

// portFor returns the port a slot's primary process listens on: cur, the
// one it already has (a crashed replica comes back where it was), else its
// home port, else a spare.
func (s *Supervisor) portFor(sl *slot, cur int) int {
	if cur != 0 {
		return cur
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	home := s.homePort(sl.id)
	if holder, ok := s.ports[home]; !ok || holder == sl {
		s.ports[home] = sl
		return home
	}
	if p, err := s.spareLocked(sl); err == nil {
		return p
	}
	return home // let the replica report the clash
}

// allocPort reserves a free port for a successor of sl.
func (s *Supervisor) allocPort(sl *slot) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if home := s.homePort(sl.id); s.ports[home] == nil && portFree(home) {
		s.ports[home] = sl
		return home, nil
	}
	return s.spareLocked(sl)
}

// spareLocked reserves the first port past the replicas' range that no
// slot holds and nothing else listens on. The caller holds s.mu.
func (s *Supervisor) spareLocked(sl *slot) (int, error) {
	last := maxPort
	if s.lastPort > 0 {
		last = s.lastPort
	}
	for p := s.homePort(s.desired + 1); p <= last; p++ {
		if s.ports[p] == nil && p != s.cfg().Port && portFree(p) {
			s.ports[p] = sl
			return p, nil
		}
	}
	if s.lastPort > 0 {
		return 0, fmt.Errorf("no free port for a successor replica in service %s's ports, %d-%d", s.service, s.cfg().BasePort, s.lastPort)
	}
	return 0, errors.New("no free port for a successor replica")
}

// freePort releases a port a slot no longer uses.
func (s *Supervisor) freePort(port int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.ports, port)
}

// releasePorts releases every port sl holds, when it ends.
func (s *Supervisor) releasePorts(sl *slot) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for p, holder := range s.ports {
		if holder == sl {
			delete(s.ports, p)
		}
	}
}

// portFree reports whether nothing listens on 127.0.0.1:port.
func portFree(port int) bool { return replica.CheckPort(port) == nil }

// startGate waits for a turn to start a replica under --start-concurrency
// and returns the function that gives it back; it fails if ctx ends first.
func (s *Supervisor) startGate(ctx context.Context) (func(), error) {
	if s.starting == nil {
		return func() {}, nil
	}
	select {
	case s.starting <- struct{}{}:
		return func() { <-s.starting }, nil
	case <-ctx.Done():
		return nil, errors.New("stopped before it could start")
	}
}

// checkNewPortsLocked checks the home ports of replicas first..last before
// a scale-up. A home port that one of our own replicas holds as its spare
// (after a rolling restart or recycling) is fine: the new replica takes a
// spare instead. The caller holds s.mu.
func (s *Supervisor) checkNewPortsLocked(first, last int) error {
	displaced := 0 // new replicas whose home port one of ours holds
	for id := first; id <= last; id++ {
		port := s.homePort(id)
		if s.ports[port] != nil {
			displaced++
			continue
		}
		if err := s.checkPorts(id, 1); err != nil {
			return err
		}
	}
	if displaced == 0 || s.lastPort == 0 {
		return nil
	}
	// A service of several has a block of ports: the displaced need
	// spares in it, past the new replicas' home ports.
	free := 0
	for p := s.homePort(last + 1); p <= s.lastPort && free < displaced; p++ {
		if s.ports[p] == nil && p != s.cfg().Port && portFree(p) {
			free++
		}
	}
	if free < displaced {
		return fmt.Errorf("service %s: its ports, %d-%d, have no room for %d replicas beside the spare ports its rolling restarts took; scale to fewer, or give the services base-port settings further apart", s.service, s.cfg().BasePort, s.lastPort, last)
	}
	return nil
}

// checkPorts reports the first home port of replicas first..first+count-1
// that is in use on 127.0.0.1, or past the service's block of ports,
// naming the replica it was meant for.
func (s *Supervisor) checkPorts(first, count int) error {
	for id := first; id < first+count; id++ {
		port := s.homePort(id)
		if s.lastPort > 0 && port > s.lastPort {
			return fmt.Errorf("%s would listen on port %d, past service %s's ports, %d-%d: give the services base-port settings further apart", replicaName(s.service, id), port, s.service, s.cfg().BasePort, s.lastPort)
		}
		if err := replica.CheckPort(port); err != nil {
			return fmt.Errorf("port %d for %s: %s", port, replicaName(s.service, id), portError(err))
		}
	}
	return nil
}

// portError says why a port could not be bound, and what to do.
func portError(err error) string {
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		return "already in use (is another server or mattingctl instance running? choose another with --port/--base-port)"
	case errors.Is(err, syscall.EACCES):
		return "permission denied (ports below 1024 need root)"
	default:
		return err.Error()
	}
}

func portRange(base, n int) string {
	if n == 1 {
		return strconv.Itoa(base)
	}
	return fmt.Sprintf("%d-%d", base, base+n-1)
}

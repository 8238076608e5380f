package supervisor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/mattingctl/mattingctl/balancer"
	"github.com/mattingctl/mattingctl/replica"
)

// State is a replica's place in its life cycle.
type State string

// The states a replica moves through. starting -> ready -> (draining ->
// stopped | backoff -> starting | failed).
const (
	Starting State = "starting" // process started, not yet ready
	Ready    State = "ready"    // in rotation
	Draining State = "draining" // out of rotation, finishing its requests
	Backoff  State = "backoff"  // crashed, waiting to be restarted
	Failed   State = "failed"   // crashed too often, or never became ready; not retried
	Stopped  State = "stopped"  // stopped on purpose
)

// probeInterval is how often a starting replica is checked for readiness.
const probeInterval = 100 * time.Millisecond

// slot runs one replica for its whole life: it starts the process, waits
// until it is ready, puts it into rotation, restarts it with backoff when it
// crashes, and drains and stops it when asked. The loop in run is the only
// goroutine that starts or stops the slot's processes.
type slot struct {
	spec    replica.Spec
	backend *balancer.Backend
	bal     *balancer.Balancer
	out     *replica.Output
	log     hclog.Logger
	probe   replica.Probe
	backoff RestartPolicy
	ready   time.Duration // ReadyTimeout

	stop      chan struct{} // closed to ask run to drain and stop
	stopOnce  sync.Once
	firstDone chan struct{} // closed when first ready, or when run ends
	done      chan struct{} // closed when run returns

	mu        sync.Mutex // guards the fields below
	state     State
	proc      *replica.Process
	sampler   *replica.Sampler
	restarts  int
	lastExit  string
	err       error     // why the slot failed
	deadline  time.Time // when a requested stop must be complete
	firstOnce bool
}

func newSlot(s *Supervisor, id int) *slot {
	port := s.opts.BasePort + id - 1
	spec := replica.Spec{ID: id, Port: port, Command: s.opts.Command, Env: s.opts.Env}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	be := balancer.NewBackend(id, spec.Name(), addr)
	if id <= len(s.opts.Weights) {
		be.Weight = s.opts.Weights[id-1]
	}
	return &slot{
		spec:      spec,
		backend:   be,
		bal:       s.bal,
		out:       s.out,
		log:       s.log.With("replica", spec.Name()),
		probe:     replica.NewProbe(port, s.opts.Health),
		backoff:   s.opts.Restart,
		ready:     s.opts.ReadyTimeout,
		state:     Starting,
		stop:      make(chan struct{}),
		firstDone: make(chan struct{}),
		done:      make(chan struct{}),
	}
}

// requestStop asks the slot to drain and stop its replica by deadline.
func (s *slot) requestStop(deadline time.Time) {
	s.stopOnce.Do(func() {
		s.mu.Lock()
		s.deadline = deadline
		s.mu.Unlock()
		close(s.stop)
	})
}

// kill kills the replica's process group now, skipping any grace period.
func (s *slot) kill() {
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	if p != nil {
		_ = p.Kill()
	}
}

func (s *slot) set(state State) {
	s.mu.Lock()
	s.state = state
	s.mu.Unlock()
}

func (s *slot) markFirstDone() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.firstOnce {
		s.firstOnce = true
		close(s.firstDone)
	}
}

// failure returns why the slot failed, or nil.
func (s *slot) failure() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *slot) run() {
	defer close(s.done)
	defer s.markFirstDone()
	booted := false
	for {
		proc, err := replica.Start(s.spec, s.out)
		if err != nil {
			s.fail(err)
			return
		}
		s.mu.Lock()
		s.proc, s.state = proc, Starting
		s.sampler = replica.NewSampler(proc.Pid(), time.Second)
		s.mu.Unlock()
		s.log.Debug("replica started", "pid", proc.Pid(), "port", s.spec.Port)

		if err := s.waitReady(proc); err != nil {
			if s.stopping() {
				s.stopProcess(proc)
				return
			}
			_ = proc.Kill()
			if !booted {
				// As gunicorn's arbiter: a replica that never came up
				// is a broken command or model, not a crash to retry.
				s.fail(fmt.Errorf("%s (port %d) %w", s.spec.Name(), s.spec.Port, err))
				return
			}
			s.log.Warn("replica did not become ready", "pid", proc.Pid(), "error", err)
		} else {
			booted = true
			if stopped := s.serve(proc); stopped {
				return
			}
		}

		exit := proc.Exit()
		uptime := time.Since(proc.StartedAt())
		s.mu.Lock()
		s.lastExit = exit.String()
		s.mu.Unlock()
		delay, ok := s.backoff.Crash(uptime)
		if !ok {
			s.fail(fmt.Errorf("%s crashed %d times in a row (last: %s); not restarting it", s.spec.Name(), s.backoff.crashes, exit))
			return
		}
		s.log.Warn("replica exited; restarting", "pid", proc.Pid(), "exit", exit.String(), "uptime", uptime.Round(time.Millisecond), "restart_in", delay)
		s.mu.Lock()
		s.state = Backoff
		s.restarts++
		s.mu.Unlock()
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-s.stop:
			t.Stop()
			s.set(Stopped)
			return
		}
	}
}

// serve keeps a ready replica in rotation until it exits (false) or a stop
// is requested and done (true). When the proxy reports that the replica
// failed a request it is out of rotation until a readiness check passes.
func (s *slot) serve(proc *replica.Process) (stopped bool) {
	s.log.Info("replica ready", "pid", proc.Pid(), "port", s.spec.Port)
	for {
		select { // a failure reported before this process was ready
		case <-s.backend.Failed():
		default:
		}
		s.bal.Add(s.backend)
		s.set(Ready)
		s.markFirstDone()
		select {
		case <-proc.Done():
			s.bal.Remove(s.backend)
			return false
		case <-s.stop:
			s.drain()
			s.stopProcess(proc)
			return true
		case <-s.backend.Failed():
			s.set(Starting)
			s.log.Warn("replica failed a request; out of rotation until it passes a readiness check", "pid", proc.Pid())
			if err := s.waitReady(proc); err != nil {
				if s.stopping() {
					s.stopProcess(proc)
					return true
				}
				_ = proc.Kill()
				return false
			}
			s.log.Info("replica back in rotation", "pid", proc.Pid())
		}
	}
}

// waitReady probes proc until it is ready, exits, the ready timeout passes
// or a stop is requested.
func (s *slot) waitReady(proc *replica.Process) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.ready)
	defer cancel()
	go func() {
		select {
		case <-s.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	err := s.probe.WaitReady(ctx, proc, probeInterval)
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("did not become ready within %s: %v", s.ready, errors.Unwrap(err))
	}
	return err
}

func (s *slot) stopping() bool {
	select {
	case <-s.stop:
		return true
	default:
		return false
	}
}

// drain takes the replica out of rotation and waits, until the stop
// deadline, for its in-flight requests to finish.
func (s *slot) drain() {
	s.set(Draining)
	idle := s.bal.Remove(s.backend)
	s.mu.Lock()
	deadline := s.deadline
	s.mu.Unlock()
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-idle:
	case <-t.C:
		s.log.Warn("requests still in flight at the stop deadline", "inflight", s.backend.InFlight())
	}
}

func (s *slot) stopProcess(proc *replica.Process) {
	s.mu.Lock()
	grace := time.Until(s.deadline)
	s.mu.Unlock()
	if err := proc.Stop(max(grace, 0)); err != nil {
		s.log.Error("stopping replica", "error", err)
	}
	s.mu.Lock()
	s.state = Stopped
	s.lastExit = proc.Exit().String()
	s.mu.Unlock()
	s.log.Info("replica stopped", "pid", proc.Pid(), "exit", proc.Exit().String())
}

func (s *slot) fail(err error) {
	s.log.Error("replica failed", "error", err)
	s.mu.Lock()
	s.state, s.err = Failed, err
	s.mu.Unlock()
}

// status reports the slot as `status` shows it.
func (s *slot) status() ReplicaStatus {
	s.mu.Lock()
	st := ReplicaStatus{
		ID:       s.spec.ID,
		Name:     s.spec.Name(),
		Port:     s.spec.Port,
		State:    string(s.state),
		Restarts: s.restarts,
		LastExit: s.lastExit,
	}
	if s.err != nil {
		st.Error = s.err.Error()
	}
	proc, sampler := s.proc, s.sampler
	running := proc != nil && (s.state == Starting || s.state == Ready || s.state == Draining)
	s.mu.Unlock()
	st.Inflight = s.backend.InFlight()
	st.Weight = s.backend.Weight
	st.Requests = s.backend.Requests()
	st.Errors = s.backend.Errors()
	if running {
		st.Pid = proc.Pid()
		t := proc.StartedAt().UTC()
		st.StartedAt = &t
		u := sampler.Sample() // a /proc read, outside the lock
		st.CPUPercent, st.RSSBytes = u.CPUPercent, u.RSSBytes
	}
	return st
}

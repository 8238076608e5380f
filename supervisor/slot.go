package supervisor

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
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

// Why a replica's current process was started, as status shows it.
const (
	ReasonScale   = "scale"
	ReasonRolling = "rolling restart"
	ReasonMemory  = "memory"
	ReasonMaxReq  = "max-requests"
)

const (
	// probeInterval is how often a starting replica is checked for
	// readiness.
	probeInterval = 100 * time.Millisecond
	// recycleInterval is how often a replica's request count and memory
	// are compared with --max-requests and --max-memory.
	recycleInterval = 2 * time.Second
	// recycleRetry is how long a replica whose successor failed to start
	// serves on before recycling is tried again.
	recycleRetry = 30 * time.Second
)

// incarnation is one process of a replica, with the backend the proxy
// sends its requests to (its own, as successors listen on other ports).
type incarnation struct {
	proc        *replica.Process
	be          *balancer.Backend
	port        int
	maxRequests uint64 // recycle after this many; 0 never
}

// replaceRequest asks a slot to replace its process: start a successor,
// wait until it is ready, then drain and stop the old one.
type replaceRequest struct {
	reason string
	done   chan error // receives the outcome; buffered
}

// slot runs one replica for its whole life: it starts the process, waits
// until it is ready, puts it into rotation, restarts it with backoff when it
// crashes, replaces it with a successor when asked (rolling restart,
// recycling), and drains and stops it when asked. The loop in run is the
// only goroutine that starts or stops the slot's processes.
type slot struct {
	sup     *Supervisor
	id      int
	name    string
	env     []string
	gpu     string
	log     hclog.Logger
	backoff RestartPolicy

	stop      chan struct{} // closed to ask run to drain and stop
	stopOnce  sync.Once
	replace   chan replaceRequest
	firstDone chan struct{} // closed when first ready, or when run ends
	done      chan struct{} // closed when run returns

	mu          sync.Mutex // guards the fields below
	state       State
	cur         *incarnation     // the process serving, or starting
	next        *replica.Process // a successor being started, if any
	prev        *incarnation     // a replaced process still draining
	restarts    int
	lastExit    string
	lastRestart string    // why the current process was started
	err         error     // why the slot failed
	deadline    time.Time // when a requested stop must be complete
	firstOnce   bool
	retiredReq  uint64 // requests and errors of earlier processes
	retiredErr  uint64
}

func newSlot(s *Supervisor, id int, reason string) *slot {
	name := "replica-" + strconv.Itoa(id)
	sl := &slot{
		sup:         s,
		id:          id,
		name:        name,
		env:         s.opts.Env,
		log:         s.log.With("replica", name),
		backoff:     s.opts.Restart,
		state:       Starting,
		lastRestart: reason,
		stop:        make(chan struct{}),
		replace:     make(chan replaceRequest),
		firstDone:   make(chan struct{}),
		done:        make(chan struct{}),
	}
	if len(s.opts.GPUs) > 0 {
		sl.gpu = s.opts.GPUs[(id-1)%len(s.opts.GPUs)]
		sl.env = append(append([]string(nil), s.opts.Env...), "CUDA_VISIBLE_DEVICES="+sl.gpu)
	}
	return sl
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

// kill kills the replica's processes now, skipping any grace period.
func (s *slot) kill() {
	s.mu.Lock()
	var procs []*replica.Process
	if s.cur != nil {
		procs = append(procs, s.cur.proc)
	}
	if s.next != nil {
		procs = append(procs, s.next)
	}
	if s.prev != nil {
		procs = append(procs, s.prev.proc)
	}
	s.mu.Unlock()
	for _, p := range procs {
		_ = p.Kill()
	}
}

// requestReplace asks the slot to replace its process for reason and waits
// for the outcome or ctx.
func (s *slot) requestReplace(ctx context.Context, reason string) error {
	req := replaceRequest{reason: reason, done: make(chan error, 1)}
	select {
	case s.replace <- req:
	case <-s.done:
		return fmt.Errorf("%s is not running", s.name)
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
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

func (s *slot) stopping() bool {
	select {
	case <-s.stop:
		return true
	default:
		return false
	}
}

// launch starts a process of this replica on port, once the start gate
// (--start-concurrency) lets it, and waits until it is ready. On failure
// the process is killed and, if it got that far, returned for its exit.
func (s *slot) launch(port int, primary bool) (*incarnation, error) {
	release, err := s.sup.startGate(s.stop)
	if err != nil {
		return nil, err
	}
	defer release()
	spec := replica.Spec{ID: s.id, Port: port, Command: s.sup.opts.Command, Env: s.env}
	proc, err := replica.Start(spec, s.sup.out)
	if err != nil {
		return nil, err
	}
	be := balancer.NewBackend(s.id, s.name, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if s.id <= len(s.sup.opts.Weights) {
		be.Weight = s.sup.opts.Weights[s.id-1]
	}
	inc := &incarnation{proc: proc, be: be, port: port}
	if n := s.sup.opts.MaxRequests; n > 0 {
		// Jitter, as gunicorn's, so replicas do not all recycle at once.
		inc.maxRequests = uint64(n + rand.IntN(s.sup.opts.MaxRequestsJitter+1))
	}
	s.mu.Lock()
	if primary {
		s.cur, s.state = inc, Starting
	} else {
		s.next = proc
	}
	s.mu.Unlock()
	s.log.Debug("replica started", "pid", proc.Pid(), "port", port)
	if err := s.waitReady(inc); err != nil {
		_ = proc.Kill()
		return inc, err
	}
	return inc, nil
}

func (s *slot) run() {
	defer close(s.done)
	defer s.markFirstDone()
	defer s.sup.releasePorts(s)
	booted := false
	for {
		port := s.sup.portFor(s)
		inc, err := s.launch(port, true)
		if inc == nil {
			if s.stopping() {
				s.set(Stopped)
			} else {
				s.fail(err)
			}
			return
		}
		if err != nil {
			if s.stopping() {
				s.stopProcess(inc.proc)
				return
			}
			if !booted {
				// As gunicorn's arbiter: a replica that never came up
				// is a broken command or model, not a crash to retry.
				s.fail(fmt.Errorf("%s (port %d) %w", s.name, port, err))
				return
			}
			s.log.Warn("replica did not become ready", "pid", inc.proc.Pid(), "error", err)
		} else {
			booted = true
			var stopped bool
			if inc, stopped = s.serve(inc); stopped {
				return
			}
		}

		exit := inc.proc.Exit()
		uptime := time.Since(inc.proc.StartedAt())
		// What the crashed process forked must not outlive it: it could
		// hold the port, or even answer the successor's readiness probe.
		_ = inc.proc.Kill()
		s.retire(inc)
		s.mu.Lock()
		s.lastExit = exit.String()
		s.mu.Unlock()
		delay, ok := s.backoff.Crash(uptime)
		if !ok {
			s.fail(fmt.Errorf("%s crashed %d times in a row (last: %s); not restarting it", s.name, s.backoff.crashes, exit))
			return
		}
		s.log.Warn("replica exited; restarting", "pid", inc.proc.Pid(), "exit", exit.String(), "uptime", uptime.Round(time.Millisecond), "restart_in", delay)
		s.mu.Lock()
		s.state = Backoff
		s.restarts++
		s.lastRestart = "crash: " + exit.String()
		s.mu.Unlock()
		s.sup.metrics.restarted(s.name, "crash")
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

// serve keeps a ready replica in rotation until its process exits (it is
// returned, for the crash path) or a stop is requested and done (stopped).
// When the proxy reports that the replica failed a request it is out of
// rotation until a readiness check passes. Replacements, asked for or due
// to recycling, swap in a successor and go on serving with it.
func (s *slot) serve(inc *incarnation) (_ *incarnation, stopped bool) {
	s.log.Info("replica ready", "pid", inc.proc.Pid(), "port", inc.port)
	recycle := time.NewTicker(recycleInterval)
	defer recycle.Stop()
	var recycleAfter time.Time // no recycling before this, after a failed one
	for {
		select {
		case <-inc.be.Failed():
			// The proxy took it out of rotation while we were busy
			// (replacing or recycling it): check it before it serves again.
			if done, stopped := s.recheck(inc); done {
				return inc, stopped
			}
		default:
		}
		s.sup.bal.Add(inc.be)
		s.set(Ready)
		s.markFirstDone()
	wait:
		select {
		case <-inc.proc.Done():
			s.sup.bal.Remove(inc.be)
			return inc, false
		case <-s.stop:
			s.drain(inc)
			s.stopProcess(inc.proc)
			return inc, true
		case <-inc.be.Failed():
			if done, stopped := s.recheck(inc); done {
				return inc, stopped
			}
		case req := <-s.replace:
			next, err := s.successor(inc, req.reason)
			req.done <- err
			if next != nil {
				inc = next
			}
		case <-recycle.C:
			reason := s.recycleReason(inc)
			if reason == "" || time.Now().Before(recycleAfter) {
				break wait
			}
			next, err := s.successor(inc, reason)
			if err != nil {
				s.log.Error("recycling failed; the replica serves on", "reason", reason, "error", err)
				recycleAfter = time.Now().Add(recycleRetry)
				break wait
			}
			inc = next
		}
	}
}

// recheck keeps a replica the proxy reported failed out of rotation until
// a readiness check passes. done is true when the replica must not serve
// again: its process exited or failed the check (then it is killed, for
// the crash path), or a stop came (then it is stopped).
func (s *slot) recheck(inc *incarnation) (done, stopped bool) {
	s.set(Starting)
	s.log.Warn("replica failed a request; out of rotation until it passes a readiness check", "pid", inc.proc.Pid())
	if err := s.waitReady(inc); err != nil {
		if s.stopping() {
			s.stopProcess(inc.proc)
			return true, true
		}
		_ = inc.proc.Kill()
		return true, false
	}
	s.log.Info("replica back in rotation", "pid", inc.proc.Pid())
	return false, false
}

// recycleReason says why inc should be replaced now, or "".
func (s *slot) recycleReason(inc *incarnation) string {
	if inc.maxRequests > 0 && inc.be.Requests() >= inc.maxRequests {
		return ReasonMaxReq
	}
	if limit := s.sup.opts.MaxMemory; limit > 0 {
		if u := s.sup.usage.Sample(inc.proc.Pid()); u.RSSBytes > uint64(limit) {
			return ReasonMemory
		}
	}
	return ""
}

// successor replaces inc without a moment of lower capacity: it starts a
// new process on another free port, waits until it is ready, puts it into
// rotation, and only then drains and stops inc. If the successor does not
// become ready, inc serves on and the error says why.
func (s *slot) successor(inc *incarnation, reason string) (*incarnation, error) {
	port, err := s.sup.allocPort(s)
	if err != nil {
		return nil, err
	}
	s.log.Info("replacing replica", "reason", reason, "pid", inc.proc.Pid(), "successor_port", port)
	next, err := s.launch(port, false)
	s.mu.Lock()
	s.next = nil
	if err == nil {
		// In the same critical section, so that kill always finds it.
		s.cur, s.prev = next, inc
		s.restarts++
		s.lastRestart = reason
	}
	s.mu.Unlock()
	if err != nil {
		s.sup.freePort(port)
		if next != nil {
			<-next.proc.Done()
		}
		return nil, fmt.Errorf("%s: the successor on port %d %v; the old process serves on", s.name, port, err)
	}
	s.sup.bal.Add(next.be)
	s.sup.metrics.restarted(s.name, reason)
	s.log.Info("successor ready; draining the old process", "pid", next.proc.Pid(), "port", port, "old_pid", inc.proc.Pid())

	s.mu.Lock()
	s.deadline = time.Now().Add(s.sup.opts.StopTimeout)
	s.mu.Unlock()
	s.drainBackend(inc.be)
	s.stopProcess(inc.proc)
	s.retire(inc)
	s.sup.freePort(inc.port)
	s.set(Ready)
	return next, nil
}

// retire folds a finished process's counters into the slot's.
func (s *slot) retire(inc *incarnation) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.retiredReq += inc.be.Requests()
	s.retiredErr += inc.be.Errors()
	inc.be = balancer.NewBackend(s.id, s.name, inc.be.Addr) // count nothing twice
	if s.prev == inc {
		s.prev = nil
	}
}

// waitReady probes inc until it is ready, exits, the ready timeout passes
// or a stop is requested.
func (s *slot) waitReady(inc *incarnation) error {
	timeout := s.sup.opts.ReadyTimeout
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	go func() {
		select {
		case <-s.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	probe := replica.NewProbe(inc.port, s.sup.opts.Health)
	err := probe.WaitReady(ctx, inc.proc, probeInterval)
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("did not become ready within %s: %v", timeout, errors.Unwrap(err))
	}
	return err
}

// drain takes the replica out of rotation and waits, until the stop
// deadline, for its in-flight requests to finish.
func (s *slot) drain(inc *incarnation) {
	s.set(Draining)
	s.drainBackend(inc.be)
}

func (s *slot) drainBackend(be *balancer.Backend) {
	idle := s.sup.bal.Remove(be)
	s.mu.Lock()
	deadline := s.deadline
	s.mu.Unlock()
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-idle:
	case <-t.C:
		s.log.Warn("requests still in flight at the stop deadline", "inflight", be.InFlight())
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
	if s.cur != nil && s.cur.proc == proc {
		s.state = Stopped
	}
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
		ID:          s.id,
		Name:        s.name,
		State:       string(s.state),
		Restarts:    s.restarts,
		LastExit:    s.lastExit,
		LastRestart: s.lastRestart,
		GPU:         s.gpu,
		Requests:    s.retiredReq,
		Errors:      s.retiredErr,
	}
	if s.err != nil {
		st.Error = s.err.Error()
	}
	inc := s.cur
	var be *balancer.Backend
	if inc != nil {
		be = inc.be // retire swaps it, under s.mu
	}
	if s.prev != nil { // draining after a replace: its requests count too
		st.Inflight += s.prev.be.InFlight()
		st.Requests += s.prev.be.Requests()
		st.Errors += s.prev.be.Errors()
	}
	running := inc != nil && (s.state == Starting || s.state == Ready || s.state == Draining)
	s.mu.Unlock()
	if inc != nil {
		st.Port = inc.port
		st.Inflight += be.InFlight()
		st.Requests += be.Requests()
		st.Errors += be.Errors()
		st.Weight = be.Weight
	} else {
		st.Port = s.sup.homePort(s.id)
	}
	if running {
		st.Pid = inc.proc.Pid()
		t := inc.proc.StartedAt().UTC()
		st.StartedAt = &t
		u := s.sup.usage.Sample(inc.proc.Pid()) // a /proc read, outside the lock
		st.CPUPercent, st.RSSBytes = u.CPUPercent, u.RSSBytes
	}
	return st
}

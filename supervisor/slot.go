package supervisor

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/mattingctl/mattingctl/balancer"
	"github.com/mattingctl/mattingctl/internal/admin"
	"github.com/mattingctl/mattingctl/internal/control"
	"github.com/mattingctl/mattingctl/replica"
)

// Why a replica's current process was started, as status shows it.
const (
	ReasonScale   = "scale"
	ReasonRolling = "rolling restart"
	ReasonMemory  = "memory"
	ReasonMaxReq  = "max-requests"
)

// incarnation is one process of a replica, with the backend the proxy
// sends its requests to (its own, as successors listen on other ports).
type incarnation struct {
	proc        *replica.Process
	be          *balancer.Backend
	port        int
	maxRequests uint64 // recycle after this many; 0 never
	killedFor   string // why the slot killed it, for its restart's reason; "" for a crash
	// checkFailed is set while its last liveness check failed (alive.go).
	checkFailed atomic.Bool
	// gpu and cpus are what the configuration gave it at its start.
	gpu  string
	cpus []int
	// probe checks it on the --health path in force at its start: a
	// changed path reaches each replica with its new process, by the
	// rolling restart, not the old processes at once.
	probe replica.Probe
}

// replaceRequest asks a slot to replace its process: start a successor,
// wait until it is ready, then drain and stop the old one.
type replaceRequest struct {
	reason string
	done   chan error // receives the outcome; buffered
}

// errScaledDown is the cause of a slot's stop when a scale-down removes it.
var errScaledDown = errors.New("removed by a scale-down")

// slot runs one replica for its whole life: it starts the process, waits
// until it is ready, puts it into rotation, restarts it with backoff when it
// crashes, replaces it with a successor when asked (rolling restart,
// recycling), and drains and stops it when asked. The loop in run (loop.go)
// is the only goroutine that starts or stops the slot's processes; every
// wait in it ends when ctx or force does.
type slot struct {
	sup     *Supervisor
	id      int
	name    string
	log     hclog.Logger
	backoff CrashBackoff
	// gpu and cpus are what the configuration gave the replica when the
	// slot was made, for status until a process runs (whose own are in
	// its incarnation); cpus nil: not pinned.
	gpu  string
	cpus []int

	// ctx is cancelled, with the reason as its cause, when the slot must
	// drain and stop. force, a child of the supervisor's force context, is
	// cancelled when that stop's grace is over (or a second Ctrl-C came):
	// drains are cut short and processes still running are killed.
	ctx         context.Context
	cancel      context.CancelCauseFunc
	force       context.Context
	forceCancel context.CancelFunc
	stopOnce    sync.Once

	replace   chan replaceRequest
	firstDone chan struct{} // closed when first ready, or when run ends
	// booted, if not nil, receives the slot once firstDone is closed: the
	// initial replicas report there, so that the first to fail is seen
	// at once, whichever it is. It has room for every initial slot.
	booted chan<- *slot
	done   chan struct{} // closed when run returns

	// Touched only by run's goroutine.
	checks        sync.WaitGroup // liveness checks in flight (liveness.go)
	slowWarnedAt  time.Time      // the last slow-request warning
	testHookStart func() error   // if set, called before each start; an error fails it; tests only

	mu          sync.Mutex // guards the fields below
	state       control.State
	cur         *incarnation // the process serving, or starting
	prev        *incarnation // a replaced process still draining
	restarts    int
	lastExit    string
	lastRestart string // why the current process was started
	err         error  // why the slot failed
	grace       *time.Timer
	firstOnce   bool
	retiredReq  uint64 // requests and errors of earlier processes
	retiredErr  uint64
	healthErr   string // the last liveness check's failure; "" once one passes
	notReady    string // why the process starting is not ready yet; "" when none is
}

func newSlot(s *Supervisor, id int, reason string) *slot {
	name := replicaName(s.service, id)
	sl := &slot{
		sup:         s,
		id:          id,
		name:        name,
		log:         s.log.With("replica", name),
		backoff:     s.cfg().Backoff,
		state:       control.Starting,
		lastRestart: reason,
		replace:     make(chan replaceRequest),
		firstDone:   make(chan struct{}),
		done:        make(chan struct{}),
	}
	sl.ctx, sl.cancel = context.WithCancelCause(context.Background())
	sl.force, sl.forceCancel = context.WithCancel(s.force)
	_, sl.gpu, sl.cpus = placement(s.cfg(), id)
	return sl
}

// placement returns what c gives replica id's processes: their
// environment, GPU and CPUs.
func placement(c *config, id int) (env []string, gpu string, cpus []int) {
	env = c.Env
	if len(c.GPUs) > 0 {
		gpu = c.GPUs[(id-1)%len(c.GPUs)]
		env = append(append([]string(nil), c.Env...), "CUDA_VISIBLE_DEVICES="+gpu)
	}
	if cpus = c.cpusFor(id); cpus != nil {
		env = append(append([]string(nil), env...), threadEnv(len(cpus), c.Env)...)
	}
	return env, gpu, cpus
}

// requestStop asks the slot to drain and stop its replica, for cause, by
// deadline. Only the first request counts: a later one cannot move the
// deadline.
func (s *slot) requestStop(cause error, deadline time.Time) {
	s.stopOnce.Do(func() {
		s.mu.Lock()
		s.grace = time.AfterFunc(time.Until(deadline), s.forceCancel)
		s.mu.Unlock()
		s.cancel(cause)
	})
}

// release frees the slot's contexts once run has returned.
func (s *slot) release() {
	s.mu.Lock()
	if s.grace != nil {
		s.grace.Stop()
	}
	s.mu.Unlock()
	s.forceCancel()
	s.cancel(context.Canceled)
}

// requestReplace asks the slot to replace its process for reason and waits
// for the outcome or ctx.
func (s *slot) requestReplace(ctx context.Context, reason string) error {
	req := replaceRequest{reason: reason, done: make(chan error, 1)}
	select {
	case s.replace <- req:
	case <-s.done:
		return fmt.Errorf("%s is not running", s.name)
	case <-s.ctx.Done():
		return fmt.Errorf("%s is stopping", s.name)
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

func (s *slot) set(state control.State) {
	s.mu.Lock()
	s.state = state
	s.mu.Unlock()
	s.sup.stateChanged()
}

func (s *slot) markFirstDone() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.firstOnce {
		s.firstOnce = true
		close(s.firstDone)
		if s.booted != nil {
			s.booted <- s
		}
	}
}

// failure returns why the slot failed, or nil.
func (s *slot) failure() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// ready reports whether the replica is in rotation.
func (s *slot) ready() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state == control.Ready
}

// port returns the port of the slot's current process, 0 before the first.
func (s *slot) port() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur == nil {
		return 0
	}
	return s.cur.port
}

func (s *slot) stopping() bool { return s.ctx.Err() != nil }

// stopCause says why the slot was asked to stop, for the log.
func (s *slot) stopCause() string {
	if err := context.Cause(s.ctx); err != nil {
		return err.Error()
	}
	return ""
}

func (s *slot) fail(err error) {
	s.log.Error("replica failed", "error", err)
	s.sup.event(s.name, admin.EventFailed, "%v", err)
	s.mu.Lock()
	s.state, s.err = control.Failed, err
	s.mu.Unlock()
	s.sup.stateChanged()
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

// runningPid returns the pid of the slot's process while it runs, or 0.
func (s *slot) runningPid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if inc := s.runningLocked(); inc != nil {
		return inc.proc.Pid()
	}
	return 0
}

// runningLocked returns the slot's process while it runs, or nil. s.mu is
// held.
func (s *slot) runningLocked() *incarnation {
	switch s.state {
	case control.Starting, control.Ready, control.Draining, control.Unhealthy:
		return s.cur
	}
	return nil
}

// status reports the slot as `status` shows it.
func (s *slot) status() control.ReplicaStatus {
	s.mu.Lock()
	st := control.ReplicaStatus{
		ID:          s.id,
		Name:        s.name,
		State:       s.state,
		Restarts:    s.restarts,
		LastExit:    s.lastExit,
		LastRestart: s.lastRestart,
		GPU:         s.gpu,
		CPUs:        replica.FormatCPUs(s.cpus),
		Requests:    s.retiredReq,
		Errors:      s.retiredErr,
		MaxInflight: s.sup.cfg().MostInflight(),
		Limit:       s.sup.cfg().MaxInflight, // a fixed cap; under auto, the backend's below
	}
	if s.err != nil {
		st.Error = s.err.Error()
	}
	st.HealthError, st.NotReady = s.healthErr, s.notReady
	inc := s.cur
	var be *balancer.Backend
	if inc != nil {
		be = inc.be // retire swaps it, under s.mu
		st.GPU, st.CPUs = inc.gpu, replica.FormatCPUs(inc.cpus)
	}
	var oldest time.Duration
	var prevBe *balancer.Backend
	if s.prev != nil { // draining after a replace: its requests count too
		prevBe = s.prev.be
		oldest = s.prev.be.OldestInflight()
		st.Inflight += s.prev.be.InFlight()
		st.Upgraded += s.prev.be.Upgraded()
		st.Requests += s.prev.be.Requests()
		st.Errors += s.prev.be.Errors()
	}
	running := inc != nil && s.runningLocked() != nil
	s.mu.Unlock()
	if inc != nil {
		st.Port = inc.port
		st.Inflight += be.InFlight()
		st.Upgraded += be.Upgraded()
		st.Requests += be.Requests()
		st.Errors += be.Errors()
		st.Weight = be.Weight()
		if s.sup.cfg().Adaptive() {
			st.Limit = int(be.Limit())
		}
		oldest = max(oldest, be.OldestInflight())
	} else {
		st.Port = s.sup.homePort(s.id)
	}
	st.OldestInflightMs = oldest.Milliseconds()
	st.RPS, st.P50Ms, st.P99Ms = s.sup.latency(be, prevBe)
	if running {
		st.Pid = inc.proc.Pid()
		t := inc.proc.StartedAt().UTC()
		st.StartedAt = &t
		u := s.sup.usage.Sample(inc.proc.Pid()) // at most one /proc scan a second, shared, outside the lock
		st.CPUPercent, st.RSSBytes = u.CPUPercent, u.RSSBytes
	}
	return st
}

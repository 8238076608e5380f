package supervisor

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/mattingctl/mattingctl/balancer"
	"github.com/mattingctl/mattingctl/internal/accesslog"
	"github.com/mattingctl/mattingctl/internal/admin"
	"github.com/mattingctl/mattingctl/internal/control"
	"github.com/mattingctl/mattingctl/replica"
)

// Supervisor runs one instance: the replicas and the proxy in front of
// them. It is what the control socket and the admin endpoints serve.
type Supervisor struct {
	opts    *config
	log     hclog.Logger
	out     *replica.Output
	bal     *balancer.Balancer
	metrics *admin.Metrics
	history *admin.History   // the dashboard's charts and timeline
	usage   *replica.Sampler // CPU and memory of every replica, one scan for all
	alog    *accesslog.Log   // nil when off
	started time.Time

	// ctx is cancelled, with the reason as its cause, when a stop is
	// requested; force is cancelled when the stop must skip its waits (a
	// second Ctrl-C). stopped is closed once every replica has stopped.
	ctx       context.Context
	cancel    context.CancelCauseFunc
	force     context.Context
	forceStop context.CancelFunc
	stopped   chan struct{}
	stopOnce  sync.Once

	scaleMu   sync.Mutex // serialises Scale calls and rolling restarts
	restartMu sync.Mutex // held while a rolling restart runs

	mu      sync.Mutex     // guards the fields below
	slots   map[int]*slot  // the replicas wanted, by id
	removed map[*slot]bool // replicas scaled away, until they have stopped
	desired int
	ports   map[int]*slot // replica port -> the slot holding it
	admin   string        // the admin listener's address, "" when off

	starting chan struct{} // a token per replica starting; nil: no limit

	testHookScale func() // called in Scale before it takes mu; tests only

	changeMu sync.Mutex    // guards changed
	changed  chan struct{} // closed at the next state change; see stateChange

	// tracker contains and records every replica process so that none,
	// nor anything it starts, outlives the instance; set by Run.
	tracker *replica.Tracker
}

// New validates opts and returns a supervisor that has started nothing.
func New(opts Options) (*Supervisor, error) {
	c, err := opts.resolve()
	if err != nil {
		return nil, err
	}
	if err := replica.CheckCommand(c.Command); err != nil {
		return nil, err
	}
	s := &Supervisor{
		opts:    c,
		log:     c.Logger,
		out:     newOutput(c),
		usage:   replica.NewSampler(time.Second),
		started: time.Now(),
		slots:   make(map[int]*slot),
		removed: make(map[*slot]bool),
		ports:   make(map[int]*slot),
		stopped: make(chan struct{}),
	}
	s.ctx, s.cancel = context.WithCancelCause(context.Background())
	s.force, s.forceStop = context.WithCancel(context.Background())
	if c.StartConcurrency > 0 {
		s.starting = make(chan struct{}, c.StartConcurrency)
	}
	s.metrics = admin.NewMetrics(s)
	s.history = admin.NewHistory(s.metrics)
	s.alog = newAccessLog(c)
	var alog balancer.AccessLogger // a nil *accesslog.Log would not be a nil interface
	if s.alog != nil {
		alog = s.alog
	}
	var tlsConfig *tls.Config
	if c.cert != nil {
		tlsConfig = c.cert.tlsConfig()
	}
	s.bal = balancer.New(balancer.Options{
		Limits:      c.Limits,
		Policy:      c.policy,
		Observer:    s.metrics,
		Logger:      s.log.Named("proxy"),
		TLS:         tlsConfig,
		AccessLog:   alog,
		UpstreamH2C: c.UpstreamProtocol == ProtocolH2C,
	})
	return s, nil
}

// Run starts the instance described by opts and serves until ctx ends, the
// process receives SIGINT or SIGTERM, or a client calls `down`; a second
// signal skips the graceful waits. It returns nil after a clean stop, or the
// first error that prevented the instance from starting, in which case
// nothing it started is left running.
func Run(ctx context.Context, opts Options) error {
	s, err := New(opts)
	if err != nil {
		return err
	}
	return s.Run(ctx)
}

// Run is the package's Run for a supervisor made by New. It may be called
// once.
func (s *Supervisor) Run(ctx context.Context) error {
	defer s.out.Close()
	opts := s.opts
	// Everything that can fail for a reason the user can fix is checked
	// before the first replica starts.
	ctl, err := control.Listen(opts.StateDir, opts.Name)
	if err != nil {
		return err
	}
	defer ctl.Close()
	// Holding the name, sweep what a killed instance of it left running
	// before binding any port that a leftover could hold.
	tracker, err := replica.OpenTracker(opts.StateDir, opts.Name, s.log.Named("processes"))
	if err != nil {
		return err
	}
	reaper := s.startReaper(tracker)
	defer func() {
		if err := tracker.Close(); err != nil {
			s.log.Error("cleaning up replica processes", "error", err)
		}
		reaper.Stop() // once the tracker has swept: a kill -9 until then is covered
	}()
	s.tracker = tracker
	if err := opts.prepareBufferDir(); err != nil {
		return err
	}
	if opts.BufferDir == DefaultBufferDir(opts.StateDir, opts.Name) {
		defer os.Remove(opts.BufferDir) // when empty: every body's file is gone
	}
	if err := s.startAccessLog(); err != nil {
		return err
	}
	defer s.closeAccessLog() // after stop: the requests have been answered
	proxyAddr := net.JoinHostPort(opts.Host, strconv.Itoa(opts.Port))
	ln, err := net.Listen("tcp", proxyAddr)
	if err != nil {
		return fmt.Errorf("proxy port %d: %s", opts.Port, portError(err))
	}
	defer ln.Close()
	if err := checkPorts(opts.BasePort, 1, opts.Replicas); err != nil {
		return err
	}
	if err := s.prepareTasks(); err != nil {
		return err
	}
	adm, err := admin.Listen(opts.Admin)
	if err != nil {
		return err
	}
	defer adm.Close()
	s.mu.Lock()
	s.admin = adm.Addr()
	s.mu.Unlock()

	defer context.AfterFunc(ctx, func() { s.Stop("the caller's context ended") })()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go s.watchSignals(sigs)
	hups := make(chan os.Signal, 1)
	signal.Notify(hups, syscall.SIGHUP)
	defer signal.Stop(hups)
	go s.watchHangups(hups)
	if len(reopenSignals) > 0 { // Notify with none would catch every signal
		reopens := make(chan os.Signal, 1)
		signal.Notify(reopens, reopenSignals...)
		defer signal.Stop(reopens)
		go s.watchReopens(reopens)
	}

	// The replicas are in the table before the control socket serves, so
	// that a scale call cannot race their creation.
	if w := opts.cpuShareWarning(opts.Replicas); w != "" {
		s.log.Warn(w)
	}
	s.log.Info("starting replicas", "replicas", opts.Replicas, "ports", portRange(opts.BasePort, opts.Replicas), "command", strings.Join(opts.Command, " "))
	initial := s.startInitial()
	proxyDone := make(chan error, 1)
	go func() { proxyDone <- s.bal.Serve(ln) }()
	ctl.Start(s, s.log)
	adm.SetDashboard(s.dashboard())
	adm.Start(s, s.metrics.Handler(), s.log)
	defer s.startSampling()()
	if err := s.waitInitial(initial); err != nil {
		s.stop(proxyDone)
		if errors.Is(err, errStoppedEarly) {
			s.log.Info("stopped before all replicas were ready")
			return nil // asked for (Ctrl-C, SIGTERM, down): not a failure
		}
		return err
	}
	s.log.Info("ready", "proxy", proxyAddr, "replicas", opts.Replicas, "policy", opts.Policy, "control", ctl.Path(), "admin", adm.Addr())

	select {
	case <-s.ctx.Done():
	case err := <-proxyDone:
		proxyDone <- err
		s.log.Error("proxy stopped", "error", err)
		s.Stop("the proxy stopped")
	}
	if opts.DrainDelay > 0 {
		// /readyz already answers 503; keep serving while load balancers
		// and orchestrator endpoints notice and stop sending.
		s.log.Info("draining: /readyz answers 503; serving on", "drain_delay", opts.DrainDelay)
		t := time.NewTimer(opts.DrainDelay)
		select {
		case <-t.C:
		case <-s.force.Done():
			t.Stop()
		}
	}
	s.log.Info("stopping", "stop_timeout", opts.StopTimeout)
	s.stop(proxyDone)
	s.log.Info("stopped")
	return nil
}

// Stop asks the instance to stop gracefully, for reason, and returns at
// once; Stopped is closed when it has.
func (s *Supervisor) Stop(reason string) {
	s.cancel(errors.New(reason))
}

// Stopped is closed once every replica has stopped.
func (s *Supervisor) Stopped() <-chan struct{} { return s.stopped }

func (s *Supervisor) watchSignals(sigs <-chan os.Signal) {
	select {
	case sig := <-sigs:
		s.log.Info("received signal; stopping gracefully (send it again to stop at once)", "signal", sig.String())
		s.Stop("signal " + sig.String())
	case <-s.stopped:
		return
	}
	select {
	case sig := <-sigs:
		s.log.Warn("received second signal; killing replicas", "signal", sig.String())
		s.forceStop()
	case <-s.stopped:
	}
}

// watchHangups runs a rolling restart on SIGHUP, as gunicorn reloads on it
// (but without its moment of lower capacity), and reopens the access log.
func (s *Supervisor) watchHangups(hups <-chan os.Signal) {
	for {
		select {
		case <-hups:
			s.log.Info("received SIGHUP; rolling restart")
			go s.reopenAccessLog()
			go func() {
				res, err := s.RollingRestart(s.ctx)
				switch {
				case err != nil:
					s.log.Warn("rolling restart not started", "error", err)
				case res.Error != "":
					s.log.Error("rolling restart stopped", "error", res.Error)
				}
			}()
		case <-s.stopped:
			return
		}
	}
}

// watchReopens reopens the access log on SIGUSR1, for log rotation.
func (s *Supervisor) watchReopens(sigs <-chan os.Signal) {
	for {
		select {
		case <-sigs:
			s.log.Info("received SIGUSR1; reopening the access log")
			s.reopenAccessLog()
		case <-s.stopped:
			return
		}
	}
}

var errStoppedEarly = errors.New("stopped before all replicas were ready")

// startInitial starts opts.Replicas replicas; they report on the
// returned channel once ready or failed. It returns nil if a stop came
// first.
func (s *Supervisor) startInitial() <-chan *slot {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx.Err() != nil {
		return nil
	}
	s.desired = s.opts.Replicas
	booted := make(chan *slot, s.opts.Replicas)
	for id := 1; id <= s.opts.Replicas; id++ {
		sl := newSlot(s, id, "")
		sl.booted = booted
		s.slots[id] = sl
		go sl.run()
	}
	return booted
}

// waitInitial waits until every initial replica is ready and returns nil,
// or returns the first failure as soon as it happens, whichever replica
// it is.
func (s *Supervisor) waitInitial(booted <-chan *slot) error {
	if booted == nil {
		return errStoppedEarly
	}
	for range s.opts.Replicas {
		select {
		case sl := <-booted:
			if err := sl.failure(); err != nil {
				return err
			}
		case <-s.ctx.Done():
			return errStoppedEarly
		}
	}
	return nil
}

// stop shuts the instance down: the proxy stops accepting and finishes the
// requests in flight (serving, if not nil, receives its end), then every
// replica is stopped, all within StopTimeout unless forced. A second call
// waits for the first to finish.
func (s *Supervisor) stop(serving <-chan error) {
	s.stopOnce.Do(func() {
		// Cancelled before the slots are listed under s.mu: Scale checks
		// it under s.mu, so a slot is either listed here or never made.
		s.Stop("stopping")
		deadline := time.Now().Add(s.opts.StopTimeout)
		ctx, cancel := context.WithDeadline(s.force, deadline)
		defer cancel()
		if err := s.bal.Shutdown(ctx); err != nil {
			s.log.Warn("requests still in flight at the stop deadline were cut off", "error", err)
		}
		if serving != nil {
			<-serving
		}

		slots := s.snapshot()
		cause := context.Cause(s.ctx)
		for _, sl := range slots {
			sl.requestStop(cause, deadline)
		}
		for _, sl := range slots {
			<-sl.done
		}
		close(s.stopped)
	})
}

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

package supervisor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/mattingctl/mattingctl/balancer"
	"github.com/mattingctl/mattingctl/replica"
)

// Supervisor runs one instance: the replicas, the proxy in front of them and
// the control API.
type Supervisor struct {
	opts    Options
	log     hclog.Logger
	out     *replica.Output
	bal     *balancer.Balancer
	started time.Time

	scaleMu   sync.Mutex // serialises Scale calls and rolling restarts
	restartMu sync.Mutex // held while a rolling restart runs

	mu      sync.Mutex    // guards slots, desired and ports
	slots   map[int]*slot // by replica id
	desired int
	ports   map[int]*slot // replica port -> the slot holding it

	starting chan struct{} // a token per replica starting; nil: no limit

	usage     *replica.Sampler // CPU and memory of every replica, one /proc scan a second
	metrics   *metrics
	adminAddr string // the admin listener's address, "" when off

	shutdown     chan struct{} // closed when a stop is requested
	shutdownOnce sync.Once
	force        chan struct{} // closed when the stop must skip its waits
	forceOnce    sync.Once
	stopped      chan struct{} // closed when every replica has stopped
}

// Run starts the instance described by opts and serves until ctx ends, the
// process receives SIGINT or SIGTERM, or a client calls `down`; a second
// signal skips the graceful waits. It returns nil after a clean stop, or the
// first error that prevented the instance from starting, in which case
// nothing it started is left running.
func Run(ctx context.Context, opts Options) error {
	opts, err := opts.withDefaults()
	if err != nil {
		return err
	}
	if err := replica.CheckCommand(opts.Command); err != nil {
		return err
	}
	s := &Supervisor{
		opts:     opts,
		log:      opts.Logger,
		out:      &replica.Output{Stdout: opts.Stdout, Stderr: opts.Stderr, Width: len("replica-") + len(strconv.Itoa(opts.Replicas))},
		started:  time.Now(),
		usage:    replica.NewSampler(time.Second),
		slots:    make(map[int]*slot),
		ports:    make(map[int]*slot),
		shutdown: make(chan struct{}),
		force:    make(chan struct{}),
		stopped:  make(chan struct{}),
	}
	if opts.StartConcurrency > 0 {
		s.starting = make(chan struct{}, opts.StartConcurrency)
	}
	s.metrics = newMetrics(s)
	policy, _ := balancer.NewPolicy(opts.Policy) // validated in withDefaults
	s.bal = balancer.New(balancer.Options{
		Policy:          policy,
		MaxBody:         opts.MaxBody,
		ClientTimeout:   opts.ClientTimeout,
		UpstreamTimeout: opts.UpstreamTimeout,
		ConnectTimeout:  opts.ConnectTimeout,
		MaxInflight:     opts.MaxInflight,
		QueueSize:       opts.Queue,
		QueueTimeout:    opts.QueueTimeout,
		Retries:         opts.Retries,
		Observer:        s.metrics,
		Logger:          s.log.Named("proxy"),
	})

	// Everything that can fail for a reason the user can fix is checked
	// before the first replica starts.
	control, err := listenControl(opts.StateDir, opts.Name)
	if err != nil {
		return err
	}
	defer control.close()
	proxyAddr := net.JoinHostPort(opts.Host, strconv.Itoa(opts.Port))
	ln, err := net.Listen("tcp", proxyAddr)
	if err != nil {
		return fmt.Errorf("proxy port %d: %s", opts.Port, portError(err))
	}
	defer ln.Close()
	if err := checkPorts(opts.BasePort, 1, opts.Replicas); err != nil {
		return err
	}
	adm, err := listenAdmin(opts.Admin)
	if err != nil {
		return err
	}
	defer adm.close()
	s.adminAddr = adm.addr()

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go s.watchSignals(ctx, sigs)
	hups := make(chan os.Signal, 1)
	signal.Notify(hups, syscall.SIGHUP)
	defer signal.Stop(hups)
	go s.watchHangups(hups)

	proxyDone := make(chan error, 1)
	go func() { proxyDone <- s.bal.Serve(ln) }()
	control.start(s)
	adm.start(s)

	s.log.Info("starting replicas", "replicas", opts.Replicas, "ports", portRange(opts.BasePort, opts.Replicas), "command", strings.Join(opts.Command, " "))
	if err := s.startInitial(); err != nil {
		s.stop(proxyDone)
		if errors.Is(err, errStoppedEarly) {
			s.log.Info("stopped before all replicas were ready")
			return nil // asked for (Ctrl-C, SIGTERM, down): not a failure
		}
		return err
	}
	s.log.Info("ready", "proxy", proxyAddr, "replicas", opts.Replicas, "policy", opts.Policy, "control", control.path, "admin", s.adminAddr)

	select {
	case <-s.shutdown:
	case err := <-proxyDone:
		proxyDone <- err
		s.log.Error("proxy stopped", "error", err)
		s.requestShutdown()
	}
	if opts.DrainDelay > 0 {
		// /readyz already answers 503; keep serving while load balancers
		// and orchestrator endpoints notice and stop sending.
		s.log.Info("draining: /readyz answers 503; serving on", "drain_delay", opts.DrainDelay)
		t := time.NewTimer(opts.DrainDelay)
		select {
		case <-t.C:
		case <-s.force:
			t.Stop()
		}
	}
	s.log.Info("stopping", "stop_timeout", opts.StopTimeout)
	s.stop(proxyDone)
	s.log.Info("stopped")
	return nil
}

func (s *Supervisor) watchSignals(ctx context.Context, sigs <-chan os.Signal) {
	select {
	case sig := <-sigs:
		s.log.Info("received signal; stopping gracefully (send it again to stop at once)", "signal", sig.String())
	case <-ctx.Done():
	case <-s.stopped:
		return
	}
	s.requestShutdown()
	select {
	case sig := <-sigs:
		s.log.Warn("received second signal; killing replicas", "signal", sig.String())
		s.forceOnce.Do(func() { close(s.force) })
	case <-s.stopped:
	}
}

// watchHangups runs a rolling restart on SIGHUP, as gunicorn reloads on it
// (but without its moment of lower capacity).
func (s *Supervisor) watchHangups(hups <-chan os.Signal) {
	for {
		select {
		case <-hups:
			s.log.Info("received SIGHUP; rolling restart")
			go func() {
				res, err := s.RollingRestart(context.Background())
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

func (s *Supervisor) requestShutdown() {
	s.shutdownOnce.Do(func() { close(s.shutdown) })
}

var errStoppedEarly = errors.New("stopped before all replicas were ready")

// startInitial starts opts.Replicas replicas and waits until every one is
// ready, or returns the first failure.
func (s *Supervisor) startInitial() error {
	s.mu.Lock()
	s.desired = s.opts.Replicas
	started := make([]*slot, 0, s.opts.Replicas)
	for id := 1; id <= s.opts.Replicas; id++ {
		sl := newSlot(s, id, "")
		s.slots[id] = sl
		started = append(started, sl)
		go sl.run()
	}
	s.mu.Unlock()
	for _, sl := range started {
		select {
		case <-sl.firstDone:
			if err := sl.failure(); err != nil {
				return err
			}
		case <-s.shutdown:
			return errStoppedEarly
		}
	}
	return nil
}

// stop shuts the instance down: the proxy stops accepting and finishes the
// requests in flight, then every replica is stopped, all within StopTimeout
// unless forced.
func (s *Supervisor) stop(proxyDone <-chan error) {
	s.requestShutdown()
	deadline := time.Now().Add(s.opts.StopTimeout)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	go func() {
		select {
		case <-s.force:
			cancel()
		case <-ctx.Done():
		}
	}()
	if err := s.bal.Shutdown(ctx); err != nil {
		s.log.Warn("requests still in flight at the stop deadline were cut off", "error", err)
	}
	<-proxyDone

	slots := s.snapshot()
	for _, sl := range slots {
		sl.requestStop(deadline)
	}
	for _, sl := range slots {
		select {
		case <-sl.done:
		case <-s.force:
			for _, k := range slots {
				k.kill()
			}
			<-sl.done
		}
	}
	close(s.stopped)
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

// snapshot returns the slots, by replica id, so that they can be worked on
// without holding s.mu.
func (s *Supervisor) snapshot() []*slot {
	s.mu.Lock()
	defer s.mu.Unlock()
	slots := make([]*slot, 0, len(s.slots))
	for _, sl := range s.slots {
		slots = append(slots, sl)
	}
	sort.Slice(slots, func(i, j int) bool { return slots[i].id < slots[j].id })
	return slots
}

// Status reports the instance and each replica.
func (s *Supervisor) Status() Status {
	slots := s.snapshot()
	s.mu.Lock()
	desired := s.desired
	s.mu.Unlock()
	stats := s.bal.Stats()
	st := Status{
		Admin:     s.adminAddr,
		Queued:    stats.Queued,
		QueueMax:  s.opts.Queue,
		Rejected:  stats.Rejected,
		Retried:   stats.Retried,
		Failed:    stats.Failed,
		Name:      s.opts.Name,
		Port:      s.opts.Port,
		Pid:       os.Getpid(),
		Desired:   desired,
		Command:   s.opts.Command,
		Policy:    s.opts.Policy,
		StartedAt: s.started.UTC(),
		Replicas:  make([]ReplicaStatus, 0, len(slots)),
	}
	for _, sl := range slots {
		r := sl.status()
		r.MaxInflight = s.opts.MaxInflight
		st.Replicas = append(st.Replicas, r)
	}
	return st
}

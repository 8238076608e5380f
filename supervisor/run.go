package supervisor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mattingctl/mattingctl/internal/admin"
	"github.com/mattingctl/mattingctl/internal/control"
	"github.com/mattingctl/mattingctl/replica"
)

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
// once. It returns only once every goroutine it started, and every one
// those started, has ended: the signal watchers, the proxy's Serve, the
// replicas' slots, the control socket's and the admin endpoints' servers.
func (s *Supervisor) Run(ctx context.Context) error {
	for _, svc := range s.all() {
		defer svc.out.Close()
		// After every other deferred call: the servers' Close waits for
		// their handlers, which may start goroutines of the group (a
		// scale, say).
		defer svc.bg.Wait()
	}
	opts := s.cfg()
	// Everything that can fail for a reason the user can fix is checked
	// before the first replica starts.
	ctl, err := control.Listen(opts.StateDir, opts.Name)
	if err != nil {
		return err
	}
	defer ctl.Close()
	// Holding the name, sweep what a killed instance of it left running
	// before binding any port that a leftover could hold.
	tracker, err := replica.OpenTracker(opts.StateDir, opts.Name, s.ilog.Named("processes"))
	if err != nil {
		return err
	}
	reaper := s.startReaper(tracker)
	defer func() {
		if err := tracker.Close(); err != nil {
			s.ilog.Error("cleaning up replica processes", "error", err)
		}
		reaper.Stop() // once the tracker has swept: a kill -9 until then is covered
	}()
	for _, svc := range s.all() {
		svc.tracker = tracker
	}
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
	for _, svc := range s.all() {
		o := svc.cfg()
		if err := svc.checkPorts(1, o.Replicas); err != nil {
			return svc.named(err)
		}
		if err := svc.prepareTasks(); err != nil {
			return svc.named(err)
		}
	}
	adm, err := admin.Listen(opts.Admin, opts.AdminMaxConns)
	if err != nil {
		return err
	}
	defer adm.Close()
	if err := s.keepToken(adm != nil); err != nil {
		return err
	}
	defer s.removeToken()
	for _, svc := range s.all() {
		svc.mu.Lock()
		svc.admin = adm.Addr()
		svc.mu.Unlock()
	}

	// From here on the instance is stopped before Run returns, whatever
	// the path: the watchers below end only then. (Every return below
	// stops it already; this is a no-op then.)
	defer s.stop(nil)
	s.bg.Go(func() { s.watchContext(ctx) })
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	s.bg.Go(func() { s.watchSignals(sigs) })
	hups := make(chan os.Signal, 1)
	signal.Notify(hups, syscall.SIGHUP)
	defer signal.Stop(hups)
	s.bg.Go(func() { s.watchHangups(hups) })
	if len(reopenSignals) > 0 { // Notify with none would catch every signal
		reopens := make(chan os.Signal, 1)
		signal.Notify(reopens, reopenSignals...)
		defer signal.Stop(reopens)
		s.bg.Go(func() { s.watchReopens(reopens) })
	}

	// The replicas are in the table before the control socket serves, so
	// that a scale call cannot race their creation.
	// Every service's replicas report on one channel, so that the first
	// failure of any ends the start at once.
	total := 0
	for _, svc := range s.all() {
		total += svc.cfg().Replicas
	}
	booted := make(chan *slot, total)
	for _, svc := range s.all() {
		o := svc.cfg()
		if w := o.cpuShareWarning(o.Replicas); w != "" {
			svc.log.Warn(w)
		}
		svc.log.Info("starting replicas", "replicas", o.Replicas, "ports", portRange(o.BasePort, o.Replicas), "command", strings.Join(o.Command, " "))
		svc.startInitialInto(booted)
	}
	proxyDone := make(chan error, 1)
	s.bg.Go(func() { proxyDone <- s.bal.Serve(ln) })
	for _, svc := range s.others() {
		routed := make(chan struct{})
		svc.bg.Go(func() { svc.bal.ServeRouted(routed) })
		defer close(routed) // once s.stop has waited for the proxy's Serve
	}
	if len(s.services) > 0 {
		// The dashboard shows every service together. Its actions
		// (scale, restart) are off: they name no service.
		d := s.dashboard()
		d.History, d.Instance = s.instHistory, instance{s}
		d.ActionsOff = "the instance runs several services: scale or restart one with mattingctl scale --service NAME"
		ctl.Start(instance{s}, s.ilog)
		adm.SetDashboard(d)
		adm.Start(instance{s}, s.instMetrics.Handler(), s.ilog)
	} else {
		ctl.Start(s, s.ilog)
		adm.SetDashboard(s.dashboard())
		adm.Start(s, s.metrics.Handler(), s.ilog)
	}
	for _, svc := range s.all() {
		defer svc.startSampling()()
	}
	if s.instHistory != nil {
		defer sampling(s.instHistory, s.instanceSample)()
	}
	if err := s.waitInitialOf(booted, total); err != nil {
		s.stopping()
		s.stop(proxyDone)
		if errors.Is(err, errStoppedEarly) {
			s.ilog.Info("stopped before all replicas were ready")
			return nil // asked for (Ctrl-C, SIGTERM, down): not a failure
		}
		return err
	}
	// URLs first, to click: the proxy's, and the dashboard's.
	ready := []any{"proxy", s.proxyURL}
	if s.allInterfaces {
		ready = append(ready, "listening", "on all interfaces")
	}
	if adm != nil {
		ready = append(ready, "dashboard", dashboardURL(opts.Admin, adm.Addr()), "with_token", dashboardCommand(opts.Name))
	}
	if len(s.services) > 0 {
		ready = append(ready, "services", len(s.services))
	} else {
		ready = append(ready, "replicas", opts.Replicas, "policy", opts.Policy)
	}
	ready = append(ready, "control", ctl.Path())
	s.ilog.Info("ready", ready...)
	if opts.OnReady != nil {
		opts.OnReady()
	}
	for _, svc := range s.all() {
		if o := svc.cfg(); o.Autoscaled() {
			svc.log.Info("autoscaling", "min", o.Replicas, "max", o.MaxReplicas, "scale_up_delay", o.ScaleUpDelay, "scale_down_delay", o.ScaleDownDelay)
			svc.bg.Go(svc.autoscale)
		}
	}

	select {
	case <-s.ctx.Done():
	case err := <-proxyDone:
		proxyDone <- err
		s.ilog.Error("proxy stopped", "error", err)
		s.Stop("the proxy stopped")
	}
	opts = s.cfg() // a reload may have changed them
	s.stopping()
	if opts.DrainDelay > 0 {
		// /readyz already answers 503; keep serving while load balancers
		// and orchestrator endpoints notice and stop sending.
		s.ilog.Info("draining: /readyz answers 503; serving on", "drain_delay", opts.DrainDelay)
		t := time.NewTimer(opts.DrainDelay)
		select {
		case <-t.C:
		case <-s.force.Done():
			t.Stop()
		}
	}
	s.ilog.Info("stopping", "stop_timeout", opts.StopTimeout)
	s.stop(proxyDone)
	s.ilog.Info("stopped")
	return nil
}

var errStoppedEarly = errors.New("stopped before all replicas were ready")

// stopping tells OnStopping, if set, that the stop has begun.
func (s *Supervisor) stopping() {
	if opts := s.cfg(); opts.OnStopping != nil {
		opts.OnStopping()
	}
}

// startInitial starts opts.Replicas replicas; they report on the
// returned channel once ready or failed. It returns nil if a stop came
// first.
func (s *Supervisor) startInitial() <-chan *slot {
	booted := make(chan *slot, s.cfg().Replicas)
	if !s.startInitialInto(booted) {
		return nil
	}
	return booted
}

// startInitialInto is startInitial reporting on booted, which has room
// for every replica. It returns false if a stop came first.
func (s *Supervisor) startInitialInto(booted chan *slot) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx.Err() != nil {
		return false
	}
	s.desired = s.cfg().Replicas
	for id := 1; id <= s.cfg().Replicas; id++ {
		sl := newSlot(s, id, "")
		sl.booted = booted
		s.slots[id] = sl
		s.bg.Go(sl.run)
	}
	return true
}

// waitInitial waits until every initial replica is ready and returns nil,
// or returns the first failure as soon as it happens, whichever replica
// it is.
func (s *Supervisor) waitInitial(booted <-chan *slot) error {
	if booted == nil {
		return errStoppedEarly
	}
	return s.waitInitialOf(booted, s.cfg().Replicas)
}

// waitInitialOf is waitInitial for n replicas, of any service, reporting
// on booted; a failure names its service, of several.
func (s *Supervisor) waitInitialOf(booted <-chan *slot, n int) error {
	for range n {
		select {
		case sl := <-booted:
			if err := sl.failure(); err != nil {
				return sl.sup.named(err)
			}
		case <-s.ctx.Done():
			return errStoppedEarly
		}
	}
	return nil
}

// named is err, naming s's service when it is one of several.
func (s *Supervisor) named(err error) error {
	if s.service == "" || errors.Is(err, errStoppedEarly) {
		return err
	}
	return fmt.Errorf("service %s: %w", s.service, err)
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
		deadline := time.Now().Add(s.cfg().StopTimeout)
		ctx, cancel := context.WithDeadline(s.force, deadline)
		defer cancel()
		// The first service's server serves every service's requests:
		// once it has shut down, none is in flight in any.
		if err := s.bal.Shutdown(ctx); err != nil {
			s.ilog.Warn("requests still in flight at the stop deadline were cut off", "error", err)
		}
		if serving != nil {
			<-serving
		}
		for _, svc := range s.others() {
			_ = svc.bal.Shutdown(ctx)
		}

		var slots []*slot
		for _, svc := range s.all() {
			slots = append(slots, svc.snapshot()...)
		}
		cause := context.Cause(s.ctx)
		for _, sl := range slots {
			sl.requestStop(cause, deadline)
		}
		for _, sl := range slots {
			<-sl.done
		}
		for _, svc := range s.others() {
			close(svc.stopped)
		}
		close(s.stopped)
	})
}

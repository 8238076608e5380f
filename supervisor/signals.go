package supervisor

import (
	"context"
	"os"
	"strings"
)

// The instance's signals: SIGINT and SIGTERM stop it (a second one skips
// the graceful waits), SIGHUP reloads the config file and reopens the
// access log, SIGUSR1 reopens the access log (reopen_unix.go). Each is
// watched by a goroutine of Run's group that ends once the instance has
// stopped.

// watchContext stops the instance when ctx, Run's, ends.
func (s *Supervisor) watchContext(ctx context.Context) {
	select {
	case <-ctx.Done():
		s.Stop("the caller's context ended")
	case <-s.stopped:
	}
}

// watchSignals stops the instance on the first of sigs, and skips the
// graceful waits on the second.
func (s *Supervisor) watchSignals(sigs <-chan os.Signal) {
	select {
	case sig := <-sigs:
		s.ilog.Info("received signal; stopping gracefully (send it again to stop at once)", "signal", sig.String())
		s.Stop("signal " + sig.String())
	case <-s.stopped:
		return
	}
	select {
	case sig := <-sigs:
		s.ilog.Warn("received second signal; killing replicas", "signal", sig.String())
		s.forceStop()
	case <-s.stopped:
	}
}

// watchHangups reloads on SIGHUP, as nginx and HAProxy do: the config
// file (-f) is read again and what changed is applied (reload.go). It
// also reopens the access log and re-reads the TLS certificate, as it
// did when it made a rolling restart; `mattingctl restart` makes one now.
func (s *Supervisor) watchHangups(hups <-chan os.Signal) {
	for {
		select {
		case <-hups:
			s.ilog.Info("received SIGHUP; reloading the config file and reopening the access log")
			s.bg.Go(s.reopenAccessLog)
			s.bg.Go(func() { _ = s.reloadCertificate() })
			s.bg.Go(s.reloadOnSignal)
		case <-s.stopped:
			return
		}
	}
}

// reloadOnSignal is Reload for SIGHUP, which has no one to answer but
// the log.
func (s *Supervisor) reloadOnSignal() {
	if src := s.cfg().Source; src == nil || src.File == "" {
		s.ilog.Info("SIGHUP: no config file (-f) to read again, no setting changed; mattingctl restart rolls the replicas")
		s.reloadMu.Lock()
		s.reloading()() // a service manager that sent it waits for its end
		s.reloadMu.Unlock()
		return
	}
	reload := s.Reload
	if len(s.services) > 0 {
		reload = instance{s}.Reload // every service's
	}
	res, err := reload(s.ctx)
	switch {
	case err != nil && strings.HasPrefix(err.Error(), "settings applied"):
		s.ilog.Error("reload: settings applied, but not all of their effect", "error", err)
	case err != nil:
		s.ilog.Error("reload not made", "error", err)
	case len(res.Changes) == 0:
		// reconfigure logged it
	case res.Restart != nil && res.Restart.Error != "":
		s.ilog.Error("reload: rolling restart stopped", "error", res.Restart.Error)
	}
}

// watchReopens reopens the access log on SIGUSR1, for log rotation.
func (s *Supervisor) watchReopens(sigs <-chan os.Signal) {
	for {
		select {
		case <-sigs:
			s.ilog.Info("received SIGUSR1; reopening the access log")
			s.reopenAccessLog()
		case <-s.stopped:
			return
		}
	}
}

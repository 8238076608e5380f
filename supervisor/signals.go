package supervisor

import (
	"context"
	"os"
)

// The instance's signals: SIGINT and SIGTERM stop it (a second one skips
// the graceful waits), SIGHUP makes a rolling restart and reopens the
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
			s.bg.Go(s.reopenAccessLog)
			s.bg.Go(func() {
				res, err := s.RollingRestart(s.ctx)
				switch {
				case err != nil:
					s.log.Warn("rolling restart not started", "error", err)
				case res.Error != "":
					s.log.Error("rolling restart stopped", "error", res.Error)
				}
			})
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

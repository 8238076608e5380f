package supervisor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/mattingctl/mattingctl/replica"
)

// loadWarmup reads the --warmup file once, at start: a file that cannot be
// read or is not a warm-up request stops `up` before anything starts. Nil
// means no warm-up.
func (o *ReplicaOptions) loadWarmup() (*replica.Warmup, error) {
	if o.Warmup == "" {
		return nil, nil
	}
	w, err := replica.LoadWarmup(o.Warmup)
	if err != nil {
		return nil, fmt.Errorf("--warmup %s: %w", o.Warmup, err)
	}
	return w, nil
}

// warmUp sends the warm-up request to inc, which has just become ready,
// --warmup-count times one after another, before it gets any traffic. A
// request that fails, or answers 5xx, means inc is not ready. Each request
// is bounded by --upstream-timeout, as a client's; all of them, and the
// readiness wait before, by --ready-timeout from the process's start.
func (s *slot) warmUp(inc *incarnation) error {
	w, n := s.sup.cfg().warmup, s.sup.cfg().WarmupCount
	if w == nil {
		return nil
	}
	readyTimeout, upstreamTimeout := s.sup.cfg().ReadyTimeout, s.sup.cfg().UpstreamTimeout
	ctx, cancel := context.WithDeadline(s.ctx, inc.proc.StartedAt().Add(readyTimeout))
	defer cancel()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(inc.port))
	s.log.Info("replica answers; warming it up", "pid", inc.proc.Pid(), "request", w.String(), "count", n)
	begun := time.Now()
	for i := 1; i <= n; i++ {
		reqCtx, cancelReq := context.WithTimeout(ctx, upstreamTimeout)
		t := time.Now()
		code, err := w.Send(reqCtx, addr, s.sup.cfg().UpstreamProtocol == ProtocolH2C)
		reqErr := reqCtx.Err()
		cancelReq()
		if err != nil {
			what := fmt.Sprintf("warm-up request %d of %d (%s)", i, n, w)
			select {
			case <-inc.proc.Done(): // it died of the request, most likely
				return fmt.Errorf("failed its %s: %w", what, &replica.ErrExited{Exit: inc.proc.Exit()})
			case <-time.After(100 * time.Millisecond):
			}
			switch {
			case s.stopping():
				return context.Cause(s.ctx)
			case ctx.Err() != nil:
				return fmt.Errorf("did not finish its warm-up within --ready-timeout %s (%s was under way)", readyTimeout, what)
			case errors.Is(reqErr, context.DeadlineExceeded):
				return fmt.Errorf("failed its %s: no answer within --upstream-timeout %s", what, upstreamTimeout)
			}
			return fmt.Errorf("failed its %s: %v", what, err)
		}
		if code >= 400 {
			s.log.Warn("warm-up request answered a client error; is the --warmup file right?", "pid", inc.proc.Pid(),
				"request", w.String(), "status", code)
		}
		s.log.Debug("warm-up request done", "pid", inc.proc.Pid(), "n", i, "status", code, "took", time.Since(t).Round(time.Millisecond))
	}
	s.log.Info("replica warmed up", "pid", inc.proc.Pid(), "requests", n, "took", time.Since(begun).Round(time.Millisecond))
	return nil
}

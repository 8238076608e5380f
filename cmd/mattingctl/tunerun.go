package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/mattingctl/mattingctl/balancer"
	"github.com/mattingctl/mattingctl/internal/tune"
	"github.com/mattingctl/mattingctl/replica"
	"github.com/mattingctl/mattingctl/supervisor"
)

// tuneRunner runs each layout as an instance of the supervisor, in this
// process, on free 127.0.0.1 ports and a name of its own (tune-PID-N), so
// that it never meets a running instance. In-process rather than a child
// `mattingctl up`: Run returns only once every replica has stopped, its
// error is the one `up` would print (a command not found, a replica never
// ready), the memory and learned caps are read from Status without a
// socket, and Ctrl-C reaches it as it reaches `up`; the instance's reaper
// covers a kill -9 of tune as it does of `up`.
type tuneRunner struct {
	base    supervisor.Options
	request tune.Request
	log     hclog.Logger
	n       int // layouts run, for the names
}

var _ tune.Runner = (*tuneRunner)(nil)

// runner builds the runner: `up`'s defaults and the flags tune passes on.
func (opts *tuneOptions) runner(req tune.Request) (*tuneRunner, error) {
	level := hclog.LevelFromString(opts.LogLevel)
	if level == hclog.NoLevel {
		return nil, fmt.Errorf("--log-level %q is not one of off, error, warn, info, debug, trace", opts.LogLevel)
	}
	o := supervisor.DefaultOptions()
	o.Command, o.Env, o.Health, o.Warmup, o.ReadyTimeout = opts.Command, opts.Env, opts.Health, opts.Warmup, opts.ReadyTimeout
	o.Host, o.Admin, o.Reaper = "127.0.0.1", supervisor.AdminOff, opts.Self
	// A layout's load ends before it stops: nothing is left to drain but
	// the requests the clients gave up at the end of the window.
	o.StopTimeout = 10 * time.Second
	// Every client of the sweep is on 127.0.0.1: a cap per address would
	// refuse the load (429) rather than measure it.
	o.MaxClientUploads = 0
	o.Logger = hclog.New(&hclog.LoggerOptions{Name: "mattingctl", Level: level, Output: opts.ErrOut, TimeFormat: time.TimeOnly})
	if level <= hclog.Debug {
		o.Stdout, o.Stderr = opts.ErrOut, opts.ErrOut
	}
	return &tuneRunner{base: o, request: req, log: o.Logger}, nil
}

// Run starts l's instance, waits until every replica is ready, drives the
// load at it while sampling the replicas' memory, and stops it. It returns
// once the instance has stopped.
func (r *tuneRunner) Run(ctx context.Context, l tune.Layout, load tune.Load) (tune.Result, error) {
	r.n++
	o := r.base
	o.Name = fmt.Sprintf("tune-%d-%d", os.Getpid(), r.n)
	o.Replicas = l.Replicas
	if l.CPUs != "" {
		allowed, err := replica.AllowedCPUs()
		if err != nil {
			return tune.Result{}, fmt.Errorf("--cpus: %w", err)
		}
		if o.CPUs, err = parseCPUs(l.CPUs, l.Replicas, allowed); err != nil {
			return tune.Result{}, err
		}
	}
	if l.Inflight == tune.Auto {
		o.MaxInflight, o.AdaptiveInflight = 0, balancer.DefaultAdaptiveInflight
	} else {
		o.MaxInflight, o.AdaptiveInflight = l.Inflight, balancer.InflightBounds{}
	}
	o.Queue = max(o.Queue, load.Clients)
	var err error
	if o.Port, o.BasePort, err = freePorts(l.Replicas); err != nil {
		return tune.Result{}, err
	}
	s, err := supervisor.New(o)
	if err != nil {
		return tune.Result{}, err
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- s.Run(runCtx) }()
	// Whatever happens below, the instance has stopped when Run returns.
	stopped := false
	defer func() {
		if !stopped {
			stop()
			<-done
		}
	}()
	if err := waitReady(ctx, s, l.Replicas, done); err != nil {
		stopped = true // waitReady saw done
		return tune.Result{}, err
	}

	sampleCtx, endSampling := context.WithCancel(ctx)
	rss := make(chan uint64, 1)
	go func() { rss <- sampleRSS(sampleCtx, s) }()
	m, err := tune.Drive(ctx, "http://"+net.JoinHostPort(o.Host, strconv.Itoa(o.Port)), r.request, load)
	endSampling()
	res := tune.Result{Measurement: m, RSS: <-rss}
	if err != nil {
		return tune.Result{}, err
	}
	for _, rs := range s.Status().Replicas {
		if l.Inflight == tune.Auto {
			res.Limits = append(res.Limits, rs.Limit)
		}
	}
	stop()
	stopped = true
	if err := <-done; err != nil {
		return tune.Result{}, err
	}
	return res, nil
}

// waitReady waits until n replicas are ready, or the instance ends (its
// error, or one saying it stopped), or ctx does.
func waitReady(ctx context.Context, s *supervisor.Supervisor, n int, done <-chan error) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			if err == nil {
				err = errors.New("the instance stopped before its replicas were ready")
				if ctx.Err() != nil {
					err = ctx.Err()
				}
			}
			return err
		case <-tick.C:
			if s.Readiness().Ready >= n {
				return nil
			}
		}
	}
}

// sampleRSS returns the most resident memory the replicas held together,
// sampled every second (the supervisor's sampler caches a second) until
// ctx ends.
func sampleRSS(ctx context.Context, s *supervisor.Supervisor) uint64 {
	var most uint64
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		var sum uint64
		for _, r := range s.Status().Replicas {
			sum += r.RSSBytes
		}
		most = max(most, sum)
		select {
		case <-ctx.Done():
			return most
		case <-tick.C:
		}
	}
}

// freePorts finds a free 127.0.0.1 port for the proxy and n consecutive
// free ones for the replicas after it. Another program may take one
// before the instance binds it; the instance then fails naming the port.
func freePorts(n int) (proxy, base int, err error) {
	for range 50 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, 0, fmt.Errorf("finding a free port on 127.0.0.1: %w", err)
		}
		proxy = ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if proxy+n > 65535 {
			continue
		}
		free := true
		for p := proxy + 1; p <= proxy+n && free; p++ {
			l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
			if err != nil {
				free = false
				continue
			}
			l.Close()
		}
		if free {
			return proxy, proxy + 1, nil
		}
	}
	return 0, 0, fmt.Errorf("found no %d free consecutive ports on 127.0.0.1 for the replicas", n+1)
}

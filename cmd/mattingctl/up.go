package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"

	"github.com/mattingctl/mattingctl/balancer"
	"github.com/mattingctl/mattingctl/internal/daemon"
	"github.com/mattingctl/mattingctl/supervisor"
)

type upOptions struct {
	supervisor.Options
	// Out and ErrOut receive the replicas' output and mattingctl's log.
	Out, ErrOut io.Writer
	LogLevel    string
	LogFormat   string
	GPUs        string
	Detach      bool
	File        string
	// Argv is the command line, for the background copy that -d starts.
	Argv []string
	// queueTimeoutSet is whether --queue-timeout was given (queuetimeout.go).
	queueTimeoutSet bool
	// CPUs is --cpus as given; resolveCPUs (cpus.go) reads it.
	CPUs string
}

func newUpCmd(f *factory, g *globalOptions, runF func(*upOptions) error) *cobra.Command {
	opts := &upOptions{Out: f.Out, ErrOut: f.ErrOut}
	cmd := &cobra.Command{
		Use:   "up [flags] -- COMMAND [ARG...]",
		Short: "Run replicas of COMMAND behind the proxy, in the foreground",
		Long: `Run N replicas of COMMAND on consecutive ports behind a least-connection
proxy, in the foreground. Each replica gets PORT and MATTINGCTL_REPLICA in
its environment, and {port} and {replica} in its arguments are replaced:

  mattingctl up -r 4 -- python3 app.py
  mattingctl up -r 4 --health /health -- gunicorn -b 127.0.0.1:{port} app:app

Ctrl-C or SIGTERM stops gracefully; a second one stops at once.`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Command = args
			warnMisplaced(opts.ErrOut, cmd, args)
			if opts.File != "" {
				if err := applyConfig(cmd, opts); err != nil {
					return err
				}
			}
			opts.defaultQueueTimeout()
			opts.Name = g.Name
			opts.Argv = os.Args[1:]
			if runF != nil {
				return runF(opts)
			}
			return upRun(opts)
		},
	}
	// Flags after the command belong to the command: `up -r 2 python3 app.py -v`.
	cmd.Flags().SetInterspersed(false)
	fl := cmd.Flags()
	opts.Replicas = 1
	fl.VarP(intFlag{&opts.Replicas, 1}, "replicas", "r", "number of replicas")
	opts.Port = supervisor.DefaultPort
	fl.VarP(intFlag{&opts.Port, 1}, "port", "p", "port the proxy listens on")
	fl.StringVar(&opts.Host, "host", "", "address the proxy listens on (default all interfaces)")
	fl.Var(intFlag{&opts.BasePort, 0}, "base-port", "port of replica 1; replica k gets base-port+k-1 (default 0: port+1)")
	fl.StringVar(&opts.Health, "health", "", "path a replica must answer 2xx on before it gets traffic, or grpc[:SERVICE] for the gRPC health check (default: its port accepts TCP)")
	opts.ReadyTimeout = supervisor.DefaultReadyTimeout
	fl.Var(durationFlag{&opts.ReadyTimeout, false}, "ready-timeout", "how long a replica may take to become ready (more than 0)")
	opts.StopTimeout = supervisor.DefaultStopTimeout
	fl.Var(durationFlag{&opts.StopTimeout, false}, "stop-timeout", "how long a graceful stop waits for requests and replicas before killing them (more than 0)")
	fl.StringVar(&opts.Policy, "policy", supervisor.DefaultPolicy, fmt.Sprintf("balancing policy: %v", balancer.PolicyNames()))
	opts.MaxBody = balancer.DefaultMaxBody
	fl.Var(&positiveSize{sizeValue{&opts.MaxBody}}, "max-body", "largest request body accepted; larger gets 413 (more than 0)")
	opts.ClientTimeout = balancer.DefaultClientTimeout
	fl.Var(durationFlag{&opts.ClientTimeout, false}, "client-timeout", "limit on reading a client's headers, and on each pause in its body (more than 0)")
	opts.UpstreamTimeout = balancer.DefaultUpstreamTimeout
	fl.Var(durationFlag{&opts.UpstreamTimeout, false}, "upstream-timeout", "limit on waiting for a replica's response (more than 0)")
	opts.MaxInflight = supervisor.DefaultMaxInflight
	fl.Var(intFlag{&opts.MaxInflight, 0}, "max-inflight", "requests in flight per replica; the excess waits in the proxy's queue (0: no cap)")
	opts.Queue = supervisor.DefaultQueue
	fl.Var(intFlag{&opts.Queue, 0}, "queue", "requests that may wait for a replica; past it 503 (0: no queue)")
	fl.Var(queueTimeoutFlag{durationFlag{&opts.QueueTimeout, true}, &opts.queueTimeoutSet}, "queue-timeout",
		"longest wait for a busy replica before 503; a request predicted to wait longer gets 503 at once (default: the --upstream-timeout value; 0: no limit)")
	opts.Retries = supervisor.DefaultRetries
	fl.Var(intFlag{&opts.Retries, 0}, "retries", "other replicas to try when one refuses or drops a request before answering (0: off)")
	fl.Var(&weightsFlag{p: &opts.Weights}, "weights", "per-replica weights for --policy weighted, each at least 1, e.g. 2,1,1,1")
	opts.ConnectTimeout = balancer.DefaultConnectTimeout
	fl.Var(durationFlag{&opts.ConnectTimeout, false}, "connect-timeout", "limit on connecting to a replica (more than 0)")
	fl.StringArrayVarP(&opts.Env, "env", "e", nil, "extra KEY=VALUE for every replica (repeatable)")
	fl.StringVar(&opts.GPUs, "gpus", "", "GPUs handed to replicas round-robin as CUDA_VISIBLE_DEVICES: 0,1,2,3 or all (from nvidia-smi -L)")
	fl.Var(intFlag{&opts.StartConcurrency, 0}, "start-concurrency", "replicas starting (loading their model) at once (default 0: all at once)")
	fl.Var(intFlag{&opts.MaxRequests, 0}, "max-requests", "replace a replica after this many requests, without dropping any (default 0: never)")
	fl.Var(intFlag{&opts.MaxRequestsJitter, 0}, "max-requests-jitter", "add 0..N to --max-requests per process, so replicas do not recycle together (default 0: none)")
	fl.Var(&sizeValue{&opts.MaxMemory}, "max-memory", "replace a replica whose processes' resident memory passes SIZE, e.g. 4GiB (default 0: never)")
	fl.StringVarP(&opts.File, "file", "f", "", "read flags and the command from a YAML file; flags given here override it")
	fl.BoolVarP(&opts.Detach, "detach", "d", false, "run in the background: return once every replica is ready; the log goes to a file (mattingctl logs)")
	fl.StringVar(&opts.LogLevel, "log-level", "info", "log level: trace, debug, info, warn, error")
	fl.StringVar(&opts.LogFormat, "log-format", "text", "log format: text, or json for machines (hclog's JSON)")
	fl.StringVar(&opts.Admin, "admin", "", "admin listener for /metrics, /livez, /readyz (default 127.0.0.1 and the proxy port minus one; none: off)")
	opts.MinReady = 1
	fl.Var(intFlag{&opts.MinReady, 1}, "min-ready", "ready replicas needed for /readyz to answer 200 (1 to --replicas)")
	fl.Var(durationFlag{&opts.DrainDelay, true}, "drain-delay", "after SIGTERM/SIGINT, keep serving this long with /readyz 503 before stopping (default 0: stop at once)")
	fl.IntVar(&opts.MaxConns, "max-conns", 0, "client connections open at once; past it new ones wait in the kernel's backlog (0: ulimit -n minus 64+(replicas+1)*(max-inflight+8) kept for replicas, at most 65536)")
	fl.DurationVar(&opts.HealthInterval, "health-interval", supervisor.DefaultHealthInterval, "check every ready replica's liveness (--health, else a TCP connect) this often (0: off)")
	fl.DurationVar(&opts.HealthTimeout, "health-timeout", supervisor.DefaultHealthTimeout, "limit on one liveness check")
	fl.IntVar(&opts.UnhealthyAfter, "unhealthy-after", supervisor.DefaultUnhealthyAfter, "failed liveness checks in a row that take a replica out of rotation, as unhealthy; one passing check brings it back")
	fl.DurationVar(&opts.RestartUnhealthyAfter, "restart-unhealthy-after", supervisor.DefaultRestartUnhealthyAfter, "kill and restart a replica unhealthy this long (0: at once)")
	opts.MaxBuffer, opts.MaxDiskBuffer = balancer.DefaultMaxBuffer(), balancer.DefaultMaxDiskBuffer
	fl.Var(&bufferSizeValue{&opts.MaxBuffer}, "max-buffer", "request bodies held in memory in all, at most a quarter of RAM by default; past it they go to --buffer-dir (0: none in memory)")
	fl.Var(&bufferSizeValue{&opts.MaxDiskBuffer}, "max-disk-buffer", "request bodies held on disk, in all; past it and --max-buffer, 503 (0: none on disk)")
	fl.StringVar(&opts.BufferDir, "buffer-dir", "", "directory for request bodies that do not fit in memory (default mattingctl-NAME-HASH in the system temp directory)")
	opts.ResponseBuffer = balancer.DefaultResponseBuffer
	fl.Var(&bufferSizeValue{&opts.ResponseBuffer}, "response-buffer", "read a response with a Content-Length up to SIZE from the replica ahead of a slow client, in --max-buffer, so the replica is free once it has sent it; streams pass through (0: off)")
	fl.Var(intFlag{&opts.MaxUpgraded, 0}, "max-upgraded", "WebSocket (upgraded) connections open at once, over all replicas; past it 503. They hold no --max-inflight slot (0: no cap)")
	fl.StringVar(&opts.TLSCert, "tls-cert", "", "PEM certificate (chain) file: the proxy port speaks HTTPS, HTTP/2 by ALPN; re-read on SIGHUP and restart (needs --tls-key)")
	fl.StringVar(&opts.TLSKey, "tls-key", "", "PEM private key file of --tls-cert")
	opts.AccessLog = supervisor.AccessLogOff
	fl.Var(accessLogFlag{&opts.AccessLog}, "access-log", "write a line per request to PATH (appended to, reopened on SIGHUP), or to stdout with - (off: none)")
	opts.AccessLogFormat = "combined"
	fl.StringVar(&opts.AccessLogFormat, "access-log-format", "combined", "access log format: combined (nginx's, then bytes in, duration, replica, attempts, time queued) or json")
	fl.StringVar(&opts.CPUs, "cpus", "", "pin each replica to CPUs of its own and set OMP_NUM_THREADS and the like to their number: auto (split mattingctl's CPUs evenly), or sets for replica 1, 2, ... separated by commas, CPUs in a set joined by +: 0-3,4-7 (Linux)")
	fl.StringVar(&opts.Warmup, "warmup", "", "JSON file of a request (method, path, headers, body or body_file) sent to every new replica process once ready, before it gets traffic")
	opts.WarmupCount = 1
	fl.Var(intFlag{&opts.WarmupCount, 1}, "warmup-count", "times the --warmup request is sent to each new process, one after another (at least 1)")
	opts.UpstreamProtocol = supervisor.DefaultUpstreamProtocol
	fl.Var(choiceFlag{&opts.UpstreamProtocol, []string{supervisor.ProtocolHTTP1, supervisor.ProtocolH2C}}, "upstream-protocol",
		"what the proxy speaks to the replicas: http1, or h2c (HTTP/2 with prior knowledge, as gRPC servers speak it)")
	fl.StringVar(&opts.AdminToken, "admin-token", "", "bearer token the dashboard's actions (scale, rolling restart) need, at least 16 characters; without it they are offered only on a loopback --admin")
	return cmd
}

func upRun(opts *upOptions) error {
	// The background copy runs the same command line, -d and -f included;
	// the environment tells it that it is the copy.
	if err := opts.resolveCPUs(); err != nil {
		return err
	}
	if opts.Detach && !daemon.IsDetachedCopy() {
		return upDetached(opts)
	}
	level := hclog.LevelFromString(opts.LogLevel)
	if level == hclog.NoLevel {
		return fmt.Errorf("--log-level %q is not one of trace, debug, info, warn, error", opts.LogLevel)
	}
	if opts.LogFormat != "text" && opts.LogFormat != "json" {
		return fmt.Errorf("--log-format %q is not text or json", opts.LogFormat)
	}
	// Neither the replicas nor the log may block on a stdout or stderr
	// that stops reading, nor die of a closed pipe there.
	out := newUpOutput(opts.Out, opts.ErrOut, hclog.LoggerOptions{
		Name:       "mattingctl",
		Level:      level,
		TimeFormat: time.TimeOnly,
		JSONFormat: opts.LogFormat == "json",
	})
	defer out.Close()
	opts.Logger = out.log
	opts.Stdout, opts.Stderr = out.out, out.errOut
	if opts.GPUs != "" {
		gpus, err := parseGPUs(opts.GPUs)
		if err != nil {
			return err
		}
		opts.Options.GPUs = gpus
	}
	setMemoryLimit(opts.MaxBuffer)
	return supervisor.Run(context.Background(), opts.Options)
}

func upDetached(opts *upOptions) error {
	// Check what can be checked here, so that the error comes at once.
	if err := supervisor.Validate(opts.Options); err != nil {
		return err
	}
	st, err := daemon.Detach(daemon.DetachOptions{
		Name: opts.Name,
		Args: opts.Argv,
		Wait: opts.ReadyTimeout + time.Minute,
	})
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(opts.Out, "instance %s started in the background: pid %d, %d replicas ready, proxy port %d\nlogs: mattingctl logs --name %s -f; stop: mattingctl down --name %s\n",
		st.Name, st.Pid, len(st.Replicas), st.Port, st.Name, st.Name)
	return err
}

// applyConfig sets, from the config file, every flag the command line did
// not set (flags override the file), and the command if none was given
// after --.
func applyConfig(cmd *cobra.Command, opts *upOptions) error {
	settings, err := loadConfig(opts.File)
	if err != nil {
		return err
	}
	for _, s := range settings {
		if s.Key == "command" {
			if len(opts.Command) == 0 {
				opts.Command = s.Values
			}
			continue
		}
		fl := cmd.Flags().Lookup(s.Key)
		if fl == nil || s.Key == "file" || s.Key == "help" {
			return fmt.Errorf("%s: line %d: %w %q (the keys are up's long flag names and command)", opts.File, s.Line, errNoSuchSetting, s.Key)
		}
		if fl.Changed {
			continue
		}
		values := s.Values
		if t := fl.Value.Type(); !strings.HasSuffix(t, "Slice") && !strings.HasSuffix(t, "Array") {
			if err := oneValue(t, values); err != nil {
				return fmt.Errorf("%s: line %d: %s: %v", opts.File, s.Line, s.Key, err)
			}
			values = []string{strings.Join(values, ",")}
		}
		for _, v := range values {
			if err := fl.Value.Set(v); err != nil {
				return fmt.Errorf("%s: line %d: %s: %v", opts.File, s.Line, s.Key, err)
			}
		}
	}
	return nil
}

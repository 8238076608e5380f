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
			if opts.File != "" {
				if err := applyConfig(cmd, opts); err != nil {
					return err
				}
			}
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
	fl.IntVarP(&opts.Replicas, "replicas", "r", 1, "number of replicas")
	fl.IntVarP(&opts.Port, "port", "p", supervisor.DefaultPort, "port the proxy listens on")
	fl.StringVar(&opts.Host, "host", "", "address the proxy listens on (default all interfaces)")
	fl.IntVar(&opts.BasePort, "base-port", 0, "port of replica 1; replica k gets base-port+k-1 (default port+1)")
	fl.StringVar(&opts.Health, "health", "", "path a replica must answer 2xx on before it gets traffic (default: its port accepts TCP)")
	fl.DurationVar(&opts.ReadyTimeout, "ready-timeout", supervisor.DefaultReadyTimeout, "how long a replica may take to become ready")
	fl.DurationVar(&opts.StopTimeout, "stop-timeout", supervisor.DefaultStopTimeout, "how long a graceful stop waits for requests and replicas before killing them")
	fl.StringVar(&opts.Policy, "policy", supervisor.DefaultPolicy, fmt.Sprintf("balancing policy: %v", balancer.PolicyNames()))
	fl.Var(&sizeValue{&opts.MaxBody}, "max-body", "largest request body accepted; larger gets 413 (default 50MiB)")
	fl.DurationVar(&opts.ClientTimeout, "client-timeout", balancer.DefaultClientTimeout, "limit on reading a client's headers, and on each pause in its body")
	fl.DurationVar(&opts.UpstreamTimeout, "upstream-timeout", balancer.DefaultUpstreamTimeout, "limit on waiting for a replica's response")
	fl.IntVar(&opts.MaxInflight, "max-inflight", supervisor.DefaultMaxInflight, "requests in flight per replica; the excess waits in the proxy's queue (0: no cap)")
	fl.IntVar(&opts.Queue, "queue", supervisor.DefaultQueue, "requests that may wait for a replica; past it 503 (0: no queue)")
	fl.DurationVar(&opts.QueueTimeout, "queue-timeout", supervisor.DefaultQueueTimeout, "longest wait in the queue before 503")
	fl.IntVar(&opts.Retries, "retries", supervisor.DefaultRetries, "other replicas to try when one refuses or drops a request before answering (0: off)")
	fl.IntSliceVar(&opts.Weights, "weights", nil, "per-replica weights for --policy weighted, e.g. 2,1,1,1")
	fl.DurationVar(&opts.ConnectTimeout, "connect-timeout", balancer.DefaultConnectTimeout, "limit on connecting to a replica")
	fl.StringArrayVarP(&opts.Env, "env", "e", nil, "extra KEY=VALUE for every replica (repeatable)")
	fl.StringVar(&opts.GPUs, "gpus", "", "GPUs handed to replicas round-robin as CUDA_VISIBLE_DEVICES: 0,1,2,3 or all (from nvidia-smi -L)")
	fl.IntVar(&opts.StartConcurrency, "start-concurrency", 0, "replicas starting (loading their model) at once (0: all)")
	fl.IntVar(&opts.MaxRequests, "max-requests", 0, "replace a replica after this many requests, without dropping any (0: never)")
	fl.IntVar(&opts.MaxRequestsJitter, "max-requests-jitter", 0, "add 0..N to --max-requests per process, so replicas do not recycle together")
	fl.Var(&sizeValue{&opts.MaxMemory}, "max-memory", "replace a replica whose processes' resident memory passes SIZE, e.g. 4GiB (default never)")
	fl.StringVarP(&opts.File, "file", "f", "", "read flags and the command from a YAML file; flags given here override it")
	fl.BoolVarP(&opts.Detach, "detach", "d", false, "run in the background: return once every replica is ready; the log goes to a file (mattingctl logs)")
	fl.StringVar(&opts.LogLevel, "log-level", "info", "log level: trace, debug, info, warn, error")
	fl.StringVar(&opts.LogFormat, "log-format", "text", "log format: text, or json for machines (hclog's JSON)")
	fl.StringVar(&opts.Admin, "admin", "", "admin listener for /metrics, /livez, /readyz (default 127.0.0.1 and the proxy port minus one; none: off)")
	fl.IntVar(&opts.MinReady, "min-ready", 1, "ready replicas needed for /readyz to answer 200")
	fl.DurationVar(&opts.DrainDelay, "drain-delay", 0, "after SIGTERM/SIGINT, keep serving this long with /readyz 503 before stopping")
	return cmd
}

func upRun(opts *upOptions) error {
	// The background copy runs the same command line, -d and -f included;
	// the environment tells it that it is the copy.
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
	fmt.Fprintf(opts.Out, "instance %s started in the background: pid %d, %d replicas ready, proxy port %d\n", st.Name, st.Pid, len(st.Replicas), st.Port)
	_, err = fmt.Fprintf(opts.Out, "logs: mattingctl logs --name %s -f; stop: mattingctl down --name %s\n", st.Name, st.Name)
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

package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"

	"github.com/mattingctl/mattingctl/balancer"
	"github.com/mattingctl/mattingctl/supervisor"
)

type upOptions struct {
	supervisor.Options
	LogLevel  string
	LogFormat string
	GPUs      string
	Detach    bool
	File      string
	// Argv is the command line, for the background copy that -d starts.
	Argv []string
}

func newUpCmd(g *globalOptions, runF func(*upOptions) error) *cobra.Command {
	opts := &upOptions{}
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
	f := cmd.Flags()
	f.IntVarP(&opts.Replicas, "replicas", "r", 1, "number of replicas")
	f.IntVarP(&opts.Port, "port", "p", supervisor.DefaultPort, "port the proxy listens on")
	f.StringVar(&opts.Host, "host", "", "address the proxy listens on (default all interfaces)")
	f.IntVar(&opts.BasePort, "base-port", 0, "port of replica 1; replica k gets base-port+k-1 (default port+1)")
	f.StringVar(&opts.Health, "health", "", "path a replica must answer 2xx on before it gets traffic (default: its port accepts TCP)")
	f.DurationVar(&opts.ReadyTimeout, "ready-timeout", supervisor.DefaultReadyTimeout, "how long a replica may take to become ready")
	f.DurationVar(&opts.StopTimeout, "stop-timeout", supervisor.DefaultStopTimeout, "how long a graceful stop waits for requests and replicas before killing them")
	f.StringVar(&opts.Policy, "policy", supervisor.DefaultPolicy, fmt.Sprintf("balancing policy: %v", balancer.PolicyNames()))
	f.Var(&sizeValue{&opts.MaxBody}, "max-body", "largest request body accepted; larger gets 413 (default 50MiB)")
	f.DurationVar(&opts.ClientTimeout, "client-timeout", balancer.DefaultClientTimeout, "limit on reading a client's headers, and on each pause in its body")
	f.DurationVar(&opts.UpstreamTimeout, "upstream-timeout", balancer.DefaultUpstreamTimeout, "limit on waiting for a replica's response")
	f.IntVar(&opts.MaxInflight, "max-inflight", supervisor.DefaultMaxInflight, "requests in flight per replica; the excess waits in the proxy's queue (0: no cap)")
	f.IntVar(&opts.Queue, "queue", supervisor.DefaultQueue, "requests that may wait for a replica; past it 503 (0: no queue)")
	f.DurationVar(&opts.QueueTimeout, "queue-timeout", supervisor.DefaultQueueTimeout, "longest wait in the queue before 503")
	f.IntVar(&opts.Retries, "retries", supervisor.DefaultRetries, "other replicas to try when one refuses or drops a request before answering (0: off)")
	f.IntSliceVar(&opts.Weights, "weights", nil, "per-replica weights for --policy weighted, e.g. 2,1,1,1")
	f.DurationVar(&opts.ConnectTimeout, "connect-timeout", balancer.DefaultConnectTimeout, "limit on connecting to a replica")
	f.StringArrayVarP(&opts.Env, "env", "e", nil, "extra KEY=VALUE for every replica (repeatable)")
	f.StringVar(&opts.GPUs, "gpus", "", "GPUs handed to replicas round-robin as CUDA_VISIBLE_DEVICES: 0,1,2,3 or all (from nvidia-smi -L)")
	f.IntVar(&opts.StartConcurrency, "start-concurrency", 0, "replicas starting (loading their model) at once (0: all)")
	f.IntVar(&opts.MaxRequests, "max-requests", 0, "replace a replica after this many requests, without dropping any (0: never)")
	f.IntVar(&opts.MaxRequestsJitter, "max-requests-jitter", 0, "add 0..N to --max-requests per process, so replicas do not recycle together")
	f.Var(&sizeValue{&opts.MaxMemory}, "max-memory", "replace a replica whose processes' resident memory passes SIZE, e.g. 4GiB (default never)")
	f.StringVarP(&opts.File, "file", "f", "", "read flags and the command from a YAML file; flags given here override it")
	f.BoolVarP(&opts.Detach, "detach", "d", false, "run in the background: return once every replica is ready; the log goes to a file (mattingctl logs)")
	f.StringVar(&opts.LogLevel, "log-level", "info", "log level: trace, debug, info, warn, error")
	f.StringVar(&opts.LogFormat, "log-format", "text", "log format: text, or json for machines (hclog's JSON)")
	f.StringVar(&opts.Admin, "admin", "", "admin listener for /metrics, /livez, /readyz (default 127.0.0.1 and the proxy port minus one; none: off)")
	f.IntVar(&opts.MinReady, "min-ready", 1, "ready replicas needed for /readyz to answer 200")
	f.DurationVar(&opts.DrainDelay, "drain-delay", 0, "after SIGTERM/SIGINT, keep serving this long with /readyz 503 before stopping")
	return cmd
}

func upRun(opts *upOptions) error {
	// The background copy runs the same command line, -d and -f included;
	// the environment tells it that it is the copy.
	if opts.Detach && !supervisor.IsDetachedCopy() {
		return upDetached(opts)
	}
	level := hclog.LevelFromString(opts.LogLevel)
	if level == hclog.NoLevel {
		return fmt.Errorf("--log-level %q is not one of trace, debug, info, warn, error", opts.LogLevel)
	}
	if opts.LogFormat != "text" && opts.LogFormat != "json" {
		return fmt.Errorf("--log-format %q is not text or json", opts.LogFormat)
	}
	opts.Logger = hclog.New(&hclog.LoggerOptions{
		Name:       "mattingctl",
		Level:      level,
		Output:     os.Stderr,
		TimeFormat: time.TimeOnly,
		JSONFormat: opts.LogFormat == "json",
	})
	opts.Stdout, opts.Stderr = os.Stdout, os.Stderr
	if opts.GPUs != "" {
		gpus, err := supervisor.ParseGPUs(opts.GPUs)
		if err != nil {
			return err
		}
		opts.Options.GPUs = gpus
	}
	return supervisor.Run(context.Background(), opts.Options)
}

// sizeValue is a flag holding a byte size such as 50MiB.
type sizeValue struct{ p *int64 }

func (v *sizeValue) String() string {
	if v.p == nil || *v.p == 0 {
		return ""
	}
	return supervisor.FormatBytes(uint64(*v.p))
}

func (v *sizeValue) Set(s string) error {
	n, err := supervisor.ParseSize(s)
	if err != nil {
		return err
	}
	*v.p = n
	return nil
}

func (v *sizeValue) Type() string { return "size" }

func upDetached(opts *upOptions) error {
	// Check what can be checked here, so that the error comes at once.
	if err := supervisor.Validate(opts.Options); err != nil {
		return err
	}
	st, err := supervisor.Detach(supervisor.DetachOptions{
		Name: opts.Name,
		Args: opts.Argv,
		Wait: opts.ReadyTimeout + time.Minute,
	})
	if err != nil {
		return err
	}
	fmt.Printf("instance %s started in the background: pid %d, %d replicas ready, proxy port %d\n", st.Name, st.Pid, len(st.Replicas), st.Port)
	fmt.Printf("logs: mattingctl logs --name %s -f; stop: mattingctl down --name %s\n", st.Name, st.Name)
	return nil
}

// applyConfig sets, from the config file, every flag the command line did
// not set (flags override the file), and the command if none was given
// after --.
func applyConfig(cmd *cobra.Command, opts *upOptions) error {
	settings, err := supervisor.LoadConfig(opts.File)
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
			return fmt.Errorf("%s: line %d: %w %q (the keys are up's long flag names and command)", opts.File, s.Line, supervisor.ErrNoSuchSetting, s.Key)
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

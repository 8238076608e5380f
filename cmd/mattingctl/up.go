package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/mattingctl/mattingctl/balancer"
	"github.com/mattingctl/mattingctl/internal/control"
	"github.com/mattingctl/mattingctl/internal/daemon"
	"github.com/mattingctl/mattingctl/internal/sdnotify"
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
	// FileContent is the config file's content once read: at start by
	// applyConfig, or given by a reload (reload.go).
	FileContent []byte
	fileRead    bool
	// Argv is the command line, for the background copy that -d starts.
	Argv []string
	// CPUs is --cpus as given; resolveCPUs (cpus.go) reads it.
	CPUs string
	// service and serviceSets are a set's settings for the config file's
	// service called service, which applyServices applies over its entry
	// (reload.go); empty when the settings are the instance's.
	service     string
	serviceSets []string
}

func newUpCmd(f *factory, g *globalOptions, runF func(*upOptions) error) *cobra.Command {
	return newUpCmdWith(f, g, defaultUpOptions(f), runF)
}

// defaultUpOptions are up's options before its flags are parsed.
func defaultUpOptions(f *factory) *upOptions {
	return &upOptions{
		Options:   supervisor.DefaultOptions(),
		Out:       f.Out,
		ErrOut:    f.ErrOut,
		LogLevel:  "info",
		LogFormat: "text",
	}
}

// newUpCmdWith is newUpCmd with its flags bound to opts, which a reload
// gives with the config file's content read already (reload.go).
func newUpCmdWith(f *factory, g *globalOptions, opts *upOptions, runF func(*upOptions) error) *cobra.Command {
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
				if err := applyServices(opts); err != nil {
					return err
				}
			}
			opts.Name = g.Name
			opts.Argv = os.Args[1:]
			opts.Reaper = f.Self
			if runF != nil {
				return runF(opts)
			}
			return upRun(opts)
		},
	}
	// Flags after the command belong to the command: `up -r 2 python3 app.py -v`.
	cmd.Flags().SetInterspersed(false)
	addUpFlags(cmd.Flags(), opts)
	cmd.SetUsageFunc(groupedUsage)
	return cmd
}

// addUpFlags registers up's flags, bound to opts, by heading of `up
// --help` (upheadings.go). Each flag's default is the value opts holds
// already: supervisor.DefaultOptions for the instance's.
func addUpFlags(fl *pflag.FlagSet, o *upOptions) {
	inGroup(fl, headingReplicas, func() {
		fl.VarP(replicasFlag{&o.Replicas, &o.MaxReplicas}, "replicas", "r", "number of replicas, or MIN:MAX to scale between those with the load, starting at MIN")
		fl.Var(durationFlag{&o.ScaleUpDelay, false}, "scale-up-delay", "with --replicas MIN:MAX: how long requests must wait in the queue before replicas are added (more than 0)")
		fl.Var(durationFlag{&o.ScaleDownDelay, false}, "scale-down-delay", "with --replicas MIN:MAX: how long the load must fit in fewer replicas before one is removed (more than 0)")
		fl.Var(autoInt{&o.BasePort, true}, "base-port", "port of replica 1; replica k gets base-port+k-1 (auto or 0: --port plus 1)")
		fl.StringArrayVarP(&o.Env, "env", "e", o.Env, "extra KEY=VALUE for every replica (repeatable)")
		fl.Var(intFlag{&o.StartConcurrency, 0}, "start-concurrency", "replicas starting (loading their model) at once (0: all at once)")
		fl.Var(durationFlag{&o.ReadyTimeout, false}, "ready-timeout", "how long a replica may take to become ready (more than 0)")
		fl.Var(durationFlag{&o.StopTimeout, false}, "stop-timeout", "how long a graceful stop waits for requests and replicas before killing them (more than 0)")
		fl.StringVar(&o.Warmup, "warmup", o.Warmup, "JSON file of a request (method, path, headers, body or body_file) sent to every new replica process once ready, before it gets traffic")
		fl.Var(intFlag{&o.WarmupCount, 1}, "warmup-count", "times the --warmup request is sent to each new process, one after another (at least 1)")
		fl.BoolVarP(&o.Detach, "detach", "d", o.Detach, "run in the background: return once every replica is ready; the log goes to a file (mattingctl logs)")
		fl.StringVarP(&o.File, "file", "f", o.File, "read flags and the command from a YAML file; flags given here override it")
	})
	inGroup(fl, headingProxy, func() {
		fl.VarP(intFlag{&o.Port, 1}, "port", "p", "port the proxy listens on")
		fl.StringVar(&o.Host, "host", o.Host, "address the proxy listens on (empty: all interfaces)")
		fl.StringVar(&o.Policy, "policy", o.Policy, fmt.Sprintf("balancing policy: %v", balancer.PolicyNames()))
		fl.Var(&weightsFlag{p: &o.Weights}, "weights", "per-replica weights for --policy weighted, each at least 1, e.g. 2,1,1,1")
		fl.Var(inflightFlag{&o.MaxInflight, &o.AdaptiveInflight}, "max-inflight", "requests in flight per replica; the excess waits in the proxy's queue (auto: learned per replica from its response times, between 1 and 64; auto:MIN-MAX: between those; 0: no cap)")
		fl.Var(intFlag{&o.Queue, 0}, "queue", "requests that may wait for a replica; past it 503 (0: no queue)")
		fl.Var(autoDuration{&o.QueueTimeout}, "queue-timeout",
			"longest wait for a busy replica before 503; a request predicted to wait longer gets 503 at once (auto: the --upstream-timeout value; 0: no limit)")
		fl.Var(intFlag{&o.Retries, 0}, "retries", "times a request is sent again when a replica refuses, resets or drops it before answering; every delivery counts, and two that kill or reset a replica end it with 502 (0: off)")
		fl.StringVar(&o.Batch.Path, "batch-path", o.Batch.Path, "batch the JSON POSTs to this path: up to --batch-max of them, waiting at most --batch-wait, go to a replica as one POST to --batch-endpoint (empty: no batching)")
		fl.StringVar(&o.Batch.Endpoint, "batch-endpoint", o.Batch.Endpoint, "the replicas' path that takes a JSON array of --batch-path's request bodies and answers a JSON array of their answers, in order")
		fl.Var(intFlag{&o.Batch.Max, 2}, "batch-max", fmt.Sprintf("most requests in a batch (2 to %d)", balancer.MaxBatchMax))
		fl.Var(durationFlag{&o.Batch.Wait, false}, "batch-wait", fmt.Sprintf("longest a request waits for others to join its batch (more than 0, at most %s)", balancer.MaxBatchWait))
		fl.Var(durationFlag{&o.Quarantine, true}, "quarantine", "refuse at once, with the same 502, a request (method, path and body) whose deliveries killed or reset replicas twice, for this long (0: never)")
		fl.Var(durationFlag{&o.ConnectTimeout, false}, "connect-timeout", "limit on connecting to a replica (more than 0)")
		fl.Var(durationFlag{&o.UpstreamTimeout, false}, "upstream-timeout", "limit on waiting for a replica's response headers, and on each pause in its body (more than 0)")
		fl.Var(durationFlag{&o.ClientTimeout, false}, "client-timeout", "limit on reading a client's headers, and on each pause in its body (more than 0)")
		fl.Var(durationFlag{&o.SendTimeout, false}, "send-timeout", "limit on each write to a client that takes nothing; past it the response is broken off (more than 0)")
		fl.Var(&positiveSize{sizeValue{&o.MaxBody}}, "max-body", "largest request body accepted; larger gets 413 (more than 0)")
		fl.Var(autoInt{&o.MaxConns, false}, "max-conns", "client connections open at once; past it new ones wait in the kernel's backlog (auto or 0: from ulimit -n, once descriptors are kept for the replicas, room to scale, the admin and control listeners and --max-upgraded; at most 65536)")
		fl.Var(&autoSize{&o.MaxBuffer, o.MaxBuffer}, "max-buffer", "request bodies held in memory in all; past it they go to --buffer-dir (auto: a quarter of RAM, at most 1GiB; 0: none in memory)")
		fl.Var(&sizeValue{&o.MaxDiskBuffer}, "max-disk-buffer", "request bodies held on disk, in all; past it and --max-buffer, 503 (0: none on disk)")
		fl.Var(intFlag{&o.MaxClientUploads, 0}, "max-client-uploads", "request bodies one client address may be sending at once; past it 429 (0: no cap)")
		fl.Var(autoSizeOf{&o.MaxClientBuffer}, "max-client-buffer", "request bodies one client address may hold in memory and on disk, in all; past it 429 (auto: half of --max-buffer plus --max-disk-buffer; 0: no cap)")
		fl.Var(&sizeValue{&o.MinUploadRate}, "min-upload-rate", "slowest a request body may arrive, in bytes a second on average, once --upload-grace has passed; slower gets 408 (0: no minimum)")
		fl.Var(durationFlag{&o.UploadGrace, true}, "upload-grace", "time a request body may take before --min-upload-rate applies (0: none)")
		fl.Var(autoString{&o.BufferDir, "dir"}, "buffer-dir", "directory for request bodies that do not fit in memory (auto: mattingctl-NAME-HASH in the system temp directory)")
		fl.Var(&sizeValue{&o.ResponseBuffer}, "response-buffer", "memory per client connection for responses read from the replica ahead of a slow client, in --max-buffer; the rest goes to --buffer-dir, so the replica is free once it has sent the response; streams pass through (0: off)")
		fl.Var(autoInt{&o.MaxUpgraded, true}, "max-upgraded", "WebSocket (upgraded) connections open at once, over all replicas; past it 503. They hold no --max-inflight slot, and two file descriptors each (auto or 0: a third of --max-conns, within ulimit -n; with --max-inflight 0, --max-conns)")
	})
	inGroup(fl, headingHealth, func() {
		fl.StringVar(&o.Health, "health", o.Health, "path a replica must answer 2xx on before it gets traffic, or grpc[:SERVICE] for the gRPC health check (empty: its port accepting TCP is enough)")
		fl.DurationVar(&o.HealthInterval, "health-interval", o.HealthInterval, "check every ready replica's liveness (--health, else a TCP connect) this often (0: off)")
		fl.DurationVar(&o.HealthTimeout, "health-timeout", o.HealthTimeout, "limit on one liveness check")
		fl.IntVar(&o.UnhealthyAfter, "unhealthy-after", o.UnhealthyAfter, "failed liveness checks in a row that take a replica out of rotation, as unhealthy; one passing check brings it back")
		fl.DurationVar(&o.RestartUnhealthyAfter, "restart-unhealthy-after", o.RestartUnhealthyAfter, "kill and restart a replica unhealthy this long (0: at once)")
		fl.Var(intFlag{&o.MinReady, 1}, "min-ready", "ready replicas needed for /readyz to answer 200 (1 to --replicas)")
		fl.Var(durationFlag{&o.DrainDelay, true}, "drain-delay", "after SIGTERM/SIGINT, keep serving this long with /readyz 503 before stopping (0: stop at once)")
	})
	inGroup(fl, headingRecycling, func() {
		fl.Var(intFlag{&o.MaxRequests, 0}, "max-requests", "replace a replica after this many requests, without dropping any (0: never)")
		fl.Var(intFlag{&o.MaxRequestsJitter, 0}, "max-requests-jitter", "add 0..N to --max-requests per process, so replicas do not recycle together (0: none)")
		fl.Var(&sizeValue{&o.MaxMemory}, "max-memory", "replace a replica whose processes' resident memory passes SIZE, e.g. 4GiB (0: never)")
	})
	inGroup(fl, headingPlacement, func() {
		fl.StringVar(&o.CPUs, "cpus", o.CPUs, "pin each replica to CPUs of its own and set OMP_NUM_THREADS and the like to their number: auto (split mattingctl's CPUs evenly), or sets for replica 1, 2, ... separated by commas, CPUs in a set joined by +: 0-3,4-7 (Linux)")
		fl.StringVar(&o.GPUs, "gpus", o.GPUs, "GPUs handed to replicas round-robin as CUDA_VISIBLE_DEVICES: 0,1,2,3 or all (from nvidia-smi -L)")
	})
	inGroup(fl, headingProtocols, func() {
		fl.Var(choiceFlag{&o.UpstreamProtocol, []string{supervisor.ProtocolHTTP1, supervisor.ProtocolH2C}}, "upstream-protocol",
			"what the proxy speaks to the replicas: http1, or h2c (HTTP/2 with prior knowledge, as gRPC servers speak it)")
		fl.StringVar(&o.TLSCert, "tls-cert", o.TLSCert, "PEM certificate (chain) file: the proxy port speaks HTTPS, HTTP/2 by ALPN; re-read on SIGHUP and restart (needs --tls-key)")
		fl.StringVar(&o.TLSKey, "tls-key", o.TLSKey, "PEM private key file of --tls-cert")
	})
	inGroup(fl, headingObservability, func() {
		fl.StringVar(&o.LogLevel, "log-level", o.LogLevel, "log level: trace, debug, info, warn, error")
		fl.StringVar(&o.LogFormat, "log-format", o.LogFormat, "log format: text, or json for machines (hclog's JSON)")
		fl.Var(accessLogFlag{&o.AccessLog}, "access-log", "write a line per request to PATH (appended to, reopened on SIGHUP and SIGUSR1), or to stdout with - (off: none)")
		fl.StringVar(&o.AccessLogFormat, "access-log-format", o.AccessLogFormat, "access log format: combined (nginx's, then bytes in, duration, replica, attempts, time queued) or json")
		fl.Var(&sizeValue{&o.OutputRate}, "output-rate", "each replica's output (stdout and stderr) passed on per second; past it lines are dropped and counted (0: no bound)")
	})
	inGroup(fl, headingAdmin, func() {
		fl.Var(autoString{&o.Admin, "address"}, "admin", "admin listener for /metrics, /livez, /readyz, HOST:PORT (auto: 127.0.0.1 and --port minus 1; none: off)")
		fl.Var(autoString{&o.AdminToken, "token"}, "admin-token", "bearer token the dashboard's actions (scale, rolling restart) need, on every address, at least 16 characters; kept in the state directory, mode 0600; mattingctl dashboard prints the URL with it (auto: generated at start)")
		fl.Var(intFlag{&o.AdminMaxConns, 1}, "admin-max-conns", "connections to the admin listener open at once; past it new ones wait in the kernel's backlog, so it cannot take the descriptors the proxy and replicas need (at least 1)")
	})
}

// finishUpOptions turns what up's flags hold into the supervisor's
// options: --cpus and --gpus parsed, the test hooks applied.
func finishUpOptions(opts *upOptions) error {
	if err := opts.resolveCPUs(); err != nil {
		return err
	}
	if err := applyTestHooks(&opts.Options); err != nil {
		return err
	}
	if opts.GPUs != "" {
		gpus, err := parseGPUs(opts.GPUs)
		if err != nil {
			return err
		}
		opts.Options.GPUs = gpus
	}
	return nil
}

func upRun(opts *upOptions) error {
	// The background copy runs the same command line, -d and -f included;
	// the environment tells it that it is the copy.
	if err := finishUpOptions(opts); err != nil {
		return err
	}
	if opts.Detach && !daemon.IsDetachedCopy() {
		if sdnotify.Enabled() {
			return errDetachUnderSystemd
		}
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
	opts.Source = upSource(opts)
	setMemoryLimit(opts.MaxBuffer)
	return runInstance(opts.Options, out.log)
}

func upDetached(opts *upOptions) error {
	// Check what can be checked here, so that the error comes at once.
	if err := supervisor.Validate(opts.Options); err != nil {
		return err
	}
	st, err := daemon.Detach(daemon.DetachOptions{
		Name:     opts.Name,
		Args:     opts.Argv,
		Wait:     opts.ReadyTimeout + time.Minute,
		Progress: opts.ErrOut,
	})
	if errors.Is(err, daemon.ErrInterrupted) {
		return &exitError{code: 130, err: err}
	}
	if err != nil {
		return err
	}
	_, err = io.WriteString(opts.Out, formatDetached(st))
	return err
}

// formatDetached is what up -d prints once its instance is ready: where
// its proxy and dashboard are, and how to see its log and stop it.
func formatDetached(st control.Status) string {
	var b strings.Builder
	fmt.Fprintf(&b, "instance %s started in the background: pid %d, %d replicas ready\n", st.Name, st.Pid, len(st.Replicas))
	fmt.Fprintf(&b, "proxy: %s", st.URL)
	if control.AllInterfaces(st.Host) {
		b.WriteString(" (listening on all interfaces)")
	}
	b.WriteByte('\n')
	if st.Admin != "" {
		fmt.Fprintf(&b, "dashboard: http://%s/ (with its token: mattingctl dashboard --name %s)\n", st.Admin, st.Name)
	}
	fmt.Fprintf(&b, "logs: mattingctl logs --name %s -f; stop: mattingctl down --name %s\n", st.Name, st.Name)
	return b.String()
}

// applyConfig sets, from the config file, every flag the command line did
// not set (flags override the file), and the command if none was given
// after --.
func applyConfig(cmd *cobra.Command, opts *upOptions) error {
	if !opts.fileRead {
		b, err := os.ReadFile(opts.File)
		if err != nil {
			return fmt.Errorf("config file: %w", err)
		}
		opts.FileContent, opts.fileRead = b, true
	}
	settings, err := parseConfig(opts.File, opts.FileContent)
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
		if err := setFromFile(fl, s); err != nil {
			return fmt.Errorf("%s: line %d: %s: %v", opts.File, s.Line, s.Key, err)
		}
	}
	return nil
}

// setFromFile sets fl to the values of s, an entry of a config file.
func setFromFile(fl *pflag.Flag, s setting) error {
	values := s.Values
	if t := fl.Value.Type(); !strings.HasSuffix(t, "Slice") && !strings.HasSuffix(t, "Array") {
		if err := oneValue(t, values); err != nil {
			return err
		}
		values = []string{strings.Join(values, ",")}
	}
	for _, v := range values {
		if err := fl.Value.Set(v); err != nil {
			return err
		}
	}
	return nil
}

// notPerService are up's flags that a service of several cannot set: the
// instance's (supervisor.InstanceWide), and those of up itself.
var notPerService = append([]string{"file", "help", "detach", "log-level", "log-format"}, supervisor.InstanceWide...)

// applyServices turns the config file's services list, if any, into
// opts.Services: each service starts from the settings the file's top
// level and the command line give, and its own entry's apply on top.
func applyServices(opts *upOptions) error {
	entries, err := parseServices(opts.File, opts.FileContent)
	if err != nil || len(entries) == 0 {
		return err
	}
	if len(opts.Command) > 0 {
		return fmt.Errorf("%s: it lists services, each with its command, so up takes no command (%s)", opts.File, strings.Join(opts.Command, " "))
	}
	var services []upOptions
	var sharedGPUs []int // the services given the top's --gpus, by index
	// What the CPUs and GPUs are shared out by: each service's most
	// replicas as the file gives them, so that a set on one service
	// (replicas=3) moves no other's share.
	var weights []int
	for _, e := range entries {
		so := *opts
		// The top's base-port is where the first service's block starts;
		// a service's own moves its block.
		so.Command, so.Services, so.BasePort = e.Command, nil, 0
		fl := pflag.NewFlagSet(e.Name, pflag.ContinueOnError)
		addUpFlags(fl, &so)
		for _, st := range e.Settings {
			f := fl.Lookup(st.Key)
			if f == nil {
				return fmt.Errorf("%s: line %d: %w %q (a service's keys are name, route, strip_prefix, command and up's long flag names)", opts.File, st.Line, errNoSuchSetting, st.Key)
			}
			if slices.Contains(notPerService, st.Key) {
				return fmt.Errorf("%s: line %d: %s is the instance's, not a service's: set it at the top of the file", opts.File, st.Line, st.Key)
			}
			if err := setFromFile(f, st); err != nil {
				return fmt.Errorf("%s: line %d: %s: %v", opts.File, st.Line, st.Key, err)
			}
		}
		weights = append(weights, so.MostReplicas())
		if e.Name == opts.service {
			if err := applySets(fl, &so, opts.serviceSets, notPerService); err != nil {
				return err
			}
		}
		services = append(services, so)
		if opts.GPUs != "" && so.GPUs == opts.GPUs && !slices.ContainsFunc(e.Settings, func(st setting) bool { return st.Key == "gpus" }) {
			sharedGPUs = append(sharedGPUs, len(services)-1)
		}
	}
	if opts.service != "" && !slices.ContainsFunc(entries, func(e serviceEntry) bool { return e.Name == opts.service }) {
		return fmt.Errorf("%s lists no service %s", opts.File, opts.service)
	}
	if err := splitAutoCPUs(services, weights); err != nil {
		return err
	}
	var shared []*upOptions
	var sharedWeights []int
	for _, i := range sharedGPUs {
		shared, sharedWeights = append(shared, &services[i]), append(sharedWeights, weights[i])
	}
	if err := splitGPUs(opts.GPUs, shared, sharedWeights); err != nil {
		return err
	}
	for i, e := range entries {
		so := &services[i]
		if err := finishUpOptions(so); err != nil {
			return fmt.Errorf("%s: service %s: %w", opts.File, e.Name, err)
		}
		opts.Services = append(opts.Services, supervisor.Service{Name: e.Name, Route: e.Route, StripPrefix: e.StripPrefix, Options: so.Options})
	}
	return nil
}

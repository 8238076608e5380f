package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/shirou/gopsutil/v3/mem"
	"github.com/spf13/cobra"

	"github.com/mattingctl/mattingctl/internal/tune"
	"github.com/mattingctl/mattingctl/replica"
)

// tuneOptions are `mattingctl tune`'s flags and what it runs.
type tuneOptions struct {
	// Out receives the table and the up line; ErrOut the progress lines
	// and the log.
	Out, ErrOut io.Writer
	Command     []string
	// Request is --request, a file in the --warmup format; empty means
	// the --warmup file's request.
	Request string
	// Warmup, Health, ReadyTimeout and Env are passed on to every layout
	// as `up` takes them, and to the up line.
	Warmup       string
	Health       string
	ReadyTimeout time.Duration
	Env          []string
	// Duration is each layout's measurement, Budget the whole sweep's.
	Duration, Budget time.Duration
	// Remeasure is how many more times the finalists are measured after
	// the sweep (tune.Config.Remeasure); zero means none.
	Remeasure int
	// Replicas and Inflight, when set, are the replica counts and the
	// in-flight values tried instead of the defaults (tune.ReplicaCounts,
	// tune.DefaultInflights and auto).
	Replicas, Inflight string
	// Chart is an SVG file to write the chart to; empty means none.
	Chart    string
	LogLevel string
	// Self is this binary, run as each layout's reaper; empty means none.
	Self string
}

func newTuneCmd(f *factory, g *globalOptions, runF func(*tuneOptions) error) *cobra.Command {
	opts := &tuneOptions{
		Out: f.Out, ErrOut: f.ErrOut, Self: f.Self,
		ReadyTimeout: 5 * time.Minute, Duration: 20 * time.Second, Budget: 10 * time.Minute, Remeasure: 2, LogLevel: "off",
	}
	cmd := &cobra.Command{
		Use:   "tune [flags] -- COMMAND [ARG...]",
		Short: "Find the fastest layout (replicas, CPUs each, requests in flight) for COMMAND on this machine",
		Long: `Run COMMAND in candidate layouts, one after another, on free 127.0.0.1 ports:
replica counts (1, 2, 4, ... up to the CPUs, and twice the CPUs, sharing),
each pinned to its share of the CPUs (--cpus), and requests in flight per
replica (1, 2, 4, ... until throughput stops rising, then auto). Each layout
is warmed up, then loaded at saturation with the request of --request (or
--warmup) for --duration. Then the layouts within 10% of the top
requests/s (at most 3) are measured --remeasure more times each,
interleaved, and ranked on the medians: the top of single runs on a busy
machine leans high. It prints a table, best first, and the mattingctl up
line of the best:

  mattingctl tune --request predict.json --health /health -- python3 app.py

The ` + tune.BestRule + `.

Ctrl-C stops the layout under way and prints what was measured. Each layout
runs under a name of its own (tune-PID-N): --name is not used.`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Command = args
			warnMisplaced(opts.ErrOut, cmd, args)
			if runF != nil {
				return runF(opts)
			}
			return tuneRun(opts)
		},
	}
	cmd.Flags().SetInterspersed(false)
	fl := cmd.Flags()
	fl.StringVar(&opts.Request, "request", "", "JSON file of the request to measure with, as --warmup takes it (method, path, headers, body or body_file); default: the --warmup file's")
	fl.StringVar(&opts.Warmup, "warmup", "", "JSON file of a request sent to every new replica process once ready, as up's --warmup")
	fl.StringVar(&opts.Health, "health", "", "path a replica must answer 2xx on before it is ready, as up's --health (empty: its port accepting TCP)")
	fl.Var(durationFlag{&opts.ReadyTimeout, false}, "ready-timeout", "how long a replica may take to become ready (more than 0)")
	fl.StringArrayVarP(&opts.Env, "env", "e", nil, "extra KEY=VALUE for every replica (repeatable)")
	fl.Var(durationFlag{&opts.Duration, false}, "duration", "how long each layout is measured, after a warm-up of a quarter of it (1s to 5s)")
	fl.Var(durationFlag{&opts.Budget, false}, "budget", "the whole sweep's time, the re-measure included; layouts that would not end within it are skipped, and listed")
	fl.Var(intFlag{&opts.Remeasure, 0}, "remeasure", fmt.Sprintf("how many more times the layouts within %.0f%% of the top requests/s (at most %d) are measured after the sweep, interleaved, to choose on medians (0: none)",
		tune.FinalBand*100, tune.MaxFinalists))
	fl.StringVar(&opts.Replicas, "replicas", "", "replica counts to try, e.g. 1,2,4 (default: 1, 2, 4, ... up to the CPUs, the CPUs, and twice the CPUs)")
	fl.StringVar(&opts.Inflight, "inflight", "", "requests in flight per replica to try, ascending, and auto, e.g. 1,2,4,auto (default: 1,2,4,...,64,auto)")
	fl.StringVar(&opts.Chart, "chart", "", "write an SVG chart of requests/s against p99, a point per layout, to FILE")
	fl.StringVar(&opts.LogLevel, "log-level", opts.LogLevel, "log of the instances run: off, error, warn, info, debug (with the replicas' output), trace")
	return cmd
}

// errInterrupted ends a sweep stopped by Ctrl-C, after its table: exit 130
// as a shell's for SIGINT.
var errInterrupted = &exitError{code: 130}

func tuneRun(opts *tuneOptions) error {
	plan, err := opts.plan()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	runner, err := opts.runner(plan.request)
	if err != nil {
		return err
	}
	fmt.Fprintln(opts.ErrOut, plan.describe(opts))
	rep := tune.Sweep(ctx, runner, plan.cfg)
	return opts.report(rep)
}

// tunePlan is a sweep's resolved candidates and request.
type tunePlan struct {
	cfg     tune.Config
	request tune.Request
	cpus    []int // the CPUs the replicas may be pinned to
}

// plan checks the flags and resolves them into the sweep's candidates.
func (opts *tuneOptions) plan() (*tunePlan, error) {
	if len(opts.Command) == 0 {
		return nil, errors.New("no command to tune: give it after --, as in mattingctl tune --request predict.json -- python3 app.py")
	}
	if err := replica.CheckCommand(opts.Command); err != nil {
		return nil, err
	}
	file, flag := opts.Request, "--request"
	if file == "" {
		file, flag = opts.Warmup, "--warmup"
	}
	if file == "" {
		return nil, errors.New("no request to measure with: give --request FILE (JSON as --warmup takes it: {\"method\": \"POST\", \"path\": \"/predict\", \"body_file\": \"body.json\"}) or --warmup FILE")
	}
	w, err := replica.LoadWarmup(file)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", flag, file, err)
	}
	if opts.Warmup != "" && opts.Warmup != file {
		if _, err := replica.LoadWarmup(opts.Warmup); err != nil {
			return nil, fmt.Errorf("--warmup %s: %w", opts.Warmup, err)
		}
	}
	p := &tunePlan{request: tune.Request{Method: w.Method, Target: w.Target, Header: w.Header, Host: w.Host, Body: w.Body}}
	p.cfg = tune.Config{
		Duration:  opts.Duration,
		Warmup:    max(time.Second, min(5*time.Second, opts.Duration/4)),
		Budget:    opts.Budget,
		Remeasure: opts.Remeasure,
		Log:       opts.ErrOut,
	}
	if vm, err := mem.VirtualMemory(); err == nil {
		p.cfg.MemAvailable = vm.Available
	}
	if p.cfg.Inflights, p.cfg.Auto, err = parseInflights(opts.Inflight); err != nil {
		return nil, err
	}
	if replica.PinningSupported {
		if p.cpus, err = replica.AllowedCPUs(); err != nil {
			return nil, fmt.Errorf("reading the CPUs mattingctl may use: %w", err)
		}
	}
	counts := tune.ReplicaCounts(max(1, len(p.cpus)))
	if len(p.cpus) == 0 {
		counts = tune.ReplicaCounts(1) // cannot pin: a CPU count of its own does not matter
	}
	if opts.Replicas != "" {
		if counts, err = parseCounts(opts.Replicas); err != nil {
			return nil, err
		}
	}
	for _, n := range counts {
		p.cfg.Shapes = append(p.cfg.Shapes, shapeOf(n, p.cpus))
	}
	return p, nil
}

// shapeOf pins n replicas to cpus as `up --cpus auto` would, and writes
// the sets as --cpus takes them; with no cpus, the shape is not pinned.
func shapeOf(n int, cpus []int) tune.Shape {
	if len(cpus) == 0 {
		return tune.Shape{Replicas: n}
	}
	sets := autoCPUs(n, byCore(cpus))
	vals := make([]string, len(sets))
	for i, set := range sets {
		vals[i] = strings.ReplaceAll(replica.FormatCPUs(set), ",", "+")
	}
	return tune.Shape{Replicas: n, CPUsEach: len(sets[len(sets)-1]), Shared: n > len(cpus), CPUs: strings.Join(vals, ",")}
}

// parseInflights reads --inflight: whole numbers, ascending, and auto.
// Empty means tune.DefaultInflights and auto.
func parseInflights(s string) ([]int, bool, error) {
	if s == "" {
		return tune.DefaultInflights, true, nil
	}
	var vals []int
	auto := false
	for _, v := range strings.Split(s, ",") {
		v = strings.TrimSpace(v)
		if v == "auto" {
			auto = true
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxInflightBound || len(vals) > 0 && n <= vals[len(vals)-1] {
			return nil, false, fmt.Errorf("--inflight %q: want whole numbers from 1 to %d, ascending, and auto, such as 1,2,4,8,auto", s, maxInflightBound)
		}
		vals = append(vals, n)
	}
	return vals, auto, nil
}

// parseCounts reads --replicas: whole numbers of at least 1, ascending.
func parseCounts(s string) ([]int, error) {
	var vals []int
	for _, v := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 1 || n > 1024 || len(vals) > 0 && n <= vals[len(vals)-1] {
			return nil, fmt.Errorf("--replicas %q: want replica counts from 1 to 1024, ascending, such as 1,2,4", s)
		}
		vals = append(vals, n)
	}
	return vals, nil
}

// describe says what the sweep will try, in one line.
func (p *tunePlan) describe(opts *tuneOptions) string {
	shapes := make([]string, len(p.cfg.Shapes))
	for i, s := range p.cfg.Shapes {
		shapes[i] = s.String()
	}
	vals := make([]string, 0, len(p.cfg.Inflights)+1)
	for _, n := range p.cfg.Inflights {
		vals = append(vals, strconv.Itoa(n))
	}
	if p.cfg.Auto {
		vals = append(vals, "auto")
	}
	cpus := "not pinned (no CPU pinning here)"
	if len(p.cpus) > 0 {
		cpus = fmt.Sprintf("%d CPUs (%s)", len(p.cpus), replica.FormatCPUs(p.cpus))
	}
	memory := "unknown"
	if p.cfg.MemAvailable > 0 {
		memory = fmt.Sprintf("%dMiB", p.cfg.MemAvailable>>20)
	}
	again := "none measured again"
	if p.cfg.Remeasure > 0 {
		again = fmt.Sprintf("then those within %.0f%% of the top measured %d more times each", tune.FinalBand*100, p.cfg.Remeasure)
	}
	return fmt.Sprintf("tune: %s, %s memory available; replicas x CPUs each: %s; inflight %s (growing while requests/s rise); %s of warm-up and %s measured per layout, %s, within --budget %s",
		cpus, memory, strings.Join(shapes, ", "), strings.Join(vals, ","), p.cfg.Warmup, opts.Duration, again, opts.Budget)
}

// upExtra is the flags of opts that every layout ran with, as `up` takes
// them, for the up line.
func (opts *tuneOptions) upExtra() []string {
	var extra []string
	if opts.Health != "" {
		extra = append(extra, "--health", opts.Health)
	}
	if opts.Warmup != "" {
		extra = append(extra, "--warmup", opts.Warmup)
	}
	if opts.ReadyTimeout != 5*time.Minute {
		extra = append(extra, "--ready-timeout", opts.ReadyTimeout.String())
	}
	for _, e := range opts.Env {
		extra = append(extra, "--env", e)
	}
	return extra
}

// report prints the table, what was skipped, and the best layout's up
// line; it returns the error the command ends with.
func (opts *tuneOptions) report(rep tune.Report) error {
	ranked := tune.Ranked(rep.Results)
	best := tune.Best(ranked)
	if len(ranked) > 0 {
		if err := tune.WriteTable(opts.Out, ranked); err != nil {
			return err
		}
	}
	for _, s := range rep.Skipped {
		fmt.Fprintln(opts.Out, "skipped:", s)
	}
	if rep.Remeasure != nil {
		fmt.Fprintln(opts.Out, rep.Remeasure)
	}
	if few := fewSamples(ranked); few > 0 {
		fmt.Fprintf(opts.Out, "note: %d of the layouts answered fewer than %d requests while measured: their p99 is about their slowest answer; a longer --duration measures them better\n", few, enoughSamples)
	}
	if opts.Chart != "" && len(ranked) > 0 {
		if err := writeChartFile(opts.Chart, ranked, best); err != nil {
			return err
		}
	}
	if best >= 0 {
		rule := tune.RuleFor(ranked)
		if rep.Interrupted {
			rule += " (of the layouts measured before the interrupt)"
		}
		fmt.Fprintf(opts.Out, "\n%s:\n  %s\n", rule, tune.UpLine(ranked[best].Layout, opts.upExtra(), opts.Command))
	} else if len(ranked) > 0 {
		fmt.Fprintln(opts.Out, "\nno layout ran without errors: no recommendation (see the first error of each above, with --log-level info for the replicas' side)")
	}
	switch {
	case rep.Interrupted:
		fmt.Fprintln(opts.ErrOut, "mattingctl: tune interrupted; the table holds the layouts measured before")
		return errInterrupted
	case rep.Err != nil:
		return rep.Err
	case best < 0:
		return &exitError{code: 1}
	}
	return nil
}

// enoughSamples is how many answers make a p99 more than the slowest
// one: a hundred put one past it.
const enoughSamples = 100

// fewSamples counts the results with fewer than enoughSamples answers.
func fewSamples(results []tune.Result) int {
	n := 0
	for _, r := range results {
		if r.Requests+r.Errors < enoughSamples {
			n++
		}
	}
	return n
}

// writeChartFile writes the chart to path.
func writeChartFile(path string, results []tune.Result, best int) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("--chart %s: %w", path, fileErr(err))
	}
	werr := tune.WriteChart(f, results, best)
	if err := errors.Join(werr, f.Close()); err != nil {
		return fmt.Errorf("--chart %s: %w", path, err)
	}
	return nil
}

// fileErr is err without the path a *os.PathError repeats.
func fileErr(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// exitError ends the program with code, after err if not nil (printed as
// every error is); nil err prints nothing more.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return ""
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

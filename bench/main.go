// Command bench measures mattingctl against nginx in the same run, on the
// same machine and against identical replicas, and prints a table of
// requests answered, failed, throughput and latency percentiles.
//
//	go run ./bench                      # both scenarios, 3 rounds each
//	go run ./bench -scenario overload   # one scenario
//	go run ./bench -scenario original   # the original load test, Flask replicas, nginx beside (about 10 min)
//	go run ./bench -scenario original -client-cpu 1 -targets mattingctl,nginx-original
//	                                    # the same with the client on CPU 1 alone, the servers on the others (pin.go)
//	go run ./bench soak -d 10m          # chaos under load; see soak.go
//	go run ./bench -scenario idleconns  # 20,000 idle connections: mattingctl alone, run only when named
//	go run ./bench -scenario idleconns -memory  # RSS per idle keep-alive connection (10,000), and after they close (idlememory.go)
//	go run ./bench -scenario slowupload # a memory scenario (memory.go, also bigbodies), mattingctl alone
//	go run ./bench -scenario hopeless   # 2,000 requests at once at one 100 ms replica (hopeless.go), mattingctl alone
//	go run ./bench -scenario h2         # h2load: HTTP/2 and HTTP/1.1, through mattingctl and direct to a replica (h2.go)
//	go run ./bench -scenario model      # the real model (examples/onnx-matting, model.go), mattingctl alone, run only when named
//	go run ./bench -scenario dashboard  # mattingctl with the dashboard closed and open, interleaved (dashboard.go)
//	go run ./bench -scenario adaptive   # --max-inflight auto against fixed 1-32 and 0 on fakemodel -curve K (adaptive.go), run only when named
//	go run ./bench -scenario batch      # dynamic batching off and on, fakemodel -batch-cost 50ms,5ms at 1, 8 and 64 clients (batch.go), run only when named
//	go run ./bench -scenario autoscale  # --replicas 1:6 under an open-loop step 5 -> 35 -> 5 req/s (autoscale.go), run only when named
//	go run ./bench -scenario attack     # hostile clients with legitimate traffic beside, mattingctl alone (attack_linux.go, about 3 min)
//	go run ./bench -scenario tune       # mattingctl tune on the Flask example, then its up line measured as tune measures (tune.go, about --budget + 2 min)
//
// Scenario "overload" is the original nginx setup's problem: 1000 concurrent clients, each
// opening a new connection per request as its Python load-test client does,
// against 4 replicas that take 100 ms per request and drop connections past
// 64 concurrent requests. nginx runs with the original nginx.conf, with a
// tuned one (upstream keepalive, a worker per core) and with the tuned one
// keeping request bodies in memory.
//
// Scenario "proxy" (proxycost.go) measures the proxy's own cost beside
// HAProxy's and nginx's: instant replicas, 64 keep-alive clients, a 1 KB
// JSON body and the original load test's ~220 KB base64 JSON body, a table
// each with the proxy's CPU time per request read from /proc. It needs
// `apt-get install haproxy nginx`; `-rounds 5` is what it is meant for.
//
// Scenario "idleconns" (bench/idleconns.go) runs only when named: mattingctl
// under `ulimit -n 20000` with 20,000 idle client connections and a replica
// killed with kill -9. It needs a raisable open-file limit (root).
package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

type scenario struct {
	name        string
	about       string
	replicaArgs []string // fakemodel flags
	mattingctl  []string // extra `mattingctl up` flags
	clients     int
	requests    int
	keepAlive   bool
	// payloads, when set, are bodies sent in turn, a table each, with
	// the proxies' CPU per request (proxycost.go); they replace requests.
	payloads []payload
	// replicaCommand runs the replicas instead of fakemodel (paths from
	// the repository's root); pythonClient sends the load with the
	// original threaded Python client, one thread per request.
	replicaCommand []string
	pythonClient   bool
	// targets, when set, replace the -targets list; byName scenarios run
	// only when named with -scenario.
	targets []string
	byName  bool
}

var scenarios = []scenario{
	{
		name:           "original",
		about:          "the original load test: 450 threads of the original Python client at once; 4 replicas of the Flask example (OpenCV GrabCut); mattingctl with default flags, with --max-inflight 0, and the original nginx.conf",
		replicaCommand: []string{"python3", "examples/flask-matting/app.py"},
		pythonClient:   true,
		requests:       450,
		targets:        []string{"mattingctl", "mattingctl-cap0", "nginx-original"},
		byName:         true,
	},
	{
		name:        "overload",
		about:       "1000 clients, new connection per request; 4 replicas, 100 ms each, drop connections past 64 concurrent",
		replicaArgs: []string{"-service", "100ms", "-limit", "64"},
		mattingctl:  []string{"--max-inflight", "32"},
		clients:     1000,
		// 100 rounds of the replicas' capacity (4 x 32): the load
		// generator's own storm of 1000 new connections delays the first
		// answer by ~0.1 s even with no proxy, which a 4000-request run
		// (3.2 s at capacity) cannot amortize.
		requests: 12800,
	},
	{
		name:      "proxy",
		about:     "the proxies' own cost: 64 keep-alive clients, 4 instant replicas",
		clients:   64,
		keepAlive: true,
		// Each run 4-11 s at the rates seen on 2 cores: 1 KB at 3800
		// req/s through mattingctl, 8600 through nginx and HAProxy; the
		// original body at 800 (nginx) to 2000 req/s.
		payloads: []payload{
			{name: "1 KB", size: 1024, requests: 40000, reference: "nginx"},
			{name: "original", requests: 8000, reference: "haproxy-buffered"},
		},
		targets: []string{"mattingctl", "haproxy-buffered", "haproxy", "nginx"},
	},
}

func main() {
	if spec := os.Getenv(holderEnv); spec != "" {
		if err := runHolder(spec); err != nil {
			fmt.Fprintln(os.Stderr, "bench holder:", err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "soak" {
		if err := soak(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	only := flag.String("scenario", "", "run only this scenario (overload, proxy; or, only by name, original, idleconns, slowupload, bigbodies, hopeless, h2, model, dashboard, adaptive, autoscale, attack, tune, batch)")
	rounds := flag.Int("rounds", 3, "rounds per target; the table shows medians")
	image := flag.String("image", "examples/sample/sample.jpg", "image whose base64 makes the original load test's payload")
	nginxBin := flag.String("nginx", "nginx", "nginx binary")
	targetsFlag := flag.String("targets", "mattingctl,nginx-original,nginx-tuned,nginx-membuf", "targets to run, comma-separated, of mattingctl, mattingctl-cap0, mattingctl-batch (--batch-path /api/matting_base64 --batch-endpoint /batch), nginx-original, nginx-tuned (or nginx), nginx-membuf, haproxy, haproxy-buffered (default for proxy: mattingctl,haproxy-buffered,haproxy,nginx)")
	requests := flag.Int("requests", 0, "requests per run (default: the scenario's)")
	clientCPU := flag.Int("client-cpu", -1, "original: run the Python client on this CPU alone, and the proxies and replicas on the others (default: all share every CPU)")
	base := flag.String("base", "", "target mattingctl-base: a mattingctl binary to measure beside this tree's (say, main's, to compare a change in the same run)")
	keepAlive := flag.Bool("keepalive", false, "clients reuse connections in every scenario")
	idle := idleConnsOptions{}
	flag.IntVar(&idle.conns, "conns", 20000, "idleconns: idle client connections to open")
	flag.IntVar(&idle.ulimit, "ulimit", 20000, "idleconns: ulimit -n mattingctl runs under")
	flag.BoolVar(&idle.memory, "memory", false, "idleconns: measure the RSS of idle keep-alive connections (each sends one request first; -conns 10000 unless given) and its return for 2 minutes after they close, instead of the limit and kill -9")
	flag.BoolVar(&idle.floor, "floor", false, "idleconns -memory: measure a plain net/http server (internal/testutil/plainhttp) instead of mattingctl, the floor under its figures")
	flag.StringVar(&idle.bin, "mattingctl", "", "idleconns, model, tune: a mattingctl binary to run instead of this tree's (to compare builds)")
	memDuration := flag.Duration("d", 40*time.Second, "how long a memory scenario (slowupload, bigbodies) runs at most")
	modelClientsFlag := flag.Int("clients", modelClients, "model: concurrent keep-alive clients")
	modelWarm := flag.Int("warm", 0, "model: requests sent through the proxy, not measured, before each run's measured ones")
	modelInflight := flag.String("inflight", "", "model: compare these --max-inflight values at 2 replicas instead of the four set-ups, comma-separated (e.g. auto,1,2,4,8)")
	adaptiveKs := flag.String("k", "1,4,16", "adaptive: the fake model's K (best requests in flight), comma-separated")
	attack := attackOptions{}
	flag.DurationVar(&attack.resetFor, "rapid-reset", 30*time.Second, "attack: how long the rapid-reset attacker sends (at most 30s)")
	flag.IntVar(&attack.uploadStreams, "upload-streams", 250, "attack: slow-upload streams on each of the 70 HTTP/2 connections")
	tuneCheck := tuneCheckOptions{}
	flag.DurationVar(&tuneCheck.budget, "budget", 10*time.Minute, "tune: mattingctl tune's --budget")
	flag.DurationVar(&tuneCheck.duration, "duration", 20*time.Second, "tune: mattingctl tune's --duration, and each measurement of its up line")
	flag.Parse()
	if *only == "tune" {
		tuneCheck.rounds, tuneCheck.bin = *rounds, idle.bin
		if err := withEnvironment(*nginxBin, func(e *environment) error { return runTuneCheck(e, tuneCheck) }); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	if *only == "adaptive" {
		ks, err := parseKs(*adaptiveKs)
		if err == nil {
			err = withEnvironment(*nginxBin, func(e *environment) error { return runAdaptive(e, *rounds, ks) })
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	if *only == "batch" {
		if err := withEnvironment(*nginxBin, func(e *environment) error { return runBatch(e, *rounds) }); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	if *only == "autoscale" {
		if err := withEnvironment(*nginxBin, func(e *environment) error { return runAutoscale(e, *rounds) }); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	if *only == "attack" {
		if err := withEnvironment(*nginxBin, func(e *environment) error { return runAttacks(e, attack) }); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	if *only == "model" {
		o := modelOptions{clients: *modelClientsFlag, requests: modelRuns, rounds: *rounds, bin: idle.bin, warm: *modelWarm}
		if *modelInflight != "" {
			o.inflight = strings.Split(*modelInflight, ",")
		}
		if *requests > 0 {
			o.requests = *requests
		}
		if err := withEnvironment(*nginxBin, func(e *environment) error { return runModel(e, o) }); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	if *only == "idleconns" {
		if idle.memory && !isSet("conns") {
			idle.conns = 10000
		}
		if err := runIdleConns(idle); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	for i := range scenarios {
		if *requests > 0 {
			scenarios[i].requests = *requests
			for j := range scenarios[i].payloads {
				scenarios[i].payloads[j].requests = *requests
			}
		}
		scenarios[i].keepAlive = scenarios[i].keepAlive || *keepAlive
	}

	if *only == "h2" {
		if err := withEnvironment(*nginxBin, runH2); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	if *only == "dashboard" {
		n := *requests
		if n == 0 {
			n = 60000
		}
		if err := withEnvironment(*nginxBin, func(e *environment) error { return runDashboardCost(e, *rounds, n) }); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	if *only == "hopeless" {
		if err := withEnvironment(*nginxBin, runHopeless); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	if sc, ok := memoryScenarios[*only]; ok {
		err := withEnvironment(*nginxBin, func(e *environment) error { return runMemoryScenario(e, sc, *memDuration) })
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	pin, err := newPinning(*clientCPU)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	if err := run(*only, *rounds, *image, *nginxBin, *base, strings.Split(*targetsFlag, ","), isSet("targets"), pin); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// run runs the scenarios of the proxy comparison (or only the one named):
// against the targets of a scenario that names its own, unless -targets
// was given.
func run(only string, rounds int, image, nginxBin, base string, targets []string, targetsSet bool, pin pinning) error {
	work, err := os.MkdirTemp("", "mattingctl-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	env := &environment{work: work, nginx: nginxBin, pin: pin, base: base}
	if err := env.build(); err != nil {
		return err
	}
	payload, err := originalPayload(image)
	if err != nil {
		return err
	}
	fmt.Printf("machine: %s; %s\n\n", machine(), pin)
	ran := false
	for _, sc := range scenarios {
		if only != "" && sc.name != only || only == "" && sc.byName {
			continue
		}
		targets := targets
		if sc.targets != nil && !targetsSet {
			targets = sc.targets
		}
		ran = true
		if sc.payloads != nil {
			if err := env.runPayloads(sc, targets, rounds, image, payload); err != nil {
				return err
			}
			continue
		}
		body := []byte(`{"image": "aGVsbG8=", "bg": "[33, 150, 242]"}`)
		if sc.pythonClient {
			fmt.Printf("## %s: %s (%d requests, each the sample portrait)\n\n", sc.name, sc.about, sc.requests)
		} else {
			fmt.Printf("## %s: %s (%d requests, body %d bytes)\n\n", sc.name, sc.about, sc.requests, len(body))
		}
		results := map[string][]result{}
		for round := 1; round <= rounds; round++ {
			for _, name := range targets {
				r, err := env.measure(context.Background(), name, sc, body)
				if err != nil {
					return fmt.Errorf("%s, %s: %w", sc.name, name, err)
				}
				fmt.Printf("round %d %-12s %s\n", round, name, r.line())
				results[name] = append(results[name], r)
			}
		}
		fmt.Println()
		printTable(targets, results)
		fmt.Println()
	}
	if !ran {
		return fmt.Errorf("no scenario named %q", only)
	}
	return nil
}

func runIdleConns(o idleConnsOptions) error {
	work, err := os.MkdirTemp("", "mattingctl-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	env := &environment{work: work}
	if err := env.build(); err != nil {
		return err
	}
	if o.memory {
		who := "mattingctl's"
		if o.floor {
			who = "a plain net/http server's"
		}
		fmt.Printf("machine: %s\n\n## idleconns -memory: %d idle keep-alive connections after a request each, %s RSS with them and after them\n\n", machine(), o.conns, who)
		return env.idleMemory(o)
	}
	fmt.Printf("machine: %s\n\n## idleconns: %d idle client connections, mattingctl under ulimit -n %d, kill -9 of a replica\n\n", machine(), o.conns, o.ulimit)
	return env.idleConns(o)
}

// isSet reports whether the flag named name was given.
func isSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func printTable(targets []string, results map[string][]result) {
	fmt.Println("| target | answered 200 | failed | throughput (req/s) | steady (req/s) | p50 | p99 | mattingctl's throughput / this |")
	fmt.Println("|---|---|---|---|---|---|---|---|")
	base := median(results["mattingctl"], func(r result) float64 { return r.throughput() })
	for _, name := range targets {
		rs := results[name]
		ok := median(rs, func(r result) float64 { return float64(r.ok) })
		failed := median(rs, func(r result) float64 { return float64(r.total - r.ok) })
		tput := median(rs, func(r result) float64 { return r.throughput() })
		steady := median(rs, func(r result) float64 { return r.steady() })
		p50 := median(rs, func(r result) float64 { return float64(r.percentile(50)) })
		p99 := median(rs, func(r result) float64 { return float64(r.percentile(99)) })
		ratio := "-"
		if tput > 0 && base > 0 {
			ratio = fmt.Sprintf("%.2fx", base/tput)
		}
		fmt.Printf("| %s | %.0f of %d | %.0f | %.0f | %.0f | %s | %s | %s |\n", name, ok, rs[0].total, failed, tput, steady,
			time.Duration(p50).Round(100*time.Microsecond), time.Duration(p99).Round(100*time.Microsecond), ratio)
	}
	fmt.Println("\n(medians over rounds; failures by kind are in the round lines)")
}

// median is the median of f over rs.
func median(rs []result, f func(result) float64) float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	return medianOf(v)
}

// medianOf is the median of v (the upper one of an even count), or zero
// for none; v is left as it was.
func medianOf[T cmp.Ordered](v []T) T {
	if len(v) == 0 {
		var zero T
		return zero
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func machine() string {
	cpu := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				cpu = strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
				break
			}
		}
	}
	out, _ := exec.Command("nproc").Output()
	nginxV, _ := exec.Command("nginx", "-v").CombinedOutput()
	goV, _ := exec.Command("go", "version").Output()
	return fmt.Sprintf("%s cores of %s; %s; %s", strings.TrimSpace(string(out)), cpu,
		strings.TrimSpace(strings.TrimPrefix(string(nginxV), "nginx version: ")), strings.TrimSpace(string(goV)))
}

// loadAverage is the machine's 1, 5 and 15 minute load averages (/proc/loadavg),
// or "unknown" where there is none.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// withEnvironment builds the binaries into a temporary directory, runs f
// and removes the directory.
func withEnvironment(nginxBin string, f func(*environment) error) error {
	work, err := os.MkdirTemp("", "mattingctl-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	env := &environment{work: work, nginx: nginxBin}
	if err := env.build(); err != nil {
		return err
	}
	fmt.Printf("machine: %s\n\n", machine())
	return f(env)
}

func (e *environment) build() error {
	for bin, pkg := range map[string]string{"mattingctl": "./cmd/mattingctl", "fakemodel": "./internal/testutil/fakemodel", "plainhttp": "./internal/testutil/plainhttp"} {
		out, err := exec.Command("go", "build", "-o", filepath.Join(e.work, bin), pkg).CombinedOutput()
		if err != nil {
			return fmt.Errorf("building %s (run bench from the repository root): %v\n%s", pkg, err, out)
		}
	}
	return nil
}

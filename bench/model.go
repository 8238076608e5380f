package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The real model, run only when named:
//
//	go run ./bench -scenario model [-clients 12] [-requests 36] [-rounds 3] [-inflight auto,1,2,4,8] [-warm 0]
//
// mattingctl in front of examples/onnx-matting, ISNet on onnxruntime (its
// packages installed with `npm ci --ignore-scripts` in that directory),
// sent the example's photo by many keep-alive clients, in four set-ups:
// one replica with onnxruntime's default threads; two replicas, unpinned,
// each with the default threads (one per core: they share the cores); two
// replicas with --cpus auto (each pinned to its share, its thread count
// set to match); and that with --max-inflight 1. Each replica serves one
// request directly first, so that the table is about serving, not about
// first inferences. Then the warm-up figure: the latency of the first
// request after a rolling restart of one replica, without and with
// --warmup. Set-ups whose flags the mattingctl binary does not know are
// skipped with a note. With -inflight, the set-ups are instead two
// replicas at each of the --max-inflight values listed, with the limits
// each replica ended a run at (from status --json), and no warm-up figure.
// Rounds are interleaved: round 1 of every set-up, then round 2, so that
// a shared machine's slow minute falls on all of them alike.

const (
	modelDir     = "examples/onnx-matting"
	modelPhoto   = modelDir + "/astronaut.jpg"
	modelClients = 12
	modelRuns    = 36
)

type modelOptions struct {
	clients, requests, rounds int
	bin                       string   // mattingctl to run; empty: this tree's
	inflight                  []string // --max-inflight values to compare at 2 replicas; empty: the four set-ups
	// warm is how many requests go through the proxy, not measured, before
	// the measured ones: time for --max-inflight auto to learn, the same
	// for every set-up.
	warm int
}

type modelSetup struct {
	name, about string
	replicas    int
	flags       []string
}

var modelSetups = []modelSetup{
	{"a", "1 replica, onnxruntime's default threads", 1, nil},
	{"b", "2 replicas, unpinned, default threads", 2, nil},
	{"c", "2 replicas, --cpus auto", 2, []string{"--cpus", "auto"}},
	{"d", "2 replicas, --cpus auto --max-inflight 1", 2, []string{"--cpus", "auto", "--max-inflight", "1"}},
}

func runModel(e *environment, o modelOptions) error {
	if _, err := exec.LookPath("node"); err != nil {
		return errors.New("node is not installed (apt-get install nodejs npm)")
	}
	if _, err := os.Stat(filepath.Join(modelDir, "node_modules", "onnxruntime-node")); err != nil {
		return fmt.Errorf("the example's packages are not installed: run npm ci --ignore-scripts in %s", modelDir)
	}
	photo, err := os.ReadFile(modelPhoto)
	if err != nil {
		return fmt.Errorf("reading the photo (run bench from the repository root): %w", err)
	}
	body, _ := json.Marshal(map[string]string{"image": base64.StdEncoding.EncodeToString(photo), "bg": "[33, 150, 242]"})
	bin := o.bin
	if bin == "" {
		bin = filepath.Join(e.work, "mattingctl")
	}
	help, _ := exec.Command(bin, "up", "--help").CombinedOutput()
	knows := func(flag string) bool { return bytes.Contains(help, []byte("--"+flag+" ")) }

	fmt.Printf("## model: ISNet (examples/onnx-matting, the small model) behind mattingctl; %d keep-alive clients, %d requests of the %d-byte photo per run after %d not measured, %d rounds\n\n",
		o.clients, o.requests, len(body), o.warm, o.rounds)
	setups := modelSetups
	if len(o.inflight) > 0 {
		setups = nil
		for _, v := range o.inflight {
			setups = append(setups, modelSetup{v, "2 replicas, --max-inflight " + v, 2, []string{"--max-inflight", v}})
		}
	}
	results := map[string][]result{}
	cpus := map[string]string{}
	limits := map[string][]string{}
	var skipped []string
	var runnable []modelSetup
	for _, s := range setups {
		if missing := unknownFlags(s.flags, knows); missing != "" {
			skipped = append(skipped, fmt.Sprintf("(%s) %s: skipped, this mattingctl has no %s", s.name, s.about, missing))
			continue
		}
		runnable = append(runnable, s)
	}
	for round := 1; round <= o.rounds; round++ {
		for _, s := range runnable {
			r, placement, limit, err := e.modelRun(bin, s, body, o)
			if err != nil {
				return fmt.Errorf("model (%s): %w", s.name, err)
			}
			fmt.Printf("round %d (%s) ok=%d/%d throughput=%.3f/s p50=%s p99=%s wall=%s limits=%s failed=[%s]\n", round, s.name, r.ok, r.total, r.throughput(),
				r.percentile(50).Round(10*time.Millisecond), r.percentile(99).Round(10*time.Millisecond), r.wall.Round(10*time.Millisecond), limit, counts(r.failures))
			results[s.name] = append(results[s.name], r)
			cpus[s.name] = placement
			limits[s.name] = append(limits[s.name], limit)
		}
	}
	fmt.Println()
	fmt.Println("| set-up | mattingctl flags | answered 200 | failed | throughput (images/s) | p50 | p99 | CPUs per replica | limits at the end, by round |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|")
	for _, s := range setups {
		rs := results[s.name]
		if len(rs) == 0 {
			continue
		}
		flags := strings.Join(append([]string{"-r", strconv.Itoa(s.replicas)}, s.flags...), " ")
		fmt.Printf("| (%s) %s | `%s` | %.0f of %d | %.0f | %.3f | %s | %s | %s | %s |\n", s.name, s.about, flags,
			median(rs, func(r result) float64 { return float64(r.ok) }), rs[0].total,
			median(rs, func(r result) float64 { return float64(r.total - r.ok) }),
			median(rs, func(r result) float64 { return r.throughput() }),
			time.Duration(median(rs, func(r result) float64 { return float64(r.percentile(50)) })).Round(10*time.Millisecond),
			time.Duration(median(rs, func(r result) float64 { return float64(r.percentile(99)) })).Round(10*time.Millisecond),
			cpus[s.name], strings.Join(limits[s.name], "; "))
	}
	fmt.Println("\n(medians over rounds)")
	for _, s := range skipped {
		fmt.Println(s)
	}
	if len(o.inflight) > 0 {
		return nil
	}

	fmt.Printf("\n## warm-up: latency of the first request after a rolling restart of 1 replica (%d rounds)\n\n", o.rounds)
	warmFile := filepath.Join(e.work, "warmup.json")
	if err := os.WriteFile(filepath.Join(e.work, "warmup-body.json"), body, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(warmFile, []byte(`{"path": "/api/matting_base64", "headers": {"Content-Type": "application/json"}, "body_file": "warmup-body.json"}`+"\n"), 0o644); err != nil {
		return err
	}
	fmt.Println("| mattingctl flags | first request after `mattingctl restart` | a warm request |")
	fmt.Println("|---|---|---|")
	for _, flags := range [][]string{nil, {"--warmup", warmFile}} {
		if missing := unknownFlags(flags, knows); missing != "" {
			fmt.Printf("(--warmup: skipped, this mattingctl has no %s)\n", missing)
			continue
		}
		var first, warm []time.Duration
		for round := 1; round <= o.rounds; round++ {
			f, w, err := e.modelRestartRun(bin, flags, body)
			if err != nil {
				return fmt.Errorf("warm-up figure: %w", err)
			}
			fmt.Printf("round %d %v: first after restart %s, warm %s\n", round, flags, f.Round(10*time.Millisecond), w.Round(10*time.Millisecond))
			first, warm = append(first, f), append(warm, w)
		}
		shown := "-r 1"
		if len(flags) > 0 {
			shown += " --warmup warmup.json"
		}
		fmt.Printf("| `%s` | %s | %s |\n", shown, medianDuration(first).Round(10*time.Millisecond), medianDuration(warm).Round(10*time.Millisecond))
	}
	fmt.Println("\n(medians over rounds)")
	return nil
}

// unknownFlags names the flags among args (those starting with --) that
// the binary does not know, or returns "".
func unknownFlags(args []string, knows func(string) bool) string {
	var missing []string
	for _, a := range args {
		if f, ok := strings.CutPrefix(a, "--"); ok && !knows(f) {
			missing = append(missing, a)
		}
	}
	return strings.Join(missing, ", ")
}

// modelInstance is a running mattingctl in front of the example.
type modelInstance struct {
	bin, home string
	port      int
	stop      func()
}

func (e *environment) startModel(bin string, replicas int, flags []string) (*modelInstance, error) {
	// Room for the replicas and the successors of a rolling restart.
	port, err := freeRange(replicas + 4)
	if err != nil {
		return nil, err
	}
	args := append([]string{"-r", strconv.Itoa(replicas), "--health", "/health"}, flags...)
	args = append(args, "--", "node", filepath.Join(modelDir, "server.js"))
	return e.startInstance(bin, "model-"+strconv.Itoa(port), port, replicas, 2*time.Minute, args)
}

// startInstance runs `mattingctl up` on port, local and quiet, with args
// after the bench's own flags, its output in WORK/mattingctl-NAME.log,
// and waits up to wait for its replicas to be ready; the error then
// quotes the log.
func (e *environment) startInstance(bin, name string, port, replicas int, wait time.Duration, args []string) (*modelInstance, error) {
	home := filepath.Join(e.work, "home-"+name)
	full := append([]string{"up", "--host", "127.0.0.1", "-p", strconv.Itoa(port), "--admin", "none", "--log-level", "warn"}, args...)
	cmd := exec.Command(bin, full...)
	cmd.Env = append(os.Environ(), "MATTINGCTL_HOME="+home)
	logPath := filepath.Join(e.work, "mattingctl-"+name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	in := &modelInstance{bin: bin, home: home, port: port, stop: func() { terminate(cmd); logf.Close() }}
	for deadline := time.Now().Add(wait); ; time.Sleep(200 * time.Millisecond) {
		if st, err := in.status(); err == nil && st.ready() == replicas {
			return in, nil
		}
		if time.Now().After(deadline) {
			in.stop()
			log, _ := os.ReadFile(logPath)
			return nil, fmt.Errorf("mattingctl %s: %d replicas not ready within %s:\n%s", strings.Join(full, " "), replicas, wait, log)
		}
	}
}

type modelStatus struct {
	Replicas []struct {
		Name  string `json:"name"`
		Port  int    `json:"port"`
		State string `json:"state"`
		CPUs  string `json:"cpus"`
		Limit int    `json:"limit"`
	} `json:"replicas"`
}

func (s modelStatus) ready() int {
	n := 0
	for _, r := range s.Replicas {
		if r.State == "ready" {
			n++
		}
	}
	return n
}

func (in *modelInstance) ctl(args ...string) ([]byte, error) {
	cmd := exec.Command(in.bin, args...)
	cmd.Env = append(os.Environ(), "MATTINGCTL_HOME="+in.home)
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("mattingctl %s: %w", strings.Join(args, " "), err)
	}
	return out, nil
}

func (in *modelInstance) status() (modelStatus, error) {
	var st modelStatus
	out, err := in.ctl("status", "--json")
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(out, &st)
}

var modelClient = &http.Client{Timeout: 5 * time.Minute}

// matte sends one matting request to url and returns its latency.
func matteOnce(url string, body []byte) (time.Duration, error) {
	t := time.Now()
	if kind := post(context.Background(), modelClient, url, body); kind != "" {
		return 0, fmt.Errorf("POST %s: %s", url, kind)
	}
	return time.Since(t), nil
}

// modelRun starts one set-up, has every replica serve one request
// directly, runs the load through the proxy and stops it. It returns the
// result, the replicas' CPUs and their limits at the end, as status shows
// them.
func (e *environment) modelRun(bin string, s modelSetup, body []byte, o modelOptions) (result, string, string, error) {
	in, err := e.startModel(bin, s.replicas, s.flags)
	if err != nil {
		return result{}, "", "", err
	}
	defer in.stop()
	st, err := in.status()
	if err != nil {
		return result{}, "", "", err
	}
	var wg sync.WaitGroup
	errs := make([]error, len(st.Replicas))
	placement := []string{}
	for i, r := range st.Replicas {
		placement = append(placement, r.CPUs)
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = matteOnce("http://127.0.0.1:"+strconv.Itoa(r.Port)+"/api/matting_base64", body)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return result{}, "", "", fmt.Errorf("warming the replicas: %w", err)
	}
	cpus := strings.Join(placement, " / ")
	if strings.Trim(cpus, " /") == "" {
		cpus = "any"
	}
	url := "http://127.0.0.1:" + strconv.Itoa(in.port) + "/api/matting_base64"
	if o.warm > 0 {
		if w := runLoad(context.Background(), url, body, o.clients, o.warm, true); w.ok != w.total {
			return result{}, "", "", fmt.Errorf("warming through the proxy: %d of %d answered (%v)", w.ok, w.total, w.failures)
		}
	}
	r := runLoad(context.Background(), url, body, o.clients, o.requests, true)
	limit := "?"
	if st, err := in.status(); err == nil {
		var ls []string
		for _, rep := range st.Replicas {
			ls = append(ls, strconv.Itoa(rep.Limit))
		}
		limit = strings.Join(ls, "/")
	}
	return r, cpus, limit, nil
}

// modelRestartRun starts one replica with flags, sends it a request,
// restarts it with `mattingctl restart` and times the first request after
// the restart and the one after that.
func (e *environment) modelRestartRun(bin string, flags []string, body []byte) (first, warm time.Duration, err error) {
	in, err := e.startModel(bin, 1, flags)
	if err != nil {
		return 0, 0, err
	}
	defer in.stop()
	url := "http://127.0.0.1:" + strconv.Itoa(in.port) + "/api/matting_base64"
	if _, err := matteOnce(url, body); err != nil {
		return 0, 0, err
	}
	if _, err := in.ctl("restart"); err != nil {
		return 0, 0, err
	}
	if first, err = matteOnce(url, body); err != nil {
		return 0, 0, err
	}
	if warm, err = matteOnce(url, body); err != nil {
		return 0, 0, err
	}
	return first, warm, nil
}

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The adaptive limit against fixed ones, run only when named:
//
//	go run ./bench -scenario adaptive [-rounds 3] [-k 1,4,16]
//
// For each K, 4 replicas of fakemodel -curve K (curve.go there: best at
// K requests in flight, slower per request past it) behind mattingctl at
// --max-inflight auto and at fixed 1, 2, 4, 8, 16, 32 and 0, in turn, in
// the same run; rounds interleave the settings, and the table shows the
// medians. Each setting gets a fresh instance, so auto learns from its
// lower bound, a warm-up (the same for all), then a measured stretch of
// closed-loop keep-alive clients, enough to keep every replica past K. The
// learned limits are read from `status --json` once a second while it
// runs, as a user would read them.

const (
	adaptiveService  = 200 * time.Millisecond
	adaptiveWarm     = 4 * time.Second
	adaptiveMeasured = 12 * time.Second
)

var adaptiveSettings = []string{"auto", "1", "2", "4", "8", "16", "32", "0"}

// adaptiveRun is one setting's measured stretch.
type adaptiveRun struct {
	res    result
	limits []int // every replica's limit at every status read
}

func runAdaptive(e *environment, rounds int, ks []int) error {
	fmt.Printf("## adaptive: 4 replicas of fakemodel -curve K -service %s (-thrash 0.25), closed-loop keep-alive clients (8K+8), %s warm-up then %s measured per setting, fresh instance each, %d rounds\n\n",
		adaptiveService, adaptiveWarm, adaptiveMeasured, rounds)
	for _, k := range ks {
		clients := 8*k + 8
		runs := map[string][]adaptiveRun{}
		for round := 1; round <= rounds; round++ {
			for _, setting := range adaptiveSettings {
				r, err := e.adaptiveRun(setting, k, clients)
				if err != nil {
					return fmt.Errorf("K=%d, --max-inflight %s: %w", k, setting, err)
				}
				fmt.Printf("round %d K=%-2d %-5s %s limits=%s\n", round, k, setting, r.res.line(), summarizeLimits(r.limits))
				runs[setting] = append(runs[setting], r)
			}
		}
		fmt.Println()
		printAdaptiveTable(k, clients, runs)
		fmt.Println()
	}
	return nil
}

func printAdaptiveTable(k, clients int, runs map[string][]adaptiveRun) {
	tput := func(s string) float64 {
		return median(results(runs[s]), func(r result) float64 { return float64(r.ok) / adaptiveMeasured.Seconds() })
	}
	p := func(s string, q int) time.Duration {
		return time.Duration(median(results(runs[s]), func(r result) float64 { return float64(r.percentile(q)) }))
	}
	best := ""
	for _, s := range adaptiveSettings[1:] {
		if best == "" || tput(s) > tput(best) {
			best = s
		}
	}
	fmt.Printf("K=%d, %d clients; best fixed setting: %s\n\n", k, clients, best)
	fmt.Println("| --max-inflight | throughput (req/s) | p50 | p99 | throughput / best fixed | p99 / best fixed's | limit from status (median, range) |")
	fmt.Println("|---|---|---|---|---|---|---|")
	for _, s := range adaptiveSettings {
		limit := "-"
		if s == "auto" {
			var all []int
			for _, r := range runs[s] {
				all = append(all, r.limits...)
			}
			limit = summarizeLimits(all)
		}
		fmt.Printf("| %s | %.1f | %s | %s | %.2f | %.2f | %s |\n", s, tput(s), p(s, 50).Round(time.Millisecond), p(s, 99).Round(time.Millisecond),
			tput(s)/tput(best), float64(p(s, 99))/float64(p(best, 99)), limit)
	}
	var all []int
	for _, r := range runs["auto"] {
		all = append(all, r.limits...)
	}
	in := 0
	for _, l := range all {
		if 2*l >= k && 2*l <= 3*k {
			in++
		}
	}
	ok := tput("auto") >= 0.95*tput(best) && float64(p("auto", 99)) <= 1.25*float64(p(best, 99))
	m := medianOf(all)
	ok = ok && 2*m >= k && 2*m <= 3*k
	fmt.Printf("\nauto: %.0f%% of the best fixed setting's throughput, p99 %.2f× its; limit median %d, within ±50%% of K %d%% of the reads: %s\n",
		100*tput("auto")/tput(best), float64(p("auto", 99))/float64(p(best, 99)), m, 100*in/max(len(all), 1), map[bool]string{true: "within the bounds (≥ 95%, p99 ≤ 1.25×, limit within ±50% of K)", false: "NOT within the bounds (≥ 95%, p99 ≤ 1.25×, limit within ±50% of K)"}[ok])
}

func results(rs []adaptiveRun) []result {
	out := make([]result, len(rs))
	for i, r := range rs {
		out[i] = r.res
	}
	return out
}

// summarizeLimits is "median (low-high)" of the limits read, or "-".
func summarizeLimits(v []int) string {
	if len(v) == 0 {
		return "-"
	}
	return fmt.Sprintf("%d (%d-%d)", medianOf(v), slices.Min(v), slices.Max(v))
}

// adaptiveRun starts mattingctl at --max-inflight setting in front of 4
// curve replicas of K, warms it up and measures it.
func (e *environment) adaptiveRun(setting string, k, clients int) (adaptiveRun, error) {
	port, err := freeRange(replicas + 4)
	if err != nil {
		return adaptiveRun{}, err
	}
	home := filepath.Join(e.work, "home-adaptive-"+strconv.Itoa(port))
	args := []string{"up", "--host", "127.0.0.1", "-p", strconv.Itoa(port), "-r", strconv.Itoa(replicas), "--admin", "none",
		"--log-level", "warn", "--max-inflight", setting,
		"--", filepath.Join(e.work, "fakemodel"), "-curve", strconv.Itoa(k), "-service", adaptiveService.String()}
	cmd := exec.Command(filepath.Join(e.work, "mattingctl"), args...)
	cmd.Env = append(os.Environ(), "MATTINGCTL_HOME="+home)
	logPath := filepath.Join(e.work, "mattingctl-adaptive-"+strconv.Itoa(port)+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return adaptiveRun{}, err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return adaptiveRun{}, err
	}
	defer terminate(cmd)
	in := &modelInstance{bin: filepath.Join(e.work, "mattingctl"), home: home, port: port}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		if st, err := in.status(); err == nil && st.ready() == replicas {
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logPath)
			return adaptiveRun{}, fmt.Errorf("replicas not ready within a minute:\n%s", log)
		}
	}
	url := "http://127.0.0.1:" + strconv.Itoa(port) + "/"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var run adaptiveRun
	var wg sync.WaitGroup
	wg.Go(func() {
		// Once a second from the end of the warm-up, as `status` shows them.
		t := time.NewTicker(time.Second)
		defer t.Stop()
		warmEnd := time.Now().Add(adaptiveWarm)
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				if now.Before(warmEnd) {
					continue
				}
				if ls, err := in.limits(); err == nil {
					run.limits = append(run.limits, ls...)
				}
			}
		}
	})
	run.res = runTimed(ctx, url, []byte(`{"image": "aGVsbG8="}`), clients, adaptiveWarm, adaptiveMeasured)
	cancel()
	wg.Wait()
	return run, nil
}

// limits reads every ready replica's limit from `status --json`.
func (in *modelInstance) limits() ([]int, error) {
	out, err := in.ctl("status", "--json")
	if err != nil {
		return nil, err
	}
	var st struct {
		Replicas []struct {
			State string `json:"state"`
			Limit int    `json:"limit"`
		} `json:"replicas"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		return nil, err
	}
	var ls []int
	for _, r := range st.Replicas {
		if r.State == "ready" {
			ls = append(ls, r.Limit)
		}
	}
	return ls, nil
}

// runTimed keeps clients sending POSTs of body, each its next when the
// last is answered, for warm and then d, and returns the answers that
// came within d: its throughput is completions over d, its latencies
// theirs, however long ago they were sent.
func runTimed(ctx context.Context, url string, body []byte, clients int, warm, d time.Duration) result {
	tr := &http.Transport{Proxy: nil, MaxIdleConnsPerHost: clients, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 120 * time.Second}
	start := time.Now()
	from, until := start.Add(warm), start.Add(warm+d)
	var mu sync.Mutex
	res := result{failures: map[string]int{}}
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for {
				t0 := time.Now()
				if !t0.Before(until) || ctx.Err() != nil {
					return
				}
				kind := post(ctx, client, url, body)
				t1 := time.Now()
				if t1.Before(from) || t1.After(until) {
					continue // answered in the warm-up, or after the stretch
				}
				mu.Lock()
				res.total++
				if kind == "" {
					if res.ok == 0 {
						res.first = t1.Sub(from)
					}
					res.ok++
					res.last = t1.Sub(from)
					res.latencies = append(res.latencies, t1.Sub(t0))
				} else {
					res.failures[kind]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	res.wall = d
	sort.Slice(res.latencies, func(i, j int) bool { return res.latencies[i] < res.latencies[j] })
	return res
}

// parseKs parses -k: K values, comma-separated.
func parseKs(s string) ([]int, error) {
	var ks []int
	for _, f := range strings.Split(s, ",") {
		k, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || k < 1 {
			return nil, fmt.Errorf("-k %q: want whole numbers of 1 or more, comma-separated", s)
		}
		ks = append(ks, k)
	}
	return ks, nil
}

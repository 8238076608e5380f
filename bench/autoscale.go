package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Autoscaling under a step in load, run only when named:
//
//	go run ./bench -scenario autoscale [-rounds 3]
//
// mattingctl up --replicas 1:6, with no other tuning flag but a down delay
// of autoscaleDownDelay, in front of fakemodel -curve 1 -service 100ms: a
// replica that completes 10 requests a second at best, and fewer with
// more than one in flight, so that the per-replica limit (auto, the
// default) is learned while the count changes; an open-loop load
// (Poisson arrivals, each request its own, whatever the answers) of 5,
// then 35, then 5 requests a second. It reports how long after the step
// up 4 replicas were in rotation, how long after the step down the count
// was back to 1, the failed requests, p50 and p99 per phase, and the
// replica count read from `status --json` every second.

const (
	autoscaleDownDelay = 60 * time.Second
	autoscaleLow       = 5.0
	autoscaleHigh      = 35.0
)

// autoscalePhases are the load's phases: the last lasts the down delay
// and a minute more, to see the count come back to 1.
var autoscalePhases = []struct {
	rate float64
	d    time.Duration
}{{autoscaleLow, 60 * time.Second}, {autoscaleHigh, 60 * time.Second}, {autoscaleLow, autoscaleDownDelay + 60*time.Second}}

// countSample is the replica count at one status read.
type countSample struct {
	at             time.Duration // since the load began
	desired, ready int
	last           string
}

func runAutoscale(e *environment, rounds int) error {
	var ups, downs, fails []float64
	met := 0
	for round := 1; round <= rounds; round++ {
		fmt.Printf("### round %d\n\n", round)
		up, down, failed, err := autoscaleRound(e, uint64(round))
		if err != nil {
			return err
		}
		ups, downs, fails = append(ups, up.Seconds()), append(downs, down.Seconds()), append(fails, float64(failed))
		if up >= 0 && up <= 30*time.Second && down >= 0 && down <= autoscaleDownDelay+30*time.Second && failed == 0 {
			met++
		}
	}
	fmt.Printf("## autoscale, %d rounds: replicas ≥ 4 after the step up: %s (median %.0fs); back to 1 after the step down: %s (median %.0fs; down delay %s); failed: %s; within the bounds (≥ 4 within 30s, 1 within the down delay + 30s, 0 failed) in %d of %d\n",
		rounds, secondsList(ups), medianOf(ups), secondsList(downs), medianOf(downs), autoscaleDownDelay, secondsList(fails), met, rounds)
	return nil
}

func secondsList(xs []float64) string {
	var parts []string
	for _, x := range xs {
		parts = append(parts, strconv.FormatFloat(x, 'f', 0, 64))
	}
	return strings.Join(parts, ", ")
}

// autoscaleRound runs one instance through the step load and returns how
// long after the step up 4 replicas were ready and after the step down the
// count was back to 1 (negative: never), and the failed requests.
func autoscaleRound(e *environment, arrivals uint64) (upTo4, downTo1 time.Duration, failed int, err error) {
	port, err := freeRange(6 + 4)
	if err != nil {
		return 0, 0, 0, err
	}
	home := filepath.Join(e.work, "home-autoscale-"+strconv.Itoa(port))
	args := []string{"up", "--host", "127.0.0.1", "-p", strconv.Itoa(port), "--replicas", "1:6", "--admin", "none",
		"--log-level", "info", "--scale-down-delay", autoscaleDownDelay.String(),
		"--", filepath.Join(e.work, "fakemodel"), "-curve", "1", "-service", "100ms"}
	fmt.Printf("## autoscale: mattingctl %s\n\nopen-loop Poisson load, %.0f → %.0f → %.0f req/s (%s each, the last %s); scale-up delay: the default (5s); scale-down delay %s\n\n",
		strings.Join(args, " "), autoscaleLow, autoscaleHigh, autoscaleLow, autoscalePhases[0].d, autoscalePhases[2].d, autoscaleDownDelay)
	cmd := exec.Command(filepath.Join(e.work, "mattingctl"), args...)
	cmd.Env = append(os.Environ(), "MATTINGCTL_HOME="+home)
	logPath := filepath.Join(e.work, "mattingctl-autoscale-"+strconv.Itoa(port)+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return 0, 0, 0, err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return 0, 0, 0, err
	}
	defer terminate(cmd)
	in := &modelInstance{bin: filepath.Join(e.work, "mattingctl"), home: home, port: port}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		if st, err := in.status(); err == nil && st.ready() == 1 {
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logPath)
			return 0, 0, 0, fmt.Errorf("replica not ready within a minute:\n%s", log)
		}
	}

	url := "http://127.0.0.1:" + strconv.Itoa(port) + "/"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	began := time.Now()
	var counts []countSample
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				if s, err := in.counts(); err == nil {
					s.at = now.Sub(began)
					counts = append(counts, s)
				}
			}
		}
	})
	phases := openLoop(url, began, arrivals)
	cancel()
	wg.Wait()

	stepUp := autoscalePhases[0].d
	stepDown := stepUp + autoscalePhases[1].d
	upTo4, downTo1 = time.Duration(-1), time.Duration(-1)
	for _, s := range counts {
		if upTo4 < 0 && s.at >= stepUp && s.ready >= 4 {
			upTo4 = s.at - stepUp
		}
		if s.at >= stepDown && s.desired == 1 && s.ready == 1 && downTo1 < 0 {
			downTo1 = s.at - stepDown
		}
		if s.at >= stepDown && s.desired > 1 {
			downTo1 = -1 // back up again: not settled
		}
	}
	fmt.Println("| phase | req/s | sent | failed | p50 | p99 |")
	fmt.Println("|---|---|---|---|---|---|")
	for i, p := range phases {
		failed += p.total - p.ok
		fmt.Printf("| %d | %.0f | %d | %d | %s | %s |\n", i+1, autoscalePhases[i].rate, p.total, p.total-p.ok,
			p.percentile(50).Round(time.Millisecond), p.percentile(99).Round(time.Millisecond))
	}
	show := func(d time.Duration) string {
		if d < 0 {
			return "never"
		}
		return d.Round(time.Second).String()
	}
	fmt.Printf("\nreplicas ≥ 4 %s after the step up (bound: 30s); back to 1 %s after the step down (bound: the down delay %s + 30s); %d failed requests\n",
		show(upTo4), show(downTo1), autoscaleDownDelay, failed)
	ok := upTo4 >= 0 && upTo4 <= 30*time.Second && downTo1 >= 0 && downTo1 <= autoscaleDownDelay+30*time.Second && failed == 0
	fmt.Printf("%s\n\n", map[bool]string{true: "within the bounds", false: "NOT within the bounds"}[ok])
	fmt.Println("replicas in rotation, a read of status --json every second (10 to a row; the row's start in seconds since the load began):")
	fmt.Println()
	for i := 0; i < len(counts); i += 10 {
		var b strings.Builder
		for _, s := range counts[i:min(i+10, len(counts))] {
			fmt.Fprintf(&b, " %d", s.ready)
		}
		fmt.Printf("    %4.0fs:%s\n", counts[i].at.Seconds(), b.String())
	}
	fmt.Println("\ndecisions (status's last decision, as it changed):")
	last := ""
	for _, s := range counts {
		if s.last != last && s.last != "" {
			fmt.Printf("    %4.0fs  %s\n", s.at.Seconds(), s.last)
			last = s.last
		}
	}
	fmt.Println()
	return upTo4, downTo1, failed, nil
}

// openLoop sends requests at Poisson arrivals through autoscalePhases,
// each request on its own whatever became of the others, and returns each
// phase's answers (a request belongs to the phase it was sent in).
func openLoop(url string, began time.Time, arrivals uint64) []result {
	tr := &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 256, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 120 * time.Second}
	rng := rand.New(rand.NewPCG(arrivals, 2))
	res := make([]result, len(autoscalePhases))
	var mu sync.Mutex
	var wg sync.WaitGroup
	next := began
	end := began
	for i, p := range autoscalePhases {
		end = end.Add(p.d)
		for ; next.Before(end); next = next.Add(time.Duration(rng.ExpFloat64() / p.rate * float64(time.Second))) {
			time.Sleep(time.Until(next))
			wg.Go(func() {
				t0 := time.Now()
				kind := post(context.Background(), client, url, []byte(`{"image": "aGVsbG8="}`))
				d := time.Since(t0)
				mu.Lock()
				defer mu.Unlock()
				res[i].total++
				if kind == "" {
					res[i].ok++
					res[i].latencies = append(res[i].latencies, d)
				} else {
					if res[i].failures == nil {
						res[i].failures = map[string]int{}
					}
					res[i].failures[kind]++
				}
			})
		}
	}
	wg.Wait()
	for i := range res {
		sort.Slice(res[i].latencies, func(a, b int) bool { return res[i].latencies[a] < res[i].latencies[b] })
	}
	return res
}

// counts reads the replica count and the autoscaler's last decision from
// `status --json`.
func (in *modelInstance) counts() (countSample, error) {
	out, err := in.ctl("status", "--json")
	if err != nil {
		return countSample{}, err
	}
	var st struct {
		Desired  int `json:"desired"`
		Replicas []struct {
			State string `json:"state"`
		} `json:"replicas"`
		Autoscale *struct {
			Last string `json:"last"`
		} `json:"autoscale"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		return countSample{}, err
	}
	s := countSample{desired: st.Desired}
	for _, r := range st.Replicas {
		if r.State == "ready" {
			s.ready++
		}
	}
	if st.Autoscale != nil {
		s.last = st.Autoscale.Last
	}
	return s, nil
}

package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"
)

// Dynamic batching, off and on, run only when named:
//
//	go run ./bench -scenario batch [-rounds 3]
//
// 4 replicas of fakemodel -batch-cost 50ms,5ms (batch.go there: a
// GPU-like model, one pass at a time, a pass over n inputs taking 50 ms +
// n·5 ms) behind mattingctl with its defaults, and with --batch-path
// /predict --batch-endpoint /batch (--batch-max 8, --batch-wait 10ms, the
// defaults), at 1, 8 and 64 closed-loop keep-alive clients. Every request
// carries an id of its own, and an answer counts only when it carries
// that id back. Rounds interleave off and on; the table shows medians.

const (
	batchFixed    = 50 * time.Millisecond
	batchEach     = 5 * time.Millisecond
	batchWaitFlag = 10 * time.Millisecond
	batchWarm     = 3 * time.Second
	batchMeasured = 8 * time.Second
)

var batchLoads = []int{1, 8, 64}

// batchResult is a measured stretch: result, plus the answers that came
// back 200 with another request's id.
type batchResult struct {
	result
	wrong int
}

func runBatch(e *environment, rounds int) error {
	fmt.Printf("## batch: %d replicas of fakemodel -batch-cost %s,%s, mattingctl's defaults with batching off and on (--batch-path /predict --batch-endpoint /batch, --batch-max 8 --batch-wait %s), closed-loop keep-alive clients, %s warm-up then %s measured, %d rounds\n\n",
		replicas, batchFixed, batchEach, batchWaitFlag, batchWarm, batchMeasured, rounds)
	runs := map[string][]batchResult{}
	key := func(mode string, clients int) string { return mode + "/" + strconv.Itoa(clients) }
	for round := 1; round <= rounds; round++ {
		for _, mode := range []string{"off", "on"} {
			err := e.batchInstance(mode == "on", func(url string) {
				for _, c := range batchLoads {
					r := runBatchLoad(url, c, batchWarm, batchMeasured)
					fmt.Printf("round %d batching %-3s clients=%-2d %s wrong=%d\n", round, mode, c, r.line(), r.wrong)
					runs[key(mode, c)] = append(runs[key(mode, c)], r)
				}
			})
			if err != nil {
				return fmt.Errorf("batching %s: %w", mode, err)
			}
		}
	}
	tput := func(k string) float64 {
		return median(batchResults(runs[k]), func(r result) float64 { return float64(r.ok) / batchMeasured.Seconds() })
	}
	p := func(k string, q int) time.Duration {
		return time.Duration(median(batchResults(runs[k]), func(r result) float64 { return float64(r.percentile(q)) }))
	}
	fmt.Println("\n| clients | batching | req/s | p50 | p99 | answered with its own id | wrong id | failed | req/s / off | p99 / off's |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|")
	wrong := 0
	for _, c := range batchLoads {
		for _, mode := range []string{"off", "on"} {
			k := key(mode, c)
			ok, bad, failed := 0, 0, 0
			for _, r := range runs[k] {
				ok += r.ok
				bad += r.wrong
				for _, n := range r.failures {
					failed += n
				}
			}
			wrong += bad
			fmt.Printf("| %d | %s | %.1f | %s | %s | %d | %d | %d | %.2f | %.2f |\n", c, mode, tput(k),
				p(k, 50).Round(100*time.Microsecond), p(k, 99).Round(100*time.Microsecond), ok, bad, failed,
				tput(k)/tput(key("off", c)), float64(p(k, 99))/float64(p(key("off", c), 99)))
		}
	}
	hi, lo := batchLoads[len(batchLoads)-1], batchLoads[0]
	gain := tput(key("on", hi)) / tput(key("off", hi))
	added := p(key("on", lo), 50) - p(key("off", lo), 50)
	fmt.Printf("\nat %d clients: batching on serves %.2f× off's requests a second (goal: at least 3), p99 %.2f× off's (goal: at most 1)\n",
		hi, gain, float64(p(key("on", hi), 99))/float64(p(key("off", hi), 99)))
	fmt.Printf("at %d client: batching adds %s to the median (goal: at most --batch-wait + 5ms = %s)\n", lo, added.Round(100*time.Microsecond), batchWaitFlag+5*time.Millisecond)
	fmt.Printf("answers with another request's id: %d (goal: 0)\n\n", wrong)
	return nil
}

func batchResults(rs []batchResult) []result {
	out := make([]result, len(rs))
	for i, r := range rs {
		out[i] = r.result
	}
	return out
}

// batchInstance starts mattingctl, with batching on or not, in front of
// replicas fakemodels -batch-cost, runs f with its /predict URL once they
// are all ready, and stops it.
func (e *environment) batchInstance(on bool, f func(url string)) error {
	port, err := freeRange(replicas + 4)
	if err != nil {
		return err
	}
	args := []string{"-r", strconv.Itoa(replicas)}
	if on {
		args = append(args, "--batch-path", "/predict", "--batch-endpoint", "/batch")
	}
	args = append(args, "--", filepath.Join(e.work, "fakemodel"), "-batch-cost", batchFixed.String()+","+batchEach.String())
	in, err := e.startInstance(filepath.Join(e.work, "mattingctl"), "batch-"+strconv.Itoa(port), port, replicas, time.Minute, args)
	if err != nil {
		return err
	}
	defer in.stop()
	f("http://127.0.0.1:" + strconv.Itoa(port) + "/predict")
	return nil
}

// runBatchLoad runs clients closed-loop keep-alive clients against url for
// warm then d, each request {"id": "C-N", ...} with an id of its own, and
// measures the requests answered within d: ok when the answer is a 200
// that carries the request's id, wrong when a 200 carries another.
func runBatchLoad(url string, clients int, warm, d time.Duration) batchResult {
	tr := &http.Transport{Proxy: nil, MaxIdleConnsPerHost: clients, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 120 * time.Second}
	start := time.Now()
	from, until := start.Add(warm), start.Add(warm+d)
	var mu sync.Mutex
	res := batchResult{result: result{failures: map[string]int{}}}
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			for n := 0; ; n++ {
				t0 := time.Now()
				if !t0.Before(until) {
					return
				}
				id := strconv.Itoa(c) + "-" + strconv.Itoa(n)
				kind, got := postID(client, url, id)
				t1 := time.Now()
				if t1.Before(from) || t1.After(until) {
					continue // answered in the warm-up, or after the stretch
				}
				mu.Lock()
				res.total++
				switch {
				case kind != "":
					res.failures[kind]++
				case got != id:
					res.wrong++
				default:
					if res.ok == 0 {
						res.first = t1.Sub(from)
					}
					res.ok++
					res.last = t1.Sub(from)
					res.latencies = append(res.latencies, t1.Sub(t0))
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

// postID posts {"id": id, "image": ...} and returns "" and the answer's
// id for a 200 whose body is JSON with one, else the kind of failure.
func postID(client *http.Client, url, id string) (kind, got string) {
	body, _ := json.Marshal(map[string]string{"id": id, "image": "aGVsbG8="})
	resp, err := client.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return errorKind(err), ""
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return errorKind(err), ""
	}
	if resp.StatusCode != http.StatusOK {
		return strconv.Itoa(resp.StatusCode), ""
	}
	var a struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(b, &a); err != nil {
		return "not JSON", ""
	}
	return "", a.ID
}

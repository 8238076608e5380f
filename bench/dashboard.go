package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"
)

// The dashboard's cost, run only when named:
//
//	go run ./bench -scenario dashboard [-rounds 5] [-requests 60000]
//
// One mattingctl (a release build) in front of 4 instant replicas, 64
// keep-alive clients sending a small JSON body, measured with nobody
// looking at the dashboard ("closed") and with a viewer polling
// /api/dashboard once a second as the page does ("open": everything once,
// then what is new), in alternating order round after round on the same
// instance, so that drift falls on both. The viewer is a Go client, not a
// browser: a browser runs on the viewer's machine, and its cost there is
// not the proxy's.

func runDashboardCost(e *environment, rounds, requests int) error {
	port, err := freeRange(replicas + 2)
	if err != nil {
		return err
	}
	admin := "127.0.0.1:" + strconv.Itoa(port+replicas+1)
	sc := scenario{clients: 64, requests: requests, keepAlive: true, mattingctl: []string{"--admin", admin}}
	p, err := e.startMattingctl(port, sc)
	if err != nil {
		return err
	}
	defer p.stop()
	url := "http://127.0.0.1:" + strconv.Itoa(port) + "/api/matting_base64"
	if err := waitUp(url, 60*time.Second); err != nil {
		return fmt.Errorf("mattingctl did not come up: %w", err)
	}
	body := []byte(`{"image": "aGVsbG8=", "bg": "[33, 150, 242]"}`)
	fmt.Printf("## dashboard: %d requests per run, 64 keep-alive clients, 4 instant replicas; the dashboard closed, and open (polled once a second as the page does), alternating, %d rounds\n\n",
		requests, rounds)
	runLoad(context.Background(), url, body, sc.clients, requests/4, true) // warm-up, not counted
	results := map[string][]result{}
	polls := 0
	for round := 1; round <= rounds; round++ {
		modes := []string{"closed", "open"}
		if round%2 == 0 {
			modes = []string{"open", "closed"}
		}
		for _, mode := range modes {
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			if mode == "open" {
				wg.Add(1)
				go func() {
					defer wg.Done()
					polls += viewDashboard(ctx, "http://"+admin)
				}()
			}
			r := runLoad(context.Background(), url, body, sc.clients, requests, true)
			cancel()
			wg.Wait()
			fmt.Printf("round %d %-7s %s\n", round, mode, r.line())
			results[mode] = append(results[mode], r)
		}
	}
	tput := func(mode string) float64 {
		return median(results[mode], func(r result) float64 { return r.throughput() })
	}
	fmt.Println("\n| dashboard | throughput (req/s), median | p50 | p99 |")
	fmt.Println("|---|---|---|---|")
	for _, mode := range []string{"closed", "open"} {
		rs := results[mode]
		p50 := median(rs, func(r result) float64 { return float64(r.percentile(50)) })
		p99 := median(rs, func(r result) float64 { return float64(r.percentile(99)) })
		fmt.Printf("| %s | %.0f | %s | %s |\n", mode, tput(mode), time.Duration(p50).Round(10*time.Microsecond), time.Duration(p99).Round(10*time.Microsecond))
	}
	all := append(append([]result(nil), results["closed"]...), results["open"]...)
	sort.Slice(all, func(i, j int) bool { return all[i].throughput() < all[j].throughput() })
	fmt.Printf("\nopen / closed: %+.1f%% (%d dashboard polls answered; runs ranged %.0f-%.0f req/s)\n",
		100*(tput("open")/tput("closed")-1), polls, all[0].throughput(), all[len(all)-1].throughput())
	return nil
}

// viewDashboard polls base's /api/dashboard as the page does, once a
// second, until ctx ends, and returns how many answers it read.
func viewDashboard(ctx context.Context, base string) int {
	client := &http.Client{Timeout: 5 * time.Second}
	var since int64
	var after uint64
	n := 0
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/api/dashboard?since=%d&after=%d", base, since, after), nil)
		if resp, err := client.Do(req); err == nil {
			var st struct {
				Series struct {
					T []int64 `json:"t"`
				} `json:"series"`
				Events []struct {
					Seq uint64 `json:"seq"`
				} `json:"events"`
			}
			if json.NewDecoder(resp.Body).Decode(&st) == nil {
				n++
				if len(st.Series.T) > 0 {
					since = st.Series.T[len(st.Series.T)-1]
				}
				if len(st.Events) > 0 {
					after = st.Events[len(st.Events)-1].Seq
				}
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return n
		}
	}
}

package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mattingctl/mattingctl/internal/testutil"
)

// legitFrom is the address the legitimate client of an attack scenario
// connects from: Linux routes all of 127.0.0.0/8 to lo, and the attackers
// use 127.0.0.1, so each has its own per-address share.
const legitFrom = "127.0.0.2"

// legitClients is how many keep-alive connections the legitimate client
// sends from, each its next request once the last is answered.
const legitClients = 8

// legitBody is the legitimate client's request body: 1 KB.
var legitBody = bytes.Repeat([]byte("k"), 1000)

// legitLoad is a legitimate client beside an attack: it POSTs legitBody
// from legitFrom until finished, and counts what it sent and what was
// answered 200. Its goroutines end with finish, or with the context it
// was started with.
type legitLoad struct {
	sent, ok atomic.Int64
	start    time.Time
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	tr       *http.Transport

	mu        sync.Mutex      // guards failures and latencies
	failures  map[string]int  // by kind: a status or a network error
	latencies []time.Duration // of the requests answered 200

	finished sync.Once
	result   legitResult // set by the first finish
}

// legitResult is what a legitimate client saw.
type legitResult struct {
	sent, ok  int64
	failures  map[string]int
	latencies []time.Duration // of the requests answered 200, sorted
	wall      time.Duration
}

// startLegit starts a legitimate client sending to url.
func startLegit(ctx context.Context, url string) *legitLoad {
	ctx, cancel := context.WithCancel(ctx)
	l := &legitLoad{start: time.Now(), cancel: cancel, failures: map[string]int{}}
	l.tr = &http.Transport{
		DialContext:         testutil.FromAddr(legitFrom).DialContext,
		MaxIdleConnsPerHost: legitClients,
		DisableCompression:  true,
	}
	client := &http.Client{Transport: l.tr, Timeout: 30 * time.Second}
	for range legitClients {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for ctx.Err() == nil {
				t0 := time.Now()
				kind := post(ctx, client, url, legitBody)
				took := time.Since(t0)
				if ctx.Err() != nil && kind != "" {
					return // cut short by finish: not the target's doing
				}
				l.sent.Add(1)
				l.mu.Lock()
				if kind == "" {
					l.ok.Add(1)
					l.latencies = append(l.latencies, took)
				} else {
					l.failures[kind]++
				}
				l.mu.Unlock()
			}
		}()
	}
	return l
}

// served is how many requests have been answered 200 so far.
func (l *legitLoad) served() int64 { return l.ok.Load() }

// finish stops the client and returns what it saw; a request under way
// is abandoned, not counted. Later calls return the first one's result,
// so that a deferred finish can follow the measured one.
func (l *legitLoad) finish() legitResult {
	l.finished.Do(func() {
		l.cancel()
		l.wg.Wait()
		l.tr.CloseIdleConnections()
		l.mu.Lock()
		defer l.mu.Unlock()
		sort.Slice(l.latencies, func(i, j int) bool { return l.latencies[i] < l.latencies[j] })
		l.result = legitResult{sent: l.sent.Load(), ok: l.ok.Load(), failures: l.failures, latencies: l.latencies, wall: time.Since(l.start)}
	})
	return l.result
}

// percent is the share of requests answered 200, in percent.
func (r legitResult) percent() float64 {
	if r.sent == 0 {
		return 0
	}
	return 100 * float64(r.ok) / float64(r.sent)
}

// percentile is the p-th percentile latency of the requests answered
// 200, or 0 when there were none.
func (r legitResult) percentile(p int) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	i := (len(r.latencies)*p + 99) / 100
	return r.latencies[min(max(i-1, 0), len(r.latencies)-1)]
}

// failed lists the failures by kind, or "none".
func (r legitResult) failed() string { return byKind(r.failures) }

// byKind lists counts by kind ("408: 128, 429: 125656"), sorted, or
// "none".
func byKind(counts map[string]int) string {
	if len(counts) == 0 {
		return "none"
	}
	var kinds []string
	for k, n := range counts {
		kinds = append(kinds, fmt.Sprintf("%s: %d", k, n))
	}
	sort.Strings(kinds)
	return strings.Join(kinds, ", ")
}

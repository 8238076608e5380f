package main

import (
	"bytes"
	"context"
	"fmt"
	"image"
	_ "image/jpeg" // register the decoders for image.DecodeConfig
	_ "image/png"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/mattingctl/mattingctl/examples/grpc-matting/mattingpb"
	"github.com/mattingctl/mattingctl/examples/sample"
)

// maxMessage is the largest reply accepted, as the server's largest.
const maxMessage = 50 << 20

// result is one call's outcome.
type result struct {
	replica string // who answered; empty on failure
	took    time.Duration
	png     []byte // the first result only, for -out
	err     error
}

// loadImage reads path, or returns the built-in sample when path is empty.
func loadImage(path string) ([]byte, error) {
	if path == "" {
		return sample.JPEG, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if _, _, err := image.DecodeConfig(bytes.NewReader(data)); err != nil {
		return nil, fmt.Errorf("%s is not a PNG or JPEG: %v", path, err)
	}
	return data, nil
}

// run makes the calls of cfg on one connection, cfg.c at a time, and
// returns their results in the order they ended.
func run(ctx context.Context, cfg config, image []byte) ([]result, time.Duration, error) {
	// passthrough: one address, so one connection, whatever the name
	// resolves to.
	cc, err := grpc.NewClient("passthrough:///"+cfg.addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMessage), grpc.MaxCallSendMsgSize(maxMessage)))
	if err != nil {
		return nil, 0, err
	}
	defer cc.Close()
	client := mattingpb.NewMattingClient(cc)
	req := &mattingpb.MatteRequest{Image: image, Bg: cfg.bg}

	var stop <-chan time.Time // nil: -n calls
	if cfg.duration > 0 {
		t := time.NewTimer(cfg.duration)
		defer t.Stop()
		stop = t.C
	}
	// tickets hands out the calls: -n of them, or as many as fit in
	// -duration.
	tickets := make(chan int)
	go func() {
		defer close(tickets)
		for i := 0; cfg.duration > 0 || i < cfg.n; i++ {
			select {
			case tickets <- i:
			case <-stop:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	var mu sync.Mutex
	var results []result
	var wg sync.WaitGroup
	start := time.Now()
	for range cfg.c {
		wg.Go(func() {
			for i := range tickets {
				cctx, cancel := context.WithTimeout(ctx, cfg.timeout)
				t0 := time.Now()
				reply, err := client.Matte(cctx, req)
				cancel()
				r := result{took: time.Since(t0), err: err}
				if err == nil {
					r.replica = reply.GetReplica()
					if i == 0 {
						r.png = reply.GetPng()
					}
				}
				mu.Lock()
				results = append(results, r)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return results, time.Since(start), nil
}

// report is the summary line, the calls per replica, and the failures by
// status.
func report(results []result, elapsed time.Duration) string {
	var ok []time.Duration
	perReplica := map[string]int{}
	failures := map[string]int{}
	for _, r := range results {
		if r.err != nil {
			st := status.Convert(r.err)
			failures[st.Code().String()+": "+st.Message()]++
			continue
		}
		ok = append(ok, r.took)
		perReplica[r.replica]++
	}
	slices.Sort(ok)
	var b strings.Builder
	fmt.Fprintf(&b, "calls=%d ok=%d failed=%d throughput=%.1f calls/s", len(results), len(ok), len(results)-len(ok),
		float64(len(ok))/elapsed.Seconds())
	if len(ok) > 0 {
		fmt.Fprintf(&b, " p50=%s p99=%s max=%s", percentile(ok, 0.50), percentile(ok, 0.99), ok[len(ok)-1].Round(time.Millisecond))
	}
	b.WriteString("\n")
	for _, name := range sortedKeys(perReplica) {
		n := perReplica[name]
		fmt.Fprintf(&b, "%-12s %6d %5.1f%%\n", name, n, 100*float64(n)/float64(len(ok)))
	}
	if len(failures) > 0 {
		b.WriteString("failures:\n")
		for _, f := range sortedKeys(failures) {
			fmt.Fprintf(&b, "%6d  %s\n", failures[f], f)
		}
	}
	return b.String()
}

// percentile returns the p-th quantile of sorted, rounded for display.
func percentile(sorted []time.Duration, p float64) time.Duration {
	i := int(p*float64(len(sorted)) + 0.5)
	i = min(max(i-1, 0), len(sorted)-1)
	return sorted[i].Round(time.Millisecond)
}

func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"time"
)

// payload is one request body of a scenario that sends several, each
// with a table of its own.
type payload struct {
	name string
	// size is the body's length in bytes: a JSON body shaped as the
	// original load test's, its image a prefix of the sample's base64.
	// Zero: the original load test's body itself.
	size      int
	requests  int    // per run
	reference string // the target the table compares the others with
}

// runPayloads runs a scenario that has payloads: in each round every
// payload against every target, so that whatever else the machine does
// falls on all of them alike, then a table per payload.
func (e *environment) runPayloads(sc scenario, targets []string, rounds int, image string, original []byte) error {
	bodies := make([][]byte, len(sc.payloads))
	results := make([]map[string][]result, len(sc.payloads))
	for i, p := range sc.payloads {
		bodies[i] = original
		if p.size > 0 {
			b, err := sizedPayload(image, p.size)
			if err != nil {
				return err
			}
			bodies[i] = b
		}
		results[i] = map[string][]result{}
	}
	fmt.Printf("## %s: %s; %s\n\n", sc.name, sc.about, haproxyVersion())
	for round := 1; round <= rounds; round++ {
		for i, p := range sc.payloads {
			run := sc
			run.requests = p.requests
			for _, name := range targets {
				r, err := e.measure(context.Background(), name, run, bodies[i])
				if err != nil {
					return fmt.Errorf("%s, %s, %s: %w", sc.name, p.name, name, err)
				}
				fmt.Printf("round %d %-8s %-16s %s cpu/request=%s user=%s\n", round, p.name, name, r.line(), formatCPU(cpuPerRequest(r)), formatCPU(userPerRequest(r)))
				results[i][name] = append(results[i][name], r)
			}
		}
	}
	for i, p := range sc.payloads {
		fmt.Printf("\n### %s body (%d bytes), %d requests a run; reference: %s\n\n", p.name, len(bodies[i]), p.requests, p.reference)
		printCostTable(targets, p.reference, results[i])
	}
	over := "rounds"
	if rounds == 1 {
		over = "round"
	}
	fmt.Printf("\n(medians over %d %s; CPU is user + system time of the proxy's own processes over the load, divided by the requests answered, and its user-mode part beside it: mattingctl's supervisor, which runs its proxy, not its replicas; nginx's master and workers; HAProxy's process)\n\n", rounds, over)
	return nil
}

// cpuPerRequest is r's proxy CPU time per answered request in
// milliseconds, or NaN when it was not read or nothing was answered.
func cpuPerRequest(r result) float64 { return perRequest(r, r.cpu) }

// userPerRequest is cpuPerRequest's user-mode part.
func userPerRequest(r result) float64 { return perRequest(r, r.user) }

func perRequest(r result, d time.Duration) float64 {
	if !r.hasCPU || r.ok == 0 {
		return math.NaN()
	}
	return float64(d) / float64(time.Millisecond) / float64(r.ok)
}

// medianCPU is the median CPU per request over the runs that have it, or
// NaN for none.
func medianCPU(rs []result) float64 { return medianPer(rs, cpuPerRequest) }

// medianPer is the median of per over the runs where it is known, or NaN
// for none.
func medianPer(rs []result, per func(result) float64) float64 {
	var v []float64
	for _, r := range rs {
		if c := per(r); !math.IsNaN(c) {
			v = append(v, c)
		}
	}
	if len(v) == 0 {
		return math.NaN()
	}
	return medianOf(v)
}

func formatCPU(ms float64) string {
	if math.IsNaN(ms) {
		return "-"
	}
	return fmt.Sprintf("%.3f ms", ms)
}

// ratio is a / b as "1.23x", or "-" when either is unknown or b is zero.
func ratio(a, b float64) string {
	if math.IsNaN(a) || math.IsNaN(b) || b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", a/b)
}

func printCostTable(targets []string, reference string, results map[string][]result) {
	tput := func(r result) float64 { return r.throughput() }
	refCPU, refTput := math.NaN(), math.NaN()
	if rs, ok := results[reference]; ok {
		refCPU, refTput = medianCPU(rs), median(rs, tput)
	}
	fmt.Println("| target | answered | req/s | p50 | p99 | CPU ms/request | of it user mode | CPU vs reference | req/s vs reference |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|")
	for _, name := range targets {
		rs := results[name]
		ok := median(rs, func(r result) float64 { return float64(r.ok) })
		p50 := median(rs, func(r result) float64 { return float64(r.percentile(50)) })
		p99 := median(rs, func(r result) float64 { return float64(r.percentile(99)) })
		cpu, t := medianCPU(rs), median(rs, tput)
		fmt.Printf("| %s | %.0f of %d | %.0f | %s | %s | %s | %s | %s | %s |\n", name, ok, rs[0].total, t,
			time.Duration(p50).Round(100*time.Microsecond), time.Duration(p99).Round(100*time.Microsecond),
			formatCPU(cpu), formatCPU(medianPer(rs, userPerRequest)), ratio(cpu, refCPU), ratio(t, refTput))
	}
}

// sizedPayload is a JSON body of exactly size bytes shaped as the
// original load test's: its image a prefix of image's base64, which the
// instant replicas do not decode.
func sizedPayload(image string, size int) ([]byte, error) {
	img, err := os.ReadFile(image)
	if err != nil {
		return nil, fmt.Errorf("reading the payload image (run bench from the repository root): %w", err)
	}
	shape := func(s string) ([]byte, error) {
		return json.Marshal(map[string]string{"image": s, "bg": "[33, 150, 242]"})
	}
	empty, err := shape("")
	if err != nil {
		return nil, err
	}
	b64 := base64.StdEncoding.EncodeToString(img)
	n := size - len(empty)
	if n < 0 || n > len(b64) {
		return nil, fmt.Errorf("a %d-byte body: between %d and %d bytes from %s", size, len(empty), len(empty)+len(b64), image)
	}
	return shape(b64[:n])
}

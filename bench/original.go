package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"time"
)

var (
	clientTime    = regexp.MustCompile(`^time:([0-9.]+)s$`)
	clientSummary = regexp.MustCompile(`^requests=(\d+) ok=(\d+) failed=(\d+) elapsed=([0-9.]+)s`)
	clientError   = regexp.MustCompile(`^error: (\d+)x (.*)$`)
)

// runPythonClient runs the original threaded load test against url: n
// threads started at once, each POSTing the sample portrait and decoding
// the matted image it gets back. Its own timings are what count: wall is
// the client's elapsed time, latencies its per-request times. It runs on
// cpus when set.
func runPythonClient(ctx context.Context, cpus, url string, n int) (result, error) {
	cmd := commandContext(ctx, cpus, "python3", "examples/flask-matting/client.py", "--url", url, "-n", strconv.Itoa(n))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	res := result{total: n, failures: map[string]int{}}
	summary := false
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		line := sc.Text()
		if m := clientTime.FindStringSubmatch(line); m != nil {
			secs, _ := strconv.ParseFloat(m[1], 64)
			res.latencies = append(res.latencies, time.Duration(secs*float64(time.Second)))
		} else if m := clientSummary.FindStringSubmatch(line); m != nil {
			summary = true
			res.ok, _ = strconv.Atoi(m[2])
			secs, _ := strconv.ParseFloat(m[4], 64)
			res.wall = time.Duration(secs * float64(time.Second))
		} else if m := clientError.FindStringSubmatch(line); m != nil {
			k, _ := strconv.Atoi(m[1])
			res.failures[truncate(m[2], 60)] += k
		}
	}
	if !summary {
		return res, fmt.Errorf("the Python client printed no summary (%v):\n%s", err, truncate(out.String(), 2000))
	}
	if failed := res.total - res.ok; failed > 0 && len(res.failures) == 0 {
		res.failures["failed"] = failed
	}
	sort.Slice(res.latencies, func(i, j int) bool { return res.latencies[i] < res.latencies[j] })
	if len(res.latencies) > 0 {
		res.first, res.last = res.latencies[0], res.wall
	}
	return res, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

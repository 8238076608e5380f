package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mattingctl/mattingctl/internal/tune"
	"github.com/mattingctl/mattingctl/replica"
)

// The tune check, run only when named:
//
//	go run ./bench -scenario tune [-rounds 3] [-budget 10m] [-duration 20s]
//
// It runs `mattingctl tune` (this tree's binary) on the Flask example
// (examples/flask-matting, OpenCV GrabCut) with the sample portrait as the
// original load test posts it, then starts the `up` line tune printed on a
// free port and drives it with tune's own load driver (tune.Drive), with
// the clients, warm-up and duration tune measured the best layout with,
// -rounds times, one instance for all of them, as a user would run it. It
// prints tune's best (the median of its runs), the up line's
// measurements, their median and the ratio of the two, which should be
// near 1: a ratio well below it is tune promising more than the line
// delivers. And how long tune took against its --budget.

// tuneCheckOptions are the tune check's flags.
type tuneCheckOptions struct {
	rounds           int
	budget, duration time.Duration
	bin              string // mattingctl to run; empty: this tree's
}

const tuneApp = "examples/flask-matting/app.py"

func runTuneCheck(e *environment, o tuneCheckOptions) error {
	bin := o.bin
	if bin == "" {
		bin = filepath.Join(e.work, "mattingctl")
	}
	python := "python3"
	if _, err := os.Stat("/usr/bin/python3"); err == nil {
		python = "/usr/bin/python3" // where Debian's OpenCV is installed
	}
	body, err := originalPayload("examples/sample/sample.jpg")
	if err != nil {
		return err
	}
	bodyPath, reqPath := filepath.Join(e.work, "body.json"), filepath.Join(e.work, "req.json")
	if err := os.WriteFile(bodyPath, body, 0o644); err != nil {
		return err
	}
	reqJSON := `{"method": "POST", "path": "/api/matting_base64", "headers": {"Content-Type": "application/json"}, "body_file": "body.json"}`
	if err := os.WriteFile(reqPath, []byte(reqJSON), 0o644); err != nil {
		return err
	}
	w, err := replica.LoadWarmup(reqPath)
	if err != nil {
		return fmt.Errorf("the request file: %w", err)
	}
	req := tune.Request{Method: w.Method, Target: w.Target, Header: w.Header, Host: w.Host, Body: w.Body}

	fmt.Printf("## tune: mattingctl tune on the Flask example (%s), the sample portrait (%d-byte body), --budget %s --duration %s; then its up line, driven %d times as tune drives a layout\n\n",
		tuneApp, len(body), o.budget, o.duration, o.rounds)
	fmt.Printf("load average before: %s\n\n", loadAverage())
	args := []string{"tune", "--request", reqPath, "--health", "/health", "--budget", o.budget.String(), "--duration", o.duration.String(), "--", python, tuneApp}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "MATTINGCTL_HOME="+filepath.Join(e.work, "home-tune"))
	var stdout, stderr strings.Builder
	cmd.Stdout = io.MultiWriter(os.Stdout, &stdout)
	cmd.Stderr = io.MultiWriter(os.Stdout, &stderr)
	begun := time.Now()
	runErr := cmd.Run()
	took := time.Since(begun)
	if runErr != nil {
		return fmt.Errorf("mattingctl tune: %v", runErr)
	}
	best, err := parseTuneOutput(stdout.String(), stderr.String())
	if err != nil {
		return err
	}
	fmt.Printf("\ntune took %s of its --budget %s; load average after: %s\n\n", took.Round(time.Second), o.budget, loadAverage())

	in, err := e.startUpLine(bin, best.up)
	if err != nil {
		return err
	}
	defer in.stop()
	url := "http://127.0.0.1:" + strconv.Itoa(in.port)
	load := tune.Load{Clients: best.clients, Warmup: best.warmup, Duration: best.duration}
	var rates []float64
	for round := 1; round <= o.rounds; round++ {
		m, err := tune.Drive(context.Background(), url, req, load)
		if err != nil {
			return fmt.Errorf("driving the up line: %w", err)
		}
		rates = append(rates, m.Throughput())
		fmt.Printf("up line, round %d: %.2f req/s  p50 %s  p99 %s  errors %d %s\n", round, m.Throughput(),
			m.P50.Round(10*time.Millisecond), m.P99.Round(10*time.Millisecond), m.Errors, m.FirstFail)
	}
	up := lowerMedian(rates)
	fmt.Println()
	fmt.Println("| | requests/s | runs |")
	fmt.Println("|---|---|---|")
	fmt.Printf("| tune's best (%s), its median | %.2f | %d |\n", best.layout, best.rate, best.runs)
	fmt.Printf("| the up line, %d clients, %s warm-up + %s each, median | %.2f | %d |\n", best.clients, best.warmup, best.duration, up, len(rates))
	fmt.Printf("\nup line / tune's best: %.2f (want at least 0.95); tune took %s of --budget %s; load average after: %s\n",
		up/best.rate, took.Round(time.Second), o.budget, loadAverage())
	return nil
}

// tuneBest is what tune's output says of its best layout.
type tuneBest struct {
	up       string // the up line, as printed
	layout   string // "1x2 inflight 2", for the table
	rate     float64
	runs     int
	clients  int
	warmup   time.Duration
	duration time.Duration
}

var tunePlanLine = regexp.MustCompile(`; (\S+) of warm-up and (\S+) measured per layout`)

// parseTuneOutput reads tune's best row (the table's first), its up line,
// and, from its plan line on stderr, the warm-up and duration.
func parseTuneOutput(out, errOut string) (tuneBest, error) {
	var b tuneBest
	m := tunePlanLine.FindStringSubmatch(errOut)
	if m == nil {
		return b, errors.New("tune's output has no plan line (\"... of warm-up and ... measured per layout\")")
	}
	var err1, err2 error
	b.warmup, err1 = time.ParseDuration(m[1])
	b.duration, err2 = time.ParseDuration(m[2])
	if err := errors.Join(err1, err2); err != nil {
		return b, fmt.Errorf("tune's plan line: %w", err)
	}
	lines := strings.Split(out, "\n")
	cells := regexp.MustCompile(`\s{2,}`)
	for i, l := range lines {
		if strings.HasPrefix(l, "REPLICAS") && i+1 < len(lines) {
			head, row := cells.Split(strings.TrimSpace(l), -1), cells.Split(strings.TrimSpace(lines[i+1]), -1)
			col := func(name string) string {
				if j := slices.Index(head, name); j >= 0 && j < len(row) {
					return row[j]
				}
				return ""
			}
			b.rate, err1 = strconv.ParseFloat(col("REQ/S"), 64)
			b.clients, err2 = strconv.Atoi(col("CLIENTS"))
			runs, err3 := strconv.Atoi(col("RUNS"))
			if err := errors.Join(err1, err2, err3); err != nil {
				return b, fmt.Errorf("tune's best row %q: %w", lines[i+1], err)
			}
			b.runs = runs
			inflight, _, _ := strings.Cut(col("INFLIGHT"), " ")
			b.layout = fmt.Sprintf("replicas %s, CPUs %s, inflight %s", col("REPLICAS"), col("CPUS"), inflight)
		}
		if strings.HasPrefix(l, "best: ") && i+1 < len(lines) {
			b.up = strings.TrimSpace(lines[i+1])
		}
	}
	if b.up == "" || b.rate == 0 {
		return b, errors.New("tune printed no table or no up line")
	}
	return b, nil
}

// startUpLine starts tune's up line with this tree's binary on free
// 127.0.0.1 ports, without the admin listener, and waits until its
// replicas are ready, printing how long they took.
func (e *environment) startUpLine(bin, line string) (*modelInstance, error) {
	args, err := shellSplit(line)
	if err != nil || len(args) < 3 || args[0] != "mattingctl" || args[1] != "up" {
		return nil, fmt.Errorf("tune's up line %q is not `mattingctl up ...` (%v)", line, err)
	}
	n := 1
	if i := slices.Index(args, "--replicas"); i > 0 && i+1 < len(args) {
		if n, err = strconv.Atoi(args[i+1]); err != nil {
			return nil, fmt.Errorf("tune's up line %q: --replicas %w", line, err)
		}
	}
	port, err := freeRange(n + 1)
	if err != nil {
		return nil, err
	}
	fmt.Printf("starting the up line: mattingctl %s\n", strings.Join(args[1:], " "))
	begun := time.Now()
	// As long as up's --ready-timeout: four Python replicas importing
	// OpenCV on a machine loaded by others took more than 2 minutes.
	in, err := e.startInstance(bin, "upline-"+strconv.Itoa(port), port, n, 5*time.Minute, args[2:])
	if err == nil {
		fmt.Printf("ready after %s\n", time.Since(begun).Round(time.Second))
	}
	return in, err
}

// shellSplit splits a line as a POSIX shell would the words tune's up
// line quotes (tune.UpLine): spaces separate, single quotes quote, and a
// backslash outside them makes the next character literal ('\”).
func shellSplit(line string) ([]string, error) {
	var words []string
	var cur strings.Builder
	quoted, escaped, started := false, false, false
	for _, r := range line {
		switch {
		case escaped:
			cur.WriteRune(r)
			escaped = false
		case r == '\'':
			quoted, started = !quoted, true
		case r == '\\' && !quoted:
			escaped, started = true, true
		case r == ' ' && !quoted:
			if started {
				words = append(words, cur.String())
				cur.Reset()
				started = false
			}
		default:
			cur.WriteRune(r)
			started = true
		}
	}
	if quoted || escaped {
		return nil, errors.New("an unclosed quote")
	}
	if started {
		words = append(words, cur.String())
	}
	return words, nil
}

// lowerMedian is the median of v, the lower of the middle two of an even
// count, as tune takes it.
func lowerMedian(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[(len(s)-1)/2]
}

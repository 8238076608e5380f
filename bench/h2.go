package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The HTTP/2 scenario, run only when named:
//
//	go run ./bench -scenario h2
//
// h2load (apt-get install nghttp2-client) sends 64 concurrent requests to
// one instant fakemodel replica, directly and through mattingctl (a release
// build, -r 1, default flags): over HTTP/2 (h2c with prior knowledge, 4
// connections of 16 streams; the replica speaks h2c with -h2c) and over
// HTTP/1.1 (h2load --h1, 64 connections). The table gives each run's
// median requests per second over the rounds, and the ratios: what the
// proxy costs with each protocol, and HTTP/2 against HTTP/1.1 through the
// proxy.

const h2Requests = 20000

type h2Run struct {
	name  string
	proxy bool     // through mattingctl, else straight to the replica
	args  []string // h2load's protocol and concurrency flags
}

var h2Runs = []h2Run{
	{"h2c direct", false, []string{"-c", "4", "-m", "16"}},
	{"h2c via mattingctl", true, []string{"-c", "4", "-m", "16"}},
	{"http/1.1 direct", false, []string{"--h1", "-c", "64", "-m", "1"}},
	{"http/1.1 via mattingctl", true, []string{"--h1", "-c", "64", "-m", "1"}},
}

// h2loadStats is what one h2load run reports.
type h2loadStats struct {
	reqPerSec float64
	mean      time.Duration // mean time for a request
	total     int
	s2xx      int
}

var (
	h2loadDone   = regexp.MustCompile(`finished in [^,]+, ([\d.]+) req/s`)
	h2loadCodes  = regexp.MustCompile(`status codes: (\d+) 2xx`)
	h2loadTotal  = regexp.MustCompile(`requests: (\d+) total`)
	h2loadPerReq = regexp.MustCompile(`time for request:\s+(\S+)\s+(\S+)\s+(\S+)`)
)

func runH2(e *environment) error {
	h2load, err := exec.LookPath("h2load")
	if err != nil {
		return fmt.Errorf("the h2 scenario needs h2load: apt-get install nghttp2-client")
	}
	port, err := freeRange(3)
	if err != nil {
		return err
	}
	proxyPort, replicaPort, directPort := port, port+1, port+2

	direct, err := e.startFakemodel(directPort, "-h2c")
	if err != nil {
		return err
	}
	defer direct()
	home := filepath.Join(e.work, "home-h2")
	logPath := filepath.Join(e.work, "mattingctl-h2.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logf.Close()
	args := []string{"up", "--host", "127.0.0.1", "-p", strconv.Itoa(proxyPort),
		"--base-port", strconv.Itoa(replicaPort), "-r", "1", "--admin", "none", "--log-level", "warn"}
	for _, kv := range replicaEnv {
		args = append(args, "--env", kv)
	}
	cmd := exec.Command(filepath.Join(e.work, "mattingctl"), append(args, "--", filepath.Join(e.work, "fakemodel"))...)
	cmd.Env = append(os.Environ(), "MATTINGCTL_HOME="+home)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return err
	}
	defer terminate(cmd)
	for _, p := range []int{proxyPort, directPort} {
		if err := waitAnswering(p, 20*time.Second); err != nil {
			return fmt.Errorf("%w; see %s", err, logPath)
		}
	}

	fmt.Printf("## h2: h2load, %d requests, 64 at once, to 1 instant fakemodel replica (GOMAXPROCS=1): HTTP/2 (h2c, -c 4 -m 16) and HTTP/1.1 (--h1 -c 64), directly and through mattingctl -r 1\n\n", h2Requests)
	rounds := 3
	results := map[string][]h2loadStats{}
	for round := 1; round <= rounds; round++ {
		for _, r := range h2Runs {
			p := directPort
			if r.proxy {
				p = proxyPort
			}
			url := "http://127.0.0.1:" + strconv.Itoa(p) + "/"
			// A short warm-up: connections to the replica, the proxy's pools.
			if _, err := runH2load(h2load, url, 1000, r.args); err != nil {
				return fmt.Errorf("%s: %w", r.name, err)
			}
			st, err := runH2load(h2load, url, h2Requests, r.args)
			if err != nil {
				return fmt.Errorf("%s: %w", r.name, err)
			}
			fmt.Printf("round %d %-24s %8.0f req/s, mean %s, %d of %d 2xx\n", round, r.name, st.reqPerSec, st.mean, st.s2xx, st.total)
			results[r.name] = append(results[r.name], st)
		}
	}
	med := func(name string) h2loadStats {
		rs := append([]h2loadStats(nil), results[name]...)
		sort.Slice(rs, func(i, j int) bool { return rs[i].reqPerSec < rs[j].reqPerSec })
		return rs[len(rs)/2]
	}
	fmt.Println()
	fmt.Println("| run | req/s (median) | mean time per request | answered 2xx |")
	fmt.Println("|---|---|---|---|")
	for _, r := range h2Runs {
		m := med(r.name)
		fmt.Printf("| %s | %.0f | %s | %d of %d |\n", r.name, m.reqPerSec, m.mean, m.s2xx, m.total)
	}
	ratio := func(a, b string) float64 { return med(a).reqPerSec / med(b).reqPerSec }
	fmt.Println()
	fmt.Println("| ratio | value |")
	fmt.Println("|---|---|")
	fmt.Printf("| h2c: via mattingctl / direct | %.2f |\n", ratio("h2c via mattingctl", "h2c direct"))
	fmt.Printf("| http/1.1: via mattingctl / direct | %.2f |\n", ratio("http/1.1 via mattingctl", "http/1.1 direct"))
	fmt.Printf("| via mattingctl: h2c / http/1.1 | %.2f |\n", ratio("h2c via mattingctl", "http/1.1 via mattingctl"))
	fmt.Printf("| direct: h2c / http/1.1 | %.2f |\n", ratio("h2c direct", "http/1.1 direct"))
	return nil
}

// runH2load runs h2load for n requests at url with args and parses its
// summary; a run with a request not answered 2xx is an error.
func runH2load(h2load, url string, n int, args []string) (h2loadStats, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	full := append(append([]string{"-n", strconv.Itoa(n)}, args...), url)
	out, err := exec.CommandContext(ctx, h2load, full...).CombinedOutput()
	if err != nil {
		return h2loadStats{}, fmt.Errorf("h2load %s: %v\n%s", strings.Join(full, " "), err, out)
	}
	var st h2loadStats
	s := string(out)
	m, c, tot := h2loadDone.FindStringSubmatch(s), h2loadCodes.FindStringSubmatch(s), h2loadTotal.FindStringSubmatch(s)
	if m == nil || c == nil || tot == nil {
		return st, fmt.Errorf("h2load's output has no summary:\n%s", s)
	}
	st.reqPerSec, _ = strconv.ParseFloat(m[1], 64)
	st.s2xx, _ = strconv.Atoi(c[1])
	st.total, _ = strconv.Atoi(tot[1])
	if pr := h2loadPerReq.FindStringSubmatch(s); pr != nil {
		st.mean, _ = time.ParseDuration(pr[3])
	}
	if st.s2xx != n {
		return st, fmt.Errorf("h2load: %d of %d requests answered 2xx:\n%s", st.s2xx, n, s)
	}
	return st, nil
}

// startFakemodel starts one fakemodel on port with args, as a replica
// would be started, and returns its stop.
func (e *environment) startFakemodel(port int, args ...string) (func(), error) {
	c := exec.Command(filepath.Join(e.work, "fakemodel"), args...)
	c.Env = append(append(os.Environ(), replicaEnv...), "PORT="+strconv.Itoa(port), "MATTINGCTL_REPLICA=1")
	if err := c.Start(); err != nil {
		return nil, err
	}
	return func() {
		_ = c.Process.Signal(syscall.SIGTERM)
		_ = c.Wait()
	}, nil
}

// waitAnswering waits until GET / on port answers 200: the replica behind
// a proxy is ready.
func waitAnswering(port int, within time.Duration) error {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	c := &http.Client{Timeout: time.Second}
	for deadline := time.Now().Add(within); ; time.Sleep(100 * time.Millisecond) {
		if resp, err := c.Get("http://" + addr + "/"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listens on %s after %s", addr, within)
		}
	}
}

package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mattingctl/mattingctl/balancer"
	"github.com/mattingctl/mattingctl/supervisor"
)

// The memory scenarios are attacks on the proxy's memory. They
// run mattingctl alone (nginx has no part in them) and report its peak
// resident memory (VmHWM) against the bound it must stay under.
//
//	go run ./bench -scenario slowupload   # 1000 slow 50 MiB uploads, small requests beside
//	go run ./bench -scenario bigbodies    # 200 concurrent 20 MB bodies, --max-buffer 512MiB
type memoryScenario struct {
	name  string
	about string
	args  []string // extra `mattingctl up` flags
	run   func(ctx context.Context, url string, r *memoryReport)
	// bound is the peak RSS allowed, in bytes.
	bound int64
}

var memoryScenarios = map[string]memoryScenario{
	"slowupload": {
		name: "slowupload",
		about: "1000 clients each declare Content-Length 50 MiB and send 256 KiB every 250 ms, to requests that take 2 s; " +
			"4 replicas, --max-inflight 1, default budgets; 8 keep-alive clients send small requests beside",
		args: []string{"--max-inflight", "1"},
		run:  slowUpload,
	},
	"bigbodies": {
		name:  "bigbodies",
		about: "200 concurrent clients each POST a 20 MB body; 4 replicas taking 100 ms; --max-buffer 512MiB",
		args:  []string{"--max-buffer", "512MiB"},
		run:   bigBodies,
		bound: 800 << 20,
	},
}

// memoryReport collects what a memory scenario saw.
type memoryReport struct {
	mu      sync.Mutex
	codes   map[string]int // big requests' outcomes: a status or a network error
	small   []time.Duration
	smallKO map[string]int
	sent    atomic.Int64 // body bytes written by the big clients
}

func (r *memoryReport) outcome(kind string) {
	r.mu.Lock()
	r.codes[kind]++
	r.mu.Unlock()
}

// runMemoryScenario starts mattingctl with fakemodel replicas, runs the
// scenario for d and prints the report.
func runMemoryScenario(e *environment, sc memoryScenario, d time.Duration) error {
	port, err := freeRange(replicas + 2)
	if err != nil {
		return err
	}
	home := filepath.Join(e.work, "home-"+strconv.Itoa(port))
	args := append([]string{"up", "--host", "127.0.0.1", "-p", strconv.Itoa(port), "-r", strconv.Itoa(replicas), "--log-level", "warn", "--admin", "none"}, sc.args...)
	for _, kv := range replicaEnv {
		args = append(args, "--env", kv)
	}
	args = append(args, "--", filepath.Join(e.work, "fakemodel"))
	if sc.name == "bigbodies" {
		args = append(args, "-service", "100ms")
	}
	cmd := exec.Command(filepath.Join(e.work, "mattingctl"), args...)
	cmd.Env = append(os.Environ(), "MATTINGCTL_HOME="+home)
	logPath := filepath.Join(e.work, "mattingctl-"+sc.name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(40 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}
	url := "http://127.0.0.1:" + strconv.Itoa(port)
	if err := waitUp(url+"/api/matting_base64", 20*time.Second); err != nil {
		stop()
		return fmt.Errorf("mattingctl did not come up: %w", err)
	}
	base := memStatus(cmd.Process.Pid)

	// Sample RSS while the load runs, to show its course as well as its peak.
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var samples []string
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		start := time.Now()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				m := memStatus(cmd.Process.Pid)
				samples = append(samples, fmt.Sprintf("%ds:%s", int(time.Since(start).Seconds()), mib(m["VmRSS"])))
			}
		}
	}()
	r := &memoryReport{codes: map[string]int{}, smallKO: map[string]int{}}
	started := time.Now()
	sc.run(ctx, url, r)
	wall := time.Since(started)
	cancel()
	<-sampled

	final := memStatus(cmd.Process.Pid)
	select {
	case err := <-exited:
		exited <- err
		return fmt.Errorf("mattingctl exited during the run (%v); see %s", err, logPath)
	default:
	}
	stop()
	leftover, _ := filepath.Glob(filepath.Join(supervisor.DefaultBufferDir(home, "default"), balancer.BufferFilePattern))

	bound := sc.bound
	if bound == 0 {
		bound = maxBufferOf(sc.args) + 256<<20
	}
	fmt.Printf("## %s: %s\n\n", sc.name, sc.about)
	fmt.Printf("ran %s; mattingctl RSS at start %s, samples %s\n", wall.Round(time.Second), mib(base["VmRSS"]), strings.Join(samples, " "))
	fmt.Printf("body bytes sent by the big clients: %s (%.0f MiB/s)\n", mib(r.sent.Load()), float64(r.sent.Load())/(1<<20)/wall.Seconds())
	fmt.Printf("big requests: %s\n", counts(r.codes))
	if len(r.small) > 0 || len(r.smallKO) > 0 {
		sort.Slice(r.small, func(i, j int) bool { return r.small[i] < r.small[j] })
		fmt.Printf("small requests: %d answered 200, p50 %s, p99 %s, max %s; other outcomes: %s\n", len(r.small),
			pct(r.small, 50), pct(r.small, 99), pct(r.small, 100), counts(r.smallKO))
	}
	verdict := "within"
	if final["VmHWM"] > bound {
		verdict = "OVER"
	}
	fmt.Printf("mattingctl peak RSS (VmHWM): %s; bound %s: %s\n", mib(final["VmHWM"]), mib(bound), verdict)
	fmt.Printf("body files left in the buffer directory after stop: %d\n\n", len(leftover))
	return nil
}

// slowUpload is the first attack: clients that declare 50 MiB and
// trickle it, reconnecting when refused, while a few others send small
// requests and time them.
func slowUpload(ctx context.Context, url string, r *memoryReport) {
	const (
		clients  = 1000
		declared = 50 << 20
		piece    = 256 << 10
		every    = 250 * time.Millisecond
	)
	addr := strings.TrimPrefix(url, "http://")
	buf := bytes.Repeat([]byte("x"), piece)
	var wg sync.WaitGroup
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Spread the connections over the first pause.
			time.Sleep(time.Duration(i) * every / clients)
			for ctx.Err() == nil {
				r.outcome(trickle(ctx, addr, declared, buf, every, &r.sent))
			}
		}()
	}
	small(ctx, url, 8, r)
	wg.Wait()
}

// trickle sends one slow upload and returns its outcome: a status code,
// "unfinished" when the run ended first, or a network error's kind.
func trickle(ctx context.Context, addr string, declared int, piece []byte, every time.Duration, sent *atomic.Int64) string {
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		time.Sleep(every) // do not spin on a refused connection
		return errorKind(err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	head := fmt.Sprintf("POST /api/matting_base64?sleep=2s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n", addr, declared)
	if _, err := io.WriteString(conn, head); err != nil {
		return errorKind(err)
	}
	answered := make(chan string, 1)
	go func() {
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			if ctx.Err() != nil {
				err = context.Canceled
			}
			answered <- errorKind(err)
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		answered <- strconv.Itoa(resp.StatusCode)
	}()
	t := time.NewTicker(every)
	defer t.Stop()
	for left := declared; ; {
		select {
		case kind := <-answered:
			if ctx.Err() != nil {
				return "unfinished"
			}
			return kind
		case <-ctx.Done():
			return "unfinished"
		case <-t.C:
		}
		if left == 0 {
			continue
		}
		n := min(left, len(piece))
		_ = conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
		if _, err := conn.Write(piece[:n]); err != nil {
			select {
			case kind := <-answered: // refused mid-body: the answer is there
				if ctx.Err() != nil {
					return "unfinished" // the run's end closed the connection
				}
				return kind
			case <-time.After(2 * time.Second):
				return errorKind(err)
			}
		}
		sent.Add(int64(n))
		left -= n
	}
}

// small sends small requests from n keep-alive clients until ctx ends,
// recording the latency of each 200.
func small(ctx context.Context, url string, n int, r *memoryReport) {
	tr := &http.Transport{MaxIdleConnsPerHost: n, DisableCompression: true}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	body := []byte(`{"image": "aGVsbG8=", "bg": "[33, 150, 242]"}`)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				t0 := time.Now()
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url+"/api/matting_base64", bytes.NewReader(body))
				resp, err := c.Do(req)
				if ctx.Err() != nil {
					return
				}
				kind := ""
				if err != nil {
					kind = errorKind(err)
				} else {
					kind = answer(resp)
				}
				d := time.Since(t0)
				r.mu.Lock()
				if kind == "" {
					r.small = append(r.small, d)
				} else {
					r.smallKO[kind]++
				}
				r.mu.Unlock()
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
}

// bigBodies is the second attack: 200 clients POST 20 MB at once.
func bigBodies(ctx context.Context, url string, r *memoryReport) {
	const clients, size = 200, 20_000_000
	body := bytes.Repeat([]byte("x"), size)
	tr := &http.Transport{MaxIdleConnsPerHost: clients, DisableCompression: true}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 5 * time.Minute}
	var wg sync.WaitGroup
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url+"/api/matting_base64", bytes.NewReader(body))
			resp, err := c.Do(req)
			if err != nil {
				r.outcome(errorKind(err))
				return
			}
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err != nil {
				r.outcome(errorKind(err))
				return
			}
			r.sent.Add(size)
			r.outcome(strconv.Itoa(resp.StatusCode))
		}()
	}
	wg.Wait()
}

// memStatus reads the memory fields of /proc/PID/status, in bytes.
func memStatus(pid int) map[string]int64 {
	m := map[string]int64{}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return m
	}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if f := strings.Fields(v); ok && len(f) == 2 && f[1] == "kB" {
			n, _ := strconv.ParseInt(f[0], 10, 64)
			m[k] = n << 10
		}
	}
	return m
}

// maxBufferOf returns the --max-buffer the scenario passes, or mattingctl's
// default on this machine: the smaller of 1 GiB and a quarter of RAM.
func maxBufferOf(args []string) int64 {
	for i, a := range args {
		if a == "--max-buffer" && i+1 < len(args) && strings.HasSuffix(args[i+1], "MiB") {
			n, _ := strconv.ParseInt(strings.TrimSuffix(args[i+1], "MiB"), 10, 64)
			return n << 20
		}
	}
	total := int64(1 << 30)
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "MemTotal:" {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				total = kb << 10
			}
		}
	}
	return min(1<<30, total/4)
}

func mib(n int64) string { return fmt.Sprintf("%.0fMiB", float64(n)/(1<<20)) }

func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	i := (len(d)*p + 99) / 100
	return d[min(max(i-1, 0), len(d)-1)].Round(time.Millisecond)
}

func counts(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	var kinds []string
	for k, n := range m {
		kinds = append(kinds, fmt.Sprintf("%s=%d", k, n))
	}
	sort.Strings(kinds)
	return strings.Join(kinds, " ")
}

package main

import (
	"bufio"
	"bytes"
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
	"syscall"
	"time"
)

// The hopeless burst, run only when named:
//
//	go run ./bench -scenario hopeless
//
// mattingctl (a release build) with --queue 100000 --queue-timeout 2s in
// front of one fakemodel replica taking 100 ms a request, --max-inflight 1.
// 2,000 clients, connected beforehand, send a request each at the same
// moment. About 20 can be served within the 2 s queue timeout; the target
// is every other one answered 503 within 50 ms, not after 2 s. The burst
// is sent twice: cold, before the replica has answered anything (the proxy
// bounds the service time by the request in flight, with a margin while
// few responses are timed, so boundary requests wait longer for their
// 503), and warm.

const (
	hopelessClients = 2000
	hopelessTarget  = 50 * time.Millisecond
)

func runHopeless(e *environment) error {
	port, err := freeRange(2)
	if err != nil {
		return err
	}
	home := filepath.Join(e.work, "home-hopeless")
	cmd := exec.Command(filepath.Join(e.work, "mattingctl"), "up", "--host", "127.0.0.1", "-p", strconv.Itoa(port), "-r", "1",
		"--admin", "none", "--max-inflight", "1", "--queue", "100000", "--queue-timeout", "2s",
		"--", filepath.Join(e.work, "fakemodel"), "-service", "100ms")
	cmd.Env = append(os.Environ(), "MATTINGCTL_HOME="+home)
	logPath := filepath.Join(e.work, "mattingctl-hopeless.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	url := "http://127.0.0.1:" + strconv.Itoa(port)
	// Ready per `status`, not per a request through the proxy: that would
	// be timed, and the first burst would not be cold.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		st := exec.Command(filepath.Join(e.work, "mattingctl"), "status")
		st.Env = cmd.Env
		if out, err := st.Output(); err == nil && strings.Contains(string(out), "ready") {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("mattingctl did not come up; see %s", logPath)
		}
	}
	fmt.Printf("## hopeless: %d requests at once (connected beforehand) at 1 replica of 100 ms, --max-inflight 1 --queue 100000 --queue-timeout 2s\n\n", hopelessClients)
	fmt.Println("| burst | answered 200 | slowest 200 | 503 | 503 p50 | 503 p99 | slowest 503 | 503s within 50 ms | other |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|")
	for _, name := range []string{"cold", "warm"} {
		if name == "warm" {
			time.Sleep(3 * time.Second) // the cold burst's queue drains
			for range 3 {
				if resp, err := http.Get(url + "/"); err == nil {
					resp.Body.Close()
				}
			}
		}
		b, err := hopelessBurst(net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), hopelessClients)
		if err != nil {
			return err
		}
		fmt.Println(b.row(name))
	}
	time.Sleep(11 * time.Second) // the summary line comes every 10 s
	log, _ := os.ReadFile(logPath)
	fmt.Printf("\nmattingctl's log:\n%s\n", log)
	return nil
}

type burstResult struct {
	ok, rejected []time.Duration
	other        map[string]int
}

// hopelessBurst connects n clients to addr, then has each send one GET at
// the same moment, and times each answer from the moment of sending to
// its first bytes. The clients do little else, as wrk's or h2load's
// would: on a 2-core machine they share the CPU with the proxy.
func hopelessBurst(addr string, n int) (burstResult, error) {
	conns := make([]net.Conn, n)
	for i := range conns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			for _, c := range conns[:i] {
				c.Close()
			}
			return burstResult{}, fmt.Errorf("connection %d: %w", i, err)
		}
		conns[i] = c
	}
	res := burstResult{other: map[string]int{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	begin := make(chan struct{})
	request := []byte("GET /burst HTTP/1.1\r\nHost: x\r\n\r\n")
	for _, c := range conns {
		wg.Add(1)
		buf := make([]byte, 4096) // allocated before the burst, not in it
		go func() {
			defer wg.Done()
			defer c.Close()
			<-begin
			start := time.Now()
			_ = c.SetDeadline(start.Add(30 * time.Second))
			// Timed to the answer's first bytes, its status line: what
			// the client waits for. The rest is read after, untimed.
			code, took, err := 0, time.Duration(0), error(nil)
			if _, err = c.Write(request); err == nil {
				var n int
				if n, err = c.Read(buf); err == nil {
					took = time.Since(start)
					code, err = statusOf(buf[:n])
					if err == nil {
						err = readRest(c, buf, n)
					}
				}
			}
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				res.other[err.Error()]++
			case code == http.StatusOK:
				res.ok = append(res.ok, took)
			case code == http.StatusServiceUnavailable:
				res.rejected = append(res.rejected, took)
			default:
				res.other[strconv.Itoa(code)]++
			}
		}()
	}
	close(begin)
	wg.Wait()
	sort.Slice(res.ok, func(i, j int) bool { return res.ok[i] < res.ok[j] })
	sort.Slice(res.rejected, func(i, j int) bool { return res.rejected[i] < res.rejected[j] })
	return res, nil
}

func (b burstResult) row(name string) string {
	within := sort.Search(len(b.rejected), func(i int) bool { return b.rejected[i] > hopelessTarget })
	ms := func(d time.Duration) string { return d.Round(100 * time.Microsecond).String() }
	return fmt.Sprintf("| %s | %d | %s | %d | %s | %s | %s | %d of %d | %s |", name, len(b.ok), ms(pct(b.ok, 100)),
		len(b.rejected), ms(pct(b.rejected, 50)), ms(pct(b.rejected, 99)), ms(pct(b.rejected, 100)), within, len(b.rejected), counts(b.other))
}

// statusOf reads the status code off the start of an HTTP/1.1 answer.
func statusOf(b []byte) (int, error) {
	line, _, _ := strings.Cut(string(b), "\r\n")
	_, rest, ok := strings.Cut(line, " ")
	if !ok || len(rest) < 3 {
		return 0, fmt.Errorf("not an HTTP answer: %q", line)
	}
	return strconv.Atoi(rest[:3])
}

// readRest reads the rest of an answer whose first n bytes are in buf:
// up to the end of its body, by its Content-Length.
func readRest(c net.Conn, buf []byte, n int) error {
	resp, err := http.ReadResponse(bufio.NewReader(io.MultiReader(bytes.NewReader(buf[:n]), c)), nil)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return err
}

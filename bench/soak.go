//go:build unix

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
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

	"github.com/mattingctl/mattingctl/internal/control"
)

// soak runs `go run ./bench soak -d 10m`: one mattingctl instance with 4
// fakemodel replicas under keep-alive load for the whole duration, while
// at random a replica is killed with SIGKILL, stopped with SIGSTOP and
// continued 1-3 s later (never the last one ready), the instance is scaled between 2 and 6 replicas,
// or a rolling restart runs. It reports requests, failures by kind and
// retries, and mattingctl's RSS, goroutines and open fds before the load
// and after it, so that a leak shows.
func soak(args []string) error {
	fs := flag.NewFlagSet("soak", flag.ContinueOnError)
	d := fs.Duration("d", 10*time.Minute, "how long the load and the chaos run")
	clients := fs.Int("c", 16, "concurrent keep-alive clients")
	replay := fs.Uint64("replay", uint64(time.Now().UnixNano()), "number that fixes the chaos's random choices: give a run's to replay it")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *d <= 0 || *clients < 1 {
		return fmt.Errorf("soak: -d must be positive and -c at least 1")
	}
	work, err := os.MkdirTemp("", "mattingctl-soak-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	env := &environment{work: work}
	if err := env.build(); err != nil {
		return err
	}
	port, err := freeRange(16)
	if err != nil {
		return err
	}
	home := filepath.Join(work, "home")
	ctl := func(args ...string) ([]byte, error) {
		cmd := exec.Command(filepath.Join(work, "mattingctl"), args...)
		cmd.Env = append(os.Environ(), "MATTINGCTL_HOME="+home)
		return cmd.CombinedOutput()
	}
	status := func() (control.Status, error) {
		var st control.Status
		out, err := ctl("status", "--json")
		if err != nil {
			return st, fmt.Errorf("status: %v: %s", err, out)
		}
		return st, json.Unmarshal(out, &st)
	}
	logPath := filepath.Join(work, "mattingctl.log")
	log, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer log.Close()
	up := exec.Command(filepath.Join(work, "mattingctl"), "up", "--host", "127.0.0.1", "-p", strconv.Itoa(port),
		"--admin", "127.0.0.1:0", "-r", "4", "--health", "/health", "--log-level", "warn", "--env", "GOMAXPROCS=1",
		"--", filepath.Join(work, "fakemodel"))
	up.Env = append(os.Environ(), "MATTINGCTL_HOME="+home)
	up.Stdout, up.Stderr = log, log
	if err := up.Start(); err != nil {
		return err
	}
	defer func() {
		_ = up.Process.Signal(syscall.SIGTERM)
		_ = up.Wait()
	}()
	url := "http://127.0.0.1:" + strconv.Itoa(port) + "/api/matting_base64?sleep=5ms"
	if err := waitUp(url, 30*time.Second); err != nil {
		return fmt.Errorf("mattingctl did not come up (log %s): %w", logPath, err)
	}
	st, err := status()
	if err != nil {
		return err
	}
	before, err := runtimeMetrics(st.Admin)
	if err != nil {
		return err
	}
	// waitUp's requests before a replica was ready were answered 503:
	// they are not the load's.
	rejectedBefore := st.Rejected
	fmt.Printf("machine: %s\n\nsoak for %s, %d clients, -replay %d\n", machine(), *d, *clients, *replay)

	ctx, cancel := context.WithTimeout(context.Background(), *d)
	defer cancel()
	var mu sync.Mutex
	ok, failures := 0, map[string]int{}
	tr := &http.Transport{MaxIdleConnsPerHost: *clients, DisableCompression: true}
	client := &http.Client{Transport: tr, Timeout: 120 * time.Second}
	body := []byte(`{"image": "aGVsbG8=", "bg": "[33, 150, 242]"}`)
	var wg sync.WaitGroup
	for range *clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				kind := post(context.Background(), client, url, body)
				mu.Lock()
				if kind == "" {
					ok++
				} else {
					failures[kind]++
				}
				mu.Unlock()
			}
		}()
	}

	rng := rand.New(rand.NewPCG(*replay, 1))
	actions := map[string]int{}
	noneReady := 0 // chaos rounds that found no replica in rotation
	for ctx.Err() == nil {
		st, err := status()
		if err != nil {
			return err
		}
		var running []control.ReplicaStatus
		for _, r := range st.Replicas {
			if r.Pid != 0 && r.State == control.Ready {
				running = append(running, r)
			}
		}
		if len(running) == 0 {
			// Say what the replicas were doing when none served.
			states := make([]string, len(st.Replicas))
			for i, r := range st.Replicas {
				states[i] = fmt.Sprintf("%s %s (last restart: %s)", r.Name, r.State, r.LastRestart)
			}
			if noneReady++; noneReady <= 5 {
				fmt.Printf("%s no replica ready, %d wanted: %s\n", time.Now().Format("15:04:05"), st.Desired, strings.Join(states, "; "))
			}
		}
		// Kills and stops spare the last ready replica: with none left, 503
		// is the only honest answer, and the soak looks for lost requests.
		switch a := rng.IntN(4); {
		case a == 0 && len(running) > 1:
			actions["kill -9"]++
			_ = syscall.Kill(running[rng.IntN(len(running))].Pid, syscall.SIGKILL)
		case a == 1 && len(running) > 1:
			actions["stop/cont"]++
			pid := running[rng.IntN(len(running))].Pid
			_ = syscall.Kill(-pid, syscall.SIGSTOP)
			time.Sleep(time.Duration(1000+rng.IntN(2000)) * time.Millisecond)
			_ = syscall.Kill(-pid, syscall.SIGCONT)
		case a == 2:
			actions["scale"]++
			if out, err := ctl("scale", strconv.Itoa(2+rng.IntN(5))); err != nil {
				return fmt.Errorf("scale during the soak: %v: %s", err, out)
			}
		case a == 3:
			actions["restart"]++
			_, _ = ctl("restart") // may stop at a successor a kill hit; requests are what count
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(500+rng.IntN(1500)) * time.Millisecond):
		}
	}
	wg.Wait()
	tr.CloseIdleConnections()
	// Let the instance settle (replicas ready, closed connections gone)
	// before the second reading.
	settle := time.Now().Add(60 * time.Second)
	for {
		st, err = status()
		if err == nil && st.Ready() == st.Desired || time.Now().After(settle) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // closed client connections' goroutines end
	after, err := runtimeMetrics(st.Admin)
	if err != nil {
		return err
	}
	// The proxy keeps idle connections to the replicas for 90 s (two
	// goroutines and an fd each): a leak is what is still there after.
	time.Sleep(95 * time.Second)
	idle, err := runtimeMetrics(st.Admin)
	if err != nil {
		return err
	}
	var kinds []string
	failed := 0
	for k, n := range failures {
		kinds = append(kinds, fmt.Sprintf("%s: %d", k, n))
		failed += n
	}
	sort.Strings(kinds)
	fmt.Printf("chaos: %v\n\n", actions)
	fmt.Println("| requests | answered 200 | failed | retried (mattingctl) | failed (mattingctl) | rejected (mattingctl) |")
	fmt.Println("|---|---|---|---|---|---|")
	fmt.Printf("| %d | %d | %d %s | %d | %d | %d |\n\n", ok+failed, ok, failed, strings.Join(kinds, ", "), st.Retried, st.Failed, st.Rejected-rejectedBefore)
	if rejectedBefore > 0 {
		fmt.Printf("(and %d answered 503 while the instance came up, before the load)\n\n", rejectedBefore)
	}
	if failed > 0 {
		// Say why, in mattingctl's own words: its rejection summaries.
		if b, err := os.ReadFile(logPath); err == nil {
			n := 0
			for _, line := range strings.Split(string(b), "\n") {
				if strings.Contains(line, "rejected") || strings.Contains(line, "failed") {
					if n++; n <= 30 {
						fmt.Println("log:", line)
					}
				}
			}
			fmt.Println()
		}
	}
	fmt.Printf("chaos rounds that found no replica ready: %d\n\n", noneReady)
	fmt.Println("| mattingctl | before the load | after it | 95 s later (idle connections to replicas closed) |")
	fmt.Println("|---|---|---|---|")
	for _, m := range []string{"process_resident_memory_bytes", "go_goroutines", "process_open_fds"} {
		fmt.Printf("| %s | %.0f | %.0f | %.0f |\n", m, before[m], after[m], idle[m])
	}
	return nil
}

// runtimeMetrics reads mattingctl's own gauges from its admin listener.
func runtimeMetrics(admin string) (map[string]float64, error) {
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	want := map[string]bool{"process_resident_memory_bytes": true, "go_goroutines": true, "process_open_fds": true}
	got := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if ok && want[name] {
			got[name], _ = strconv.ParseFloat(value, 64)
		}
	}
	if len(got) != len(want) {
		return nil, fmt.Errorf("the admin listener's /metrics lacks the runtime metrics (got %v)", got)
	}
	return got, sc.Err()
}

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mattingctl/mattingctl/internal/control"
)

// idleConnsOptions configure scenario idleconns.
type idleConnsOptions struct {
	conns  int    // idle client connections to open
	ulimit int    // ulimit -n that mattingctl runs under
	bin    string // mattingctl binary; empty: the one built for the run
	memory bool   // measure idle connections' RSS instead (idlememory.go)
	// floor: with memory, measure a plain net/http server
	// (internal/testutil/plainhttp) in mattingctl's place.
	floor bool
}

// idleConns is the file-descriptor attack at full size: mattingctl
// runs 4 replicas under `ulimit -n 20000`, 20,000 client connections are
// opened and left idle, and a replica is killed with kill -9. It reports
// what mattingctl accepted, its descriptors and memory, how long `status`
// took, how long the replica took to be back, and how long a new client
// waited once some idle ones had gone. Only mattingctl runs; nginx is not
// needed.
func (e *environment) idleConns(o idleConnsOptions) error {
	m, err := e.startIdle(o)
	if err != nil {
		return err
	}
	defer m.stop()
	pid, status, logPath := m.pid, m.status, m.logPath
	st, _, _ := status()
	fmt.Printf("mattingctl under ulimit -n %d, %d replicas at --max-inflight %d: max_conns %d\n", o.ulimit, replicas, st.MaxInflight, st.MaxConns)
	fmt.Printf("before: %s\n\n", procUsage(pid))

	// Open the idle connections from holder processes of at most
	// holderConns each: one process may not have the descriptors for them
	// all, and raising a hard limit needs CAP_SYS_RESOURCE.
	addr := m.addr
	t0 := time.Now()
	var holders []*holder
	defer func() {
		for _, h := range holders {
			h.stop()
		}
	}()
	opened, dialErrs := 0, 0
	for left := o.conns; left > 0; left -= holderConns {
		h, err := startHolder(addr, min(left, holderConns), false)
		if err != nil {
			return err
		}
		holders = append(holders, h)
		opened += h.opened
		dialErrs += h.errs
	}
	fmt.Printf("opened %d idle connections in %s from %d processes (%d dial errors)\n", opened, time.Since(t0).Round(time.Millisecond), len(holders), dialErrs)

	// Until mattingctl has accepted what it will accept.
	settle := time.Now().Add(30 * time.Second)
	for prev := int64(-1); time.Now().Before(settle); time.Sleep(500 * time.Millisecond) {
		st, _, err := status()
		if err == nil && (st.MaxConns > 0 && st.Conns >= int64(st.MaxConns) || st.Conns == prev) {
			break
		}
		prev = st.Conns
	}
	var took []time.Duration
	var statusErrs int
	for range 10 {
		s, d, err := status()
		if err != nil {
			statusErrs++
		} else {
			st = s
		}
		took = append(took, d)
	}
	fmt.Printf("with them open: conns %d of max_conns %d; %s\n", st.Conns, st.MaxConns, procUsage(pid))
	fmt.Printf("`mattingctl status --json` x10: median %s, max %s, %d failed\n", medianDuration(took), maxOf(took), statusErrs)

	// A new client while mattingctl is at its limit.
	probe := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	if resp, err := probe.Get("http://" + addr + "/"); err != nil {
		fmt.Printf("a new request with every connection taken: no answer in 2 s (%s)\n", errorKind(err))
	} else {
		resp.Body.Close()
		fmt.Printf("a new request with every connection taken: %s\n", resp.Status)
	}

	// kill -9 a replica, and time its return and status meanwhile.
	var victim control.ReplicaStatus
	if len(st.Replicas) > 0 {
		victim = st.Replicas[0]
	}
	if victim.Pid == 0 {
		return fmt.Errorf("no replica pid in status; log: %s", logPath)
	}
	killed := time.Now()
	proc, err := os.FindProcess(victim.Pid)
	if err != nil {
		return err
	}
	if err := proc.Kill(); err != nil { // SIGKILL
		return err
	}
	took, statusErrs = took[:0], 0
	back := time.Duration(0)
	for time.Since(killed) < 60*time.Second {
		s, d, err := status()
		took = append(took, d)
		if err != nil {
			statusErrs++
		} else if r := s.Replicas[0]; r.State == control.Ready && r.Pid != victim.Pid && r.Pid != 0 {
			back = time.Since(killed)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if back == 0 {
		fmt.Printf("kill -9 of %s: NOT restarted within 60 s\n", victim.Name)
	} else {
		fmt.Printf("kill -9 of %s: ready again with a new pid after %s\n", victim.Name, back.Round(time.Millisecond))
	}
	fmt.Printf("status during the restart x%d: median %s, max %s, %d failed\n", len(took), medianDuration(took), maxOf(took), statusErrs)

	// Some idle clients leave, enough for those waiting in the backlog
	// (ahead of a new client) and 100 more: how long until a new request
	// is served.
	n := min(max(100, opened-st.MaxConns+100), holders[0].opened)
	if err := holders[0].close(n); err != nil {
		return err
	}
	t1 := time.Now()
	probe.Timeout = 30 * time.Second
	if resp, err := probe.Get("http://" + addr + "/"); err != nil {
		fmt.Printf("after %d idle connections closed, a new request: %s after %s\n", n, errorKind(err), time.Since(t1).Round(time.Millisecond))
	} else {
		resp.Body.Close()
		fmt.Printf("after %d idle connections closed, a new request: %s after %s\n", n, resp.Status, time.Since(t1).Round(time.Millisecond))
	}
	if b, err := os.ReadFile(logPath); err == nil {
		fmt.Printf("\nmattingctl's warnings and errors:\n%s", lastLines(string(b), 8))
	}
	return nil
}

// idleInstance is a `mattingctl up` started for scenario idleconns.
type idleInstance struct {
	cmd     *exec.Cmd
	pid     int
	addr    string // the proxy's
	logPath string
	status  func() (control.Status, time.Duration, error)
}

// startIdle starts mattingctl with replicas instant fakemodel replicas
// under ulimit -n o.ulimit and waits until they are all ready.
func (e *environment) startIdle(o idleConnsOptions) (*idleInstance, error) {
	bin := o.bin
	if bin == "" {
		bin = filepath.Join(e.work, "mattingctl")
	}
	port, err := portBelowEphemeral(replicas + 1)
	if err != nil {
		return nil, err
	}
	home := filepath.Join(e.work, "home-idle")
	args := []string{"-c", `ulimit -n "$1" && shift && exec "$@"`, "sh", strconv.Itoa(o.ulimit),
		bin, "up", "--host", "127.0.0.1", "-p", strconv.Itoa(port), "-r", strconv.Itoa(replicas),
		"--admin", "127.0.0.1:0", "--log-level", "warn",
		// The idle connections stay for the whole run, not the minute
		// --client-timeout gives a connection that sends nothing.
		"--client-timeout", "10m"}
	for _, kv := range replicaEnv {
		args = append(args, "--env", kv)
	}
	args = append(args, "--", filepath.Join(e.work, "fakemodel"))
	cmd := exec.Command("/bin/sh", args...)
	cmd.Env = append(os.Environ(), "MATTINGCTL_HOME="+home)
	logPath := filepath.Join(e.work, "mattingctl-idle.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child has its own copy
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	m := &idleInstance{cmd: cmd, pid: cmd.Process.Pid, // sh execs mattingctl: the same process
		addr: "127.0.0.1:" + strconv.Itoa(port), logPath: logPath}
	m.status = func() (control.Status, time.Duration, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		t0 := time.Now()
		c := exec.CommandContext(ctx, bin, "status", "--json")
		c.Env = cmd.Env
		out, err := c.Output()
		d := time.Since(t0)
		var st control.Status
		if err == nil {
			err = json.Unmarshal(out, &st)
		}
		return st, d, err
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		st, _, err := m.status()
		if err == nil && st.Ready() == replicas {
			return m, nil
		}
		if time.Now().After(deadline) {
			m.stop()
			return nil, fmt.Errorf("mattingctl not ready in 60 s (%v); log: %s", err, logPath)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (m *idleInstance) stop() { terminate(m.cmd) }

// portBelowEphemeral finds n free ports below Linux's ephemeral range
// (32768 on), so that 20,000 client connections cannot take them.
func portBelowEphemeral(n int) (int, error) {
	for range 100 {
		p, err := freeRange(n)
		if err != nil {
			return 0, err
		}
		if p+n < 32768 {
			return p, nil
		}
	}
	return 0, fmt.Errorf("no %d free ports below 32768", n)
}

// procUsage reads a process's resident memory and open descriptors.
func procUsage(pid int) string {
	rss := "?"
	if b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "VmRSS:") {
				rss = strings.Join(strings.Fields(l)[1:], " ")
			}
		}
	}
	fds := "?"
	if ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd"); err == nil {
		fds = strconv.Itoa(len(ents))
	}
	return fmt.Sprintf("mattingctl RSS %s, %s open fds", rss, fds)
}

func medianDuration(ds []time.Duration) time.Duration {
	return medianOf(ds).Round(time.Millisecond)
}

func maxOf(ds []time.Duration) time.Duration {
	m := time.Duration(0)
	for _, d := range ds {
		m = max(m, d)
	}
	return m.Round(time.Millisecond)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n") + "\n"
}

// holderConns is the most idle connections one holder process opens.
const holderConns = 10000

// holderEnv makes the bench binary a holder: it opens N idle connections
// to ADDR (the value is ADDR,N), prints "opened OK ERRS", then on each
// "close K" line on its stdin closes K of them and prints "closed", until
// its stdin ends. With ADDR,N,request each connection first sends one
// small keep-alive request and reads its answer; one that gets no 200
// within holderTimeout is closed and counted in ERRS.
const holderEnv = "MATTINGCTL_BENCH_HOLDER"

// holderTimeout bounds a holder connection's request and its answer.
const holderTimeout = 30 * time.Second

// holderRequest is the request a holder's connection sends, with the
// small JSON body of the proxy scenarios.
var holderRequest = func() string {
	body := `{"image": "aGVsbG8=", "bg": "[33, 150, 242]"}`
	return "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: " +
		strconv.Itoa(len(body)) + "\r\n\r\n" + body
}()

// holder is a running holder process.
type holder struct {
	cmd    *exec.Cmd
	in     io.WriteCloser
	out    *bufio.Scanner
	opened int
	errs   int
}

func startHolder(addr string, n int, request bool) (*holder, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	spec := addr + "," + strconv.Itoa(n)
	if request {
		spec += ",request"
	}
	h := &holder{cmd: exec.Command(self)}
	h.cmd.Env = append(os.Environ(), holderEnv+"="+spec)
	h.cmd.Stderr = os.Stderr
	if h.in, err = h.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	out, err := h.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	h.out = bufio.NewScanner(out)
	if err := h.cmd.Start(); err != nil {
		return nil, err
	}
	if !h.out.Scan() {
		h.stop()
		return nil, fmt.Errorf("holder of %d connections exited", n)
	}
	if _, err := fmt.Sscanf(h.out.Text(), "opened %d %d", &h.opened, &h.errs); err != nil {
		h.stop()
		return nil, fmt.Errorf("holder said %q", h.out.Text())
	}
	return h, nil
}

func (h *holder) close(n int) error {
	if _, err := fmt.Fprintf(h.in, "close %d\n", n); err != nil {
		return err
	}
	if !h.out.Scan() || h.out.Text() != "closed" {
		return fmt.Errorf("holder did not close %d connections", n)
	}
	return nil
}

func (h *holder) stop() {
	h.in.Close()
	_ = h.cmd.Wait()
}

// runHolder is the holder process's main (see holderEnv).
func runHolder(spec string) error {
	addr, count, _ := strings.Cut(spec, ",")
	count, mode, _ := strings.Cut(count, ",")
	n, err := strconv.Atoi(count)
	if err != nil {
		return err
	}
	request := mode == "request"
	conns := make([]net.Conn, 0, n)
	var mu sync.Mutex
	errs := 0
	work := make(chan struct{})
	var wg sync.WaitGroup
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range work {
				c, err := net.DialTimeout("tcp", addr, 10*time.Second)
				if err == nil && request {
					if err = requestOnce(c); err != nil {
						c.Close()
					}
				}
				mu.Lock()
				if err != nil {
					errs++
				} else {
					conns = append(conns, c)
				}
				mu.Unlock()
			}
		}()
	}
	for range n {
		work <- struct{}{}
	}
	close(work)
	wg.Wait()
	fmt.Printf("opened %d %d\n", len(conns), errs)
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		var k int
		if _, err := fmt.Sscanf(in.Text(), "close %d", &k); err == nil {
			k = min(k, len(conns))
			for _, c := range conns[:k] {
				c.Close()
			}
			conns = conns[k:]
			fmt.Println("closed")
		}
	}
	return nil
}

// requestOnce sends holderRequest on c and reads its answer, which must
// be a 200, leaving c idle and open.
func requestOnce(c net.Conn) error {
	if err := c.SetDeadline(time.Now().Add(holderTimeout)); err != nil {
		return err
	}
	if _, err := io.WriteString(c, holderRequest); err != nil {
		return err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("answered %s", resp.Status)
	}
	if err != nil {
		return err
	}
	return c.SetDeadline(time.Time{})
}

// Package e2e drives the mattingctl binary end to end: it builds mattingctl
// and the fakemodel test server, starts real instances on free loopback
// ports and checks what a user would see. mattingctl is built with the race
// detector, and a race report in the output of any mattingctl a test ran
// fails that test.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
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
	"syscall"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/control"
	"github.com/mattingctl/mattingctl/internal/testutil"
)

var (
	mattingctl string // path of the built binary
	fakemodel  string
)

const (
	// e2eEnv turns the end-to-end tests on. They build the binaries and
	// start hundreds of processes for minutes, so the unit tests' `go
	// test ./...` leaves them out.
	e2eEnv = "MATTINGCTL_E2E"
	// e2eCommand runs them. -v streams each test's result as it ends (go
	// test holds back a package's output until it is done otherwise);
	// -count=1 because go test would cache a pass, and the binaries the
	// tests build are not among what it checks for changes.
	e2eCommand = "MATTINGCTL_E2E=1 go test -count=1 -v ./e2e/"
	// binDirEnv names a directory holding mattingctl and fakemodel,
	// built already: a test that runs this binary as a child passes its
	// own, so that the child does not build them again.
	binDirEnv = "MATTINGCTL_E2E_BIN"
	// defaultParallel is how many parallel tests run at once, unless
	// -test.parallel says. Most tests wait on processes, not on the CPU,
	// so more of them than the cores fit; those that time something do
	// not call t.Parallel and run alone, before the others.
	defaultParallel = 6
)

func TestMain(m *testing.M) {
	switch {
	case os.Getenv(reaperEnv) != "":
		os.Exit(runReaper(os.Getenv(reaperEnv)))
	case os.Getenv(racyEnv) != "":
		// A child of TestRaceReportFailsTheTest runs only a racy program.
		os.Exit(m.Run())
	case os.Getenv(e2eEnv) == "":
		fmt.Printf("e2e: skipped: the end-to-end tests run with %s\n", e2eCommand)
		os.Exit(0)
	}
	os.Exit(runE2E(m))
}

// runE2E starts the reaper, builds the binaries and runs the tests.
func runE2E(m *testing.M) int {
	r, err := startReaper()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer func() {
		if report := r.stop(); report != "" {
			fmt.Fprintln(os.Stderr, "e2e: "+report)
		}
	}()
	// Python leaves no __pycache__ in the checkout (the gunicorn tests
	// import testdata/leftovers/wsgi.py).
	os.Setenv("PYTHONDONTWRITEBYTECODE", "1")

	dir := os.Getenv(binDirEnv)
	if dir == "" {
		if dir, err = os.MkdirTemp("", "mattingctl-e2e-"); err != nil {
			fmt.Fprintln(os.Stderr, "e2e:", err)
			return 1
		}
		defer os.RemoveAll(dir)
		if err := buildBinaries(dir); err != nil {
			fmt.Fprintln(os.Stderr, "e2e:", err)
			return 1
		}
	}
	mattingctl = filepath.Join(dir, "mattingctl")
	fakemodel = filepath.Join(dir, "fakemodel")

	flag.Parse()
	parallelSet := false
	flag.Visit(func(f *flag.Flag) { parallelSet = parallelSet || f.Name == "test.parallel" })
	if !parallelSet {
		_ = flag.Set("test.parallel", strconv.Itoa(defaultParallel))
	}
	return m.Run()
}

// buildBinaries builds mattingctl and fakemodel into dir. mattingctl is
// built with the race detector, so that the supervisor's concurrency is
// checked under real processes and signals too.
func buildBinaries(dir string) error {
	for _, b := range []struct{ bin, pkg, flags string }{
		{"mattingctl", "../cmd/mattingctl", "-race"},
		{"fakemodel", "../internal/testutil/fakemodel", ""},
	} {
		args := append([]string{"build"}, strings.Fields(b.flags)...)
		out, err := exec.Command("go", append(args, "-o", filepath.Join(dir, b.bin), b.pkg)...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("building %s: %v\n%s", b.pkg, err, out)
		}
	}
	return nil
}

// instance is a running `mattingctl up`.
type instance struct {
	t      *testing.T
	home   string
	port   int
	cmd    *exec.Cmd
	stdout testutil.SyncBuffer
	stderr testutil.SyncBuffer
	done   chan struct{}
	err    error // from Wait, once done is closed
	mu     sync.Mutex
	pids   map[int]bool // every replica pid seen, for cleanup
}

// run runs mattingctl with args and MATTINGCTL_HOME=home, returning its
// stdout, stderr and exit code. It fails t if mattingctl printed a race
// report.
func run(t *testing.T, home string, args ...string) (string, string, int) {
	t.Helper()
	return runBinary(t, mattingctl, home, args...)
}

// runBinary is run for any binary: the tests of the race check run a
// racy program through it.
func runBinary(t *testing.T, bin, home string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "MATTINGCTL_HOME="+home)
	if len(args) == 0 || args[0] != "up" {
		cmd.Env = append(cmd.Env, quickExit())
	}
	cmd.SysProcAttr = diesWithTest()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	checkRace(t, commandLine(bin, args), stdout.String()+stderr.String())
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running %s %v: %v", bin, args, err)
	}
	return stdout.String(), stderr.String(), code
}

// quickExit, in the environment of a one-shot command, skips the race
// detector's second of sleep at exit (atexit_sleep_ms, 1000 by default):
// it gives goroutines still running a chance to report a race, and a
// command such as status, whose work is done, has none left worth the
// wait, while a test asks for status hundreds of times. A race is
// reported the moment it happens, not at exit. Instances (up) keep the
// sleep: their goroutines run to the end. Options in the test's own
// GORACE are kept.
func quickExit() string {
	return strings.TrimSpace("GORACE=" + os.Getenv("GORACE") + " atexit_sleep_ms=0")
}

// diesWithTest makes a process the test starts die with the test binary
// (Linux's parent-death signal). TestMain's reaper catches what this
// misses: processes started further down, and those in sessions of their
// own.
func diesWithTest() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// commandLine names a process in a failure: the binary's base name and
// its arguments.
func commandLine(bin string, args []string) string {
	return strings.Join(append([]string{filepath.Base(bin)}, args...), " ")
}

// start starts `mattingctl up --port P ARGS...` in the background. The
// proxy port and replica ports after it are free when it starts.
func start(t *testing.T, replicas int, args ...string) *instance {
	t.Helper()
	return startIn(t, t.TempDir(), replicas, args...)
}

// startIn is start with the state directory home.
func startIn(t *testing.T, home string, replicas int, args ...string) *instance {
	t.Helper()
	port := testutil.FreePorts(t, replicas+8)
	// The admin listener on a port of its own choosing: status --json says which.
	full := append([]string{"up", "--port", strconv.Itoa(port), "--host", "127.0.0.1", "--admin", "127.0.0.1:0", "--replicas", strconv.Itoa(replicas)}, args...)
	return launch(t, mattingctl, home, port, full...)
}

// launch starts bin with args and MATTINGCTL_HOME=home in the background,
// as an instance listening on port. The test's cleanup kills it and fails
// the test if it printed a race report.
func launch(t *testing.T, bin, home string, port int, args ...string) *instance {
	t.Helper()
	return launchEnv(t, nil, bin, home, port, args...)
}

// launchEnv is launch with env added to the instance's environment (a
// test that runs beside others cannot change its own).
func launchEnv(t *testing.T, env []string, bin, home string, port int, args ...string) *instance {
	t.Helper()
	in := &instance{t: t, home: home, port: port, done: make(chan struct{}), pids: map[int]bool{}}
	in.cmd = exec.Command(bin, args...)
	// TMPDIR under the test's directory: the instance's default buffer
	// directory goes there, and with it when the test ends.
	in.cmd.Env = append(append(os.Environ(), "MATTINGCTL_HOME="+in.home, "TMPDIR="+testTmp(in.home)), env...)
	in.cmd.Stdout, in.cmd.Stderr = &in.stdout, &in.stderr
	in.cmd.SysProcAttr = diesWithTest()
	if err := in.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		in.err = in.cmd.Wait()
		close(in.done)
	}()
	t.Cleanup(in.cleanup)
	return in
}

// cleanup kills the supervisor and every replica it was seen to run, and
// checks the supervisor's output for race reports. Wait has returned by
// then, so the output is complete.
func (in *instance) cleanup() {
	_ = in.cmd.Process.Kill()
	<-in.done
	in.mu.Lock()
	defer in.mu.Unlock()
	for pid := range in.pids {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
	checkRace(in.t, commandLine(in.cmd.Path, in.cmd.Args[1:]), in.stdout.String()+in.stderr.String())
	if in.t.Failed() {
		in.t.Logf("mattingctl stdout:\n%s\nmattingctl stderr:\n%s", in.stdout.String(), in.stderr.String())
	}
}

// testTmp is the TMPDIR of the instances with state directory home.
func testTmp(home string) string { return filepath.Join(home, "tmp") }

func (in *instance) url(path string) string {
	return "http://127.0.0.1:" + strconv.Itoa(in.port) + path
}

func (in *instance) ctl(args ...string) (string, string, int) {
	in.t.Helper()
	return run(in.t, in.home, args...)
}

func (in *instance) status() control.Status {
	in.t.Helper()
	st, err := in.tryStatus()
	if err != nil {
		in.t.Fatal(err)
	}
	return st
}

// tryStatus asks the instance for its status over its control socket,
// the call `mattingctl status --json` makes and prints as it is. Tests
// ask for status hundreds of times, mostly while they wait for
// something; a race-built `mattingctl status` process for each took its
// share of a busy machine's cores and, on one, over its 10 s to answer.
// The command itself is run where a test checks what it prints.
func (in *instance) tryStatus() (control.Status, error) {
	in.t.Helper()
	c, err := control.Connect(in.home, "")
	if err != nil {
		return control.Status{}, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := c.Status(ctx)
	if err != nil {
		return st, fmt.Errorf("status: %w", err)
	}
	in.mu.Lock()
	for _, r := range st.Replicas {
		if r.Pid != 0 {
			in.pids[r.Pid] = true
		}
	}
	in.mu.Unlock()
	return st, nil
}

// waitInflight waits until the replicas hold n requests in flight together.
func (in *instance) waitInflight(n int64) {
	in.t.Helper()
	testutil.WaitFor(in.t, 10*time.Second, fmt.Sprintf("%d requests in flight", n), func() bool {
		total := int64(0)
		for _, r := range in.status().Replicas {
			total += r.Inflight
		}
		return total == n
	})
}

// waitReady waits until n replicas are ready and returns the status.
func (in *instance) waitReady(n int) control.Status {
	in.t.Helper()
	var st control.Status
	testutil.WaitFor(in.t, 30*time.Second, fmt.Sprintf("%d ready replicas", n), func() bool {
		select {
		case <-in.done:
			in.t.Fatalf("mattingctl up exited early (%v):\n%s", in.err, in.stderr.String())
		default:
		}
		var err error
		if st, err = in.tryStatus(); err != nil {
			return false // not serving its socket yet
		}
		ready := 0
		for _, r := range st.Replicas {
			if r.State == "ready" {
				ready++
			}
		}
		return ready == n && len(st.Replicas) == n
	})
	return st
}

// wait waits for the supervisor to exit and returns its exit code.
func (in *instance) wait(timeout time.Duration) int {
	in.t.Helper()
	select {
	case <-in.done:
	case <-time.After(timeout):
		in.t.Fatalf("mattingctl up still running after %s", timeout)
	}
	var ee *exec.ExitError
	if errors.As(in.err, &ee) {
		return ee.ExitCode()
	}
	if in.err != nil {
		in.t.Fatalf("waiting for mattingctl up: %v", in.err)
	}
	return 0
}

// reply is what fakemodel answers.
type reply struct {
	Replica int    `json:"replica"`
	Pid     int    `json:"pid"`
	XFF     string `json:"xff"`
	BodyLen int    `json:"body_len"`
}

var client = &http.Client{
	Timeout:   30 * time.Second,
	Transport: &http.Transport{MaxIdleConnsPerHost: 64},
}

// get sends one request and decodes fakemodel's answer.
func get(url string) (reply, error) {
	resp, err := client.Get(url)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return reply{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return reply{}, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	var r reply
	if err := json.Unmarshal(body, &r); err != nil {
		return reply{}, fmt.Errorf("decoding %q: %w", body, err)
	}
	return r, nil
}

// alive reports whether a process with pid exists and has not exited (a
// zombie we could not reap: replicas are children of the supervisor, not
// of us). A killed process whose main thread shows as a zombie may still
// have threads exiting, and until the last has, its files are open: its
// listening sockets hold their ports. So it is alive until only the main
// thread, a zombie, is left.
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return false
	}
	zombie, threads := false, 0
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "State:"); ok {
			zombie = strings.HasPrefix(strings.TrimSpace(v), "Z")
		}
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			threads, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	return !zombie || threads > 1
}

// portFree reports whether nothing listens on 127.0.0.1:port.
func portFree(port int) bool {
	c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
	if err != nil {
		return true
	}
	c.Close()
	return false
}

// listener names the process listening on port, for a failure message:
// a port still held after its process is gone may be another program's
// (another test binary's, say), or a child the test did not know of.
func listener(port int) string {
	inodes := map[string]bool{}
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, _ := os.ReadFile(table)
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			// local_address is ADDR:PORT in hex; st 0A is LISTEN.
			if len(f) > 9 && f[3] == "0A" && strings.HasSuffix(f[1], fmt.Sprintf(":%04X", port)) {
				inodes["socket:["+f[9]+"]"] = true
			}
		}
	}
	if len(inodes) == 0 {
		return "no listening socket in /proc/net/tcp"
	}
	fds, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	for _, fd := range fds {
		if link, err := os.Readlink(fd); err == nil && inodes[link] {
			pid, _ := strconv.Atoi(strings.Split(fd, "/")[2])
			return "listened on by " + describe([]int{pid})
		}
	}
	return "listened on by a process this test cannot see"
}

// load sends requests from c goroutines until stop is closed and counts
// the answers by outcome.
type load struct {
	mu       sync.Mutex
	ok       int
	failures []string
	replicas map[int]int
	wg       sync.WaitGroup
	stop     chan struct{}
}

func startLoad(url string, c int) *load {
	l := &load{replicas: map[int]int{}, stop: make(chan struct{})}
	for i := 0; i < c; i++ {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				r, err := get(url)
				l.mu.Lock()
				if err != nil {
					l.failures = append(l.failures, err.Error())
				} else {
					l.ok++
					l.replicas[r.Replica]++
				}
				l.mu.Unlock()
			}
		}()
	}
	return l
}

func (l *load) finish() (ok int, failures []string, replicas map[int]int) {
	close(l.stop)
	l.wg.Wait()
	return l.ok, l.failures, l.replicas
}

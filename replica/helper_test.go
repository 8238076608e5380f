package replica

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/testutil"
)

// helperGate is passed to helper processes through Spec.Env; without it
// TestHelperProcess is an ordinary, empty test.
const helperGate = "MATTINGCTL_TEST_HELPER_PROCESS=1"

// The helpers (and theirs) exit once this test binary has, killed or not.
func init() { testutil.MarkTestBinary() }

// helperEnv is the environment a helper gets through Spec.Env. A
// race-enabled binary otherwise sleeps a second on exit.
var helperEnv = []string{helperGate, "GORACE=atexit_sleep_ms=0"}

// TestHelperProcess is not a test: it is the fake replica the process tests
// start, as os/exec's own tests do. Its mode follows "--" in os.Args.
func TestHelperProcess(t *testing.T) {
	if os.Getenv("MATTINGCTL_TEST_HELPER_PROCESS") != "1" {
		return
	}
	// Its children too (the grandchildren some modes leave) are helpers.
	testutil.ExitWithTestBinary()
	args := os.Args
	for i, a := range args {
		if a == "--" {
			args = args[i+1:]
			break
		}
	}
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "helper: no mode")
		os.Exit(2)
	}
	switch mode, rest := args[0], args[1:]; mode {
	case "exit":
		code, _ := strconv.Atoi(rest[0])
		os.Exit(code)
	case "sleep":
		fmt.Println("ready")
		time.Sleep(time.Hour)
	case "trapterm":
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGTERM)
		fmt.Println("ready")
		<-c
		fmt.Println("got SIGTERM")
		os.Exit(0)
	case "ignoreterm":
		signal.Ignore(syscall.SIGTERM)
		fmt.Println("ready")
		time.Sleep(time.Hour)
	case "spawn":
		// A child that leaves behind a grandchild which ignores SIGTERM
		// and shares its process group (and stdout).
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGTERM)
		gc := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "--", "ignoreterm")
		gc.Stdout, gc.Stderr = os.Stdout, os.Stderr
		if err := gc.Start(); err != nil {
			fmt.Fprintln(os.Stderr, "helper: starting grandchild:", err)
			os.Exit(2)
		}
		fmt.Printf("grandchild %d\n", gc.Process.Pid)
		<-c
		os.Exit(0)
	case "setsidchild":
		// A child that leaves behind a grandchild in a session (and so a
		// process group) of its own, as a daemonising server does.
		gc := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "--", "sleep")
		gc.SysProcAttr = setsidAttr()
		if err := gc.Start(); err != nil {
			fmt.Fprintln(os.Stderr, "helper: starting grandchild:", err)
			os.Exit(2)
		}
		fmt.Printf("grandchild %d\n", gc.Process.Pid)
		time.Sleep(time.Hour)
	case "spin":
		// Keeps one core busy.
		fmt.Println("ready")
		for {
		}
	case "hog":
		// Holds N MiB resident, touched so that it counts.
		n, _ := strconv.Atoi(rest[0])
		buf := make([]byte, n<<20)
		for i := range buf {
			buf[i] = byte(i)
		}
		fmt.Println("ready")
		time.Sleep(time.Hour)
		runtime.KeepAlive(buf)
	case "spawnhog":
		// A small parent whose child, in its process group, holds 64 MiB.
		c := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "--", "hog", "64")
		c.Stdout, c.Stderr = os.Stdout, os.Stderr
		if err := c.Start(); err != nil {
			os.Exit(2)
		}
		time.Sleep(time.Hour)
	case "env":
		fmt.Println("PORT=" + os.Getenv("PORT"))
		fmt.Println("MATTINGCTL_REPLICA=" + os.Getenv("MATTINGCTL_REPLICA"))
		fmt.Println("HELPER_EXTRA=" + os.Getenv("HELPER_EXTRA"))
		fmt.Println("ARGS=" + strings.Join(rest, " "))
		os.Exit(0)
	case ReaperArg:
		os.Exit(RunReaper(rest, os.Stdin, os.Stderr))
	case "listen":
		// Listens on 127.0.0.1:PORT, the port it is given, not its own.
		ln, err := net.Listen("tcp", "127.0.0.1:"+rest[0])
		if err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(2)
		}
		defer ln.Close()
		fmt.Println("ready")
		time.Sleep(time.Hour)
	case "listenchild":
		// Leaves the listening to a child, as a reloader does.
		c := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "--", "listen", rest[0])
		c.Stdout, c.Stderr = os.Stdout, os.Stderr
		if err := c.Start(); err != nil {
			os.Exit(2)
		}
		time.Sleep(time.Hour)
	case "lines":
		// Prints its arguments, a line each, then exits 1.
		for _, line := range rest {
			fmt.Fprintln(os.Stderr, line)
		}
		os.Exit(1)
	case "stderr":
		fmt.Fprintln(os.Stderr, "to stderr")
		fmt.Println("to stdout")
		os.Exit(0)
	default:
		fmt.Fprintln(os.Stderr, "helper: unknown mode", mode)
		os.Exit(2)
	}
}

// setsidAttr makes a process start a session of its own; set where the
// platform has sessions.
var setsidAttr = func() *syscall.SysProcAttr { return nil }

// helperCommand is the command line that runs TestHelperProcess in mode.
func helperCommand(mode ...string) []string {
	return append([]string{os.Args[0], "-test.run=^TestHelperProcess$", "--"}, mode...)
}

// capture is an Output whose streams the test can read.
type capture struct {
	out            *Output
	stdout, stderr *testutil.SyncBuffer
}

func newCapture() capture {
	c := capture{stdout: &testutil.SyncBuffer{}, stderr: &testutil.SyncBuffer{}}
	c.out = &Output{Stdout: c.stdout, Stderr: c.stderr}
	return c
}

// startHelper starts TestHelperProcess in mode as replica 1 and kills its
// process group when the test ends.
func startHelper(t *testing.T, c capture, mode ...string) *Process {
	t.Helper()
	spec := Spec{ID: 1, Port: 1, Command: helperCommand(mode...), Env: helperEnv}
	p, err := Start(spec, c.out)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = p.Kill() })
	return p
}

// waitExit waits up to d for p to exit and returns how it did.
func waitExit(t *testing.T, p *Process, d time.Duration) Exit {
	t.Helper()
	select {
	case <-p.Done():
		return p.Exit()
	case <-time.After(d):
		t.Fatalf("process %d did not exit within %s", p.Pid(), d)
		return Exit{}
	}
}

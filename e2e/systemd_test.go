package e2e

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/testutil"
)

// notifySocket is the test's systemd: a unixgram socket that `up` gets as
// NOTIFY_SOCKET, whose datagrams arrive on msgs.
type notifySocket struct {
	path string
	msgs chan datagram
}

// datagram is one notification and when it arrived.
type datagram struct {
	at   time.Time
	text string
}

func listenNotify(t *testing.T) *notifySocket {
	t.Helper()
	dir, err := os.MkdirTemp("", "sdn") // a socket path must fit in 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ns := &notifySocket{path: filepath.Join(dir, "notify"), msgs: make(chan datagram, 1024)}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: ns.path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return // closed by the cleanup
			}
			ns.msgs <- datagram{time.Now(), string(buf[:n])}
		}
	}()
	t.Cleanup(func() { conn.Close(); <-done })
	return ns
}

// await returns the first datagram holding line, failing t if none comes
// within timeout; every datagram before it is passed to seen.
func (ns *notifySocket) await(t *testing.T, line string, timeout time.Duration, seen func(string)) datagram {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case m := <-ns.msgs:
			for _, l := range strings.Split(m.text, "\n") {
				if l == line {
					return m
				}
			}
			seen(m.text)
		case <-deadline:
			t.Fatalf("no %s from mattingctl up within %s", line, timeout)
		}
	}
}

// TestSystemdNotify runs `up` as systemd runs a Type=notify service with
// a watchdog: READY=1 comes once both replicas are ready and not before,
// then a status line and pings at half of WATCHDOG_USEC; a set and a
// SIGHUP are each bracketed by RELOADING=1 and READY=1; SIGTERM brings
// STOPPING=1. The replicas do not inherit systemd's variables.
func TestSystemdNotify(t *testing.T) {
	t.Parallel()
	ns := listenNotify(t)
	port := testutil.FreePorts(t, 10)
	home := t.TempDir()
	in := launchEnv(t, []string{"NOTIFY_SOCKET=" + ns.path, "WATCHDOG_USEC=400000", "WATCHDOG_PID="}, mattingctl, home, port,
		"up", "--port", strconv.Itoa(port), "--host", "127.0.0.1", "--admin", "none", "--replicas", "2",
		"--", "sh", "-c", `echo "inherited notify=${NOTIFY_SOCKET:-none} watchdog=${WATCHDOG_USEC:-none}"; exec "$0"`, fakemodel)

	ready := ns.await(t, "READY=1", 30*time.Second, func(m string) {
		if strings.Contains(m, "STOPPING=1") {
			t.Fatalf("STOPPING=1 before READY=1: %q", m)
		}
	})
	// READY=1 is sent after the replicas are ready: status agrees.
	st := in.status()
	if st.Ready() != 2 {
		t.Fatalf("READY=1 (%q) came with %d of 2 replicas ready", ready.text, st.Ready())
	}
	ns.await(t, "STATUS=2/2 replicas ready", 10*time.Second, func(string) {})
	// Pings at half of WATCHDOG_USEC's 0.4 s, not faster; the ones sent
	// during the start are still queued, so count from a fresh one.
	for len(ns.msgs) > 0 {
		<-ns.msgs
	}
	first := ns.await(t, "WATCHDOG=1", 5*time.Second, func(string) {})
	var last datagram
	for range 4 {
		last = ns.await(t, "WATCHDOG=1", 5*time.Second, func(string) {})
	}
	if span := last.at.Sub(first.at); span < 4*150*time.Millisecond {
		t.Errorf("5 pings in %s: faster than every 200 ms, half of WATCHDOG_USEC", span)
	}

	// A set that changes the queue, then a SIGHUP that is refused (no -f
	// to read again): each is bracketed by RELOADING=1, with the monotonic
	// time systemd 253 compares, and READY=1, so that systemctl reload
	// under Type=notify-reload ends either way.
	if out, errOut, code := in.ctl("set", "queue=7"); code != 0 {
		t.Fatalf("set queue=7: exit %d\n%s%s", code, out, errOut)
	}
	reloadBracket(t, ns, "set queue=7")
	if st := in.status(); st.QueueMax != 7 {
		t.Errorf("queue %d after set queue=7", st.QueueMax)
	}
	if err := in.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	reloadBracket(t, ns, "SIGHUP without -f")

	if err := in.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	stopping := ns.await(t, "STOPPING=1", 20*time.Second, func(m string) {
		if strings.Contains(m, "READY=1") {
			t.Errorf("a second READY=1 before STOPPING=1: %q", m)
		}
	})
	if !strings.Contains(stopping.text, "STATUS=stopping") {
		t.Errorf("STOPPING=1 came as %q, want STATUS=stopping with it", stopping.text)
	}
	if code := in.wait(20 * time.Second); code != 0 {
		t.Errorf("exit code %d after SIGTERM", code)
	}
	out := in.stdout.String()
	if strings.Count(out, "inherited notify=none watchdog=none") != 2 {
		t.Errorf("replicas inherited systemd's variables, or did not start; output:\n%s", out)
	}
}

// reloadBracket awaits RELOADING=1 with MONOTONIC_USEC, then READY=1,
// with nothing else of the lifecycle between them.
func reloadBracket(t *testing.T, ns *notifySocket, what string) {
	t.Helper()
	skip := func(m string) {
		if strings.Contains(m, "READY=1") || strings.Contains(m, "STOPPING=1") {
			t.Errorf("%s: %q before RELOADING=1", what, m)
		}
	}
	m := ns.await(t, "RELOADING=1", 20*time.Second, skip)
	if !strings.Contains(m.text, "MONOTONIC_USEC=") {
		t.Errorf("%s: RELOADING=1 came as %q, without MONOTONIC_USEC", what, m.text)
	}
	ns.await(t, "READY=1", 20*time.Second, func(m string) {
		if strings.Contains(m, "STOPPING=1") || strings.Contains(m, "RELOADING=1") {
			t.Errorf("%s: %q between RELOADING=1 and READY=1", what, m)
		}
	})
}

// TestSystemdNotifyRefusesDetach: `up -d` in a Type=notify service would
// leave systemd waiting for READY=1 from a process that exits.
func TestSystemdNotifyRefusesDetach(t *testing.T) {
	t.Parallel()
	ns := listenNotify(t)
	cmd := exec.Command(mattingctl, "up", "-d", "--port", strconv.Itoa(testutil.FreePorts(t, 3)), "--", fakemodel)
	cmd.Env = append(os.Environ(), "MATTINGCTL_HOME="+t.TempDir(), "NOTIFY_SOCKET="+ns.path, quickExit())
	cmd.SysProcAttr = diesWithTest()
	out, err := cmd.CombinedOutput()
	checkRace(t, "mattingctl up -d", string(out))
	if err == nil {
		t.Fatalf("up -d under NOTIFY_SOCKET succeeded:\n%s", out)
	}
	if lines := strings.Split(strings.TrimSpace(string(out)), "\n"); len(lines) != 1 || !strings.Contains(lines[0], "-d cannot run under systemd") {
		t.Errorf("want one line refusing -d, got:\n%s", out)
	}
	select {
	case m := <-ns.msgs:
		t.Errorf("up -d notified systemd: %q", m.text)
	default:
	}
}

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/testutil"
)

// topPane is `mattingctl top` running in an 80x30 tmux pane, on a tmux
// server of the test's own: tmux is the terminal, and its screen is what
// a user would see. A shell runs top and stays, as a user's would, so the
// terminal top leaves behind can be looked at.
type topPane struct {
	t    *testing.T
	tmux string
	sock string
	pid  int // of mattingctl top
}

// topExited is what the pane's shell prints once top has exited.
var topExited = regexp.MustCompile(`top exited (\d+)`)

// topFirstScreen bounds the wait for top's first screen: a race-enabled
// binary drawing in a pty, on a CI machine loaded by the suite's parallel
// tests, once drew nothing for 10 s.
const topFirstScreen = 30 * time.Second

func startTop(t *testing.T, home string, args ...string) *topPane {
	t.Helper()
	p := &topPane{t: t, tmux: needTool(t, "tmux", "tmux"), sock: filepath.Join(t.TempDir(), "tmux.sock")}
	script := `"$0" top "$@"; echo "top exited $?"; exec cat`
	cmd := append([]string{"-f", "/dev/null", "new-session", "-d", "-s", "top", "-x", "80", "-y", "30",
		"-e", "MATTINGCTL_HOME=" + home, "sh", "-c", script, mattingctl}, args...)
	if out, err := exec.Command(p.tmux, append([]string{"-S", p.sock}, cmd...)...).CombinedOutput(); err != nil {
		t.Fatalf("tmux new-session: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if pid := p.pid; pid > 0 && alive(pid) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		history := strings.Join(p.history(), "\n")
		checkRace(t, "mattingctl top", history)
		if t.Failed() {
			t.Logf("the pane of mattingctl top:\n%s", history)
		}
		_, _ = p.run("kill-server")
	})
	sh, err := strconv.Atoi(p.pane("#{pane_pid}"))
	if err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "the pane's shell to start top", func() bool {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", sh, sh))
		p.pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		return p.pid > 0
	})
	return p
}

func (p *topPane) run(args ...string) (string, error) {
	out, err := exec.Command(p.tmux, append([]string{"-S", p.sock}, args...)...).CombinedOutput()
	return string(out), err
}

// screen returns the pane's visible lines.
func (p *topPane) screen() []string {
	p.t.Helper()
	return p.capture("capture-pane", "-p", "-t", "top")
}

// history returns every line the pane's main screen has held, with the
// lines the terminal wrapped joined.
func (p *topPane) history() []string {
	p.t.Helper()
	return p.capture("capture-pane", "-p", "-J", "-S", "-", "-E", "-", "-t", "top")
}

func (p *topPane) capture(args ...string) []string {
	p.t.Helper()
	out, err := p.run(args...)
	if err != nil {
		p.t.Errorf("tmux %s: %v: %s", args[0], err, out)
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " ")
	}
	return lines
}

// pane reads tmux's formats of the pane, such as #{alternate_on}.
func (p *topPane) pane(format string) string {
	p.t.Helper()
	out, err := p.run("display-message", "-p", "-t", "top", format)
	if err != nil {
		p.t.Fatalf("tmux display-message %s: %v: %s", format, err, out)
	}
	return strings.TrimSpace(out)
}

// wait waits for top to exit and returns its exit status and the lines
// it left on the main screen.
func (p *topPane) wait(timeout time.Duration) (int, []string) {
	p.t.Helper()
	var code int
	var left []string
	testutil.WaitFor(p.t, timeout, "mattingctl top to exit", func() bool {
		left = left[:0]
		for _, line := range p.history() {
			if m := topExited.FindStringSubmatch(line); m != nil {
				code, _ = strconv.Atoi(m[1])
				return true
			}
			if line != "" {
				left = append(left, line)
			}
		}
		return false
	})
	return code, left
}

// topRow is a replica's row: REPLICA STATE PORT INFLIGHT RPS RESTARTS CPU
// RSS P50 P99 (under load every replica reports its latency).
var topRow = regexp.MustCompile(`^(replica-\d+) +(\w+) +(\d+) +(\d+)/(\d+) +([\d.]+) +(\d+) +([\d.]+)% +([\d.]+[KMG]iB) +[\d.]+(us|ms|s) +[\d.]+(us|ms|s)$`)

func TestTopShowsEveryReplicaAndQuitsOnQ(t *testing.T) {
	t.Parallel()
	in := start(t, 3, "--", fakemodel)
	st := in.waitReady(3)
	l := startLoad(in.url("/?sleep=5ms"), 6)
	defer l.finish()
	p := startTop(t, in.home)

	// A row per replica, on its own port, with a rate above zero: top
	// polls and computes the rates, under load.
	var screen []string
	testutil.WaitFor(t, 15*time.Second, "a row per ready replica with a rate above zero", func() bool {
		screen = p.screen()
		rows := map[string][]string{}
		for _, line := range screen {
			if m := topRow.FindStringSubmatch(line); m != nil {
				rows[m[1]] = m
			}
		}
		for _, r := range st.Replicas {
			m := rows[r.Name]
			if m == nil || m[2] != "ready" || m[3] != strconv.Itoa(r.Port) || m[6] == "0.0" {
				return false
			}
		}
		return len(rows) == 3
	})
	t.Logf("screen:\n%s", strings.Join(screen, "\n"))
	sparks := 0
	for _, line := range screen {
		if n := len([]rune(line)); n > 80 {
			t.Errorf("line of %d columns: %q", n, line)
		}
		if strings.HasPrefix(line, "replica-") && strings.ContainsAny(line, "▁▂▃▄▅▆▇█") && strings.Contains(line, "peak ") {
			sparks++
		}
	}
	if sparks != 3 {
		t.Errorf("%d sparklines, want 3", sparks)
	}

	if out, err := p.run("send-keys", "-t", "top", "q"); err != nil {
		t.Fatalf("tmux send-keys: %v: %s", err, out)
	}
	if code, left := p.wait(10 * time.Second); code != 0 || len(left) != 0 {
		t.Errorf("top exited %d after q, leaving %q", code, left)
	}
	// The terminal is given back: out of the alternate screen, the cursor shown.
	if alt, cursor := p.pane("#{alternate_on}"), p.pane("#{cursor_flag}"); alt != "0" || cursor != "1" {
		t.Errorf("after top: alternate screen %s, cursor shown %s", alt, cursor)
	}
	if alive(p.pid) {
		t.Errorf("top (pid %d) still running after it exited", p.pid)
	}
	// The instance goes on, untouched.
	if got := in.status(); got.Ready() != 3 {
		t.Errorf("%d replicas ready after top quit", got.Ready())
	}

	// Without a terminal top prints one frame, plain, and exits.
	frame, errOut, code := in.ctl("top")
	if code != 0 || strings.Contains(frame, "\x1b") || strings.Count(frame, " ready ") != 3 {
		t.Errorf("top without a terminal: exit %d\n%s%s", code, frame, errOut)
	}
}

func TestTopSaysWhenTheInstanceGoesAway(t *testing.T) {
	t.Parallel()
	in := start(t, 2, "--", fakemodel)
	in.waitReady(2)
	p := startTop(t, in.home)
	testutil.WaitFor(t, topFirstScreen, "top's first screen", func() bool {
		return strings.Contains(strings.Join(p.screen(), "\n"), "replica-2")
	})
	if out, errOut, code := in.ctl("down"); code != 0 {
		t.Fatalf("down: exit %d: %s%s", code, out, errOut)
	}
	// Once the screen is given back, one line says why.
	code, said := p.wait(10 * time.Second)
	if code != 1 {
		t.Errorf("top exited %d when its instance went away, want 1", code)
	}
	if len(said) != 1 || !strings.HasPrefix(said[0], `mattingctl: instance "default" went away: `) {
		t.Errorf("top's last words: %q", said)
	}

	// Not running at start: the same error as status.
	_, statusErr, statusCode := in.ctl("status")
	_, topErr, topCode := in.ctl("top")
	if topCode != 1 || statusCode != 1 || topErr != statusErr || !strings.Contains(topErr, `no mattingctl instance "default" is running`) {
		t.Errorf("top without an instance: exit %d: %q; status: exit %d: %q", topCode, topErr, statusCode, statusErr)
	}
}

func TestTopQuitsOnCtrlC(t *testing.T) {
	t.Parallel()
	in := start(t, 1, "--", fakemodel)
	in.waitReady(1)
	p := startTop(t, in.home)
	testutil.WaitFor(t, topFirstScreen, "top's first screen", func() bool {
		return strings.Contains(strings.Join(p.screen(), "\n"), "replica-1")
	})
	if out, err := p.run("send-keys", "-t", "top", "C-c"); err != nil {
		t.Fatalf("tmux send-keys: %v: %s", err, out)
	}
	if code, left := p.wait(10 * time.Second); code != 0 || len(left) != 0 {
		t.Errorf("top exited %d after Ctrl-C, leaving %q", code, left)
	}
	if alt, cursor := p.pane("#{alternate_on}"), p.pane("#{cursor_flag}"); alt != "0" || cursor != "1" {
		t.Errorf("after top: alternate screen %s, cursor shown %s", alt, cursor)
	}
}

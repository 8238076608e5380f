package e2e

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/testutil"
)

// lastLine returns the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}

// errorLine is the last line of s that is mattingctl's error, "mattingctl:
// ...": a replica's last lines of output it quotes may follow it.
func errorLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.HasPrefix(lines[i], "mattingctl: ") {
			return lines[i]
		}
	}
	return lines[len(lines)-1]
}

// TestUserErrors checks that every mistake a user can make ends with one
// line naming the thing, a non-zero exit and nothing left running.
func TestUserErrors(t *testing.T) {
	t.Parallel()
	notExec := filepath.Join(t.TempDir(), "app.py")
	if err := os.WriteFile(notExec, []byte("print(1)\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	busy := testutil.FreePorts(t, 4)
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(busy))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ln2, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(busy+3))
	if err != nil {
		t.Fatal(err)
	}
	defer ln2.Close()
	p := strconv.Itoa(busy)

	tests := []struct {
		name string
		args []string
		want string
		// onlyLine: stderr is exactly the error line (the failure is
		// found before anything starts).
		onlyLine bool
	}{
		{"no command", []string{"up", "-r", "2"}, "no command given", true},
		{"empty after dash", []string{"up", "-r", "2", "--"}, "no command given", true},
		{"command not found", []string{"up", "--", "no-such-model-server-xyz"}, `command "no-such-model-server-xyz" not found in $PATH`, true},
		{"no such file", []string{"up", "--", "./no/such/app"}, `command "./no/such/app": no such file`, true},
		{"not executable", []string{"up", "--", notExec}, "is not an executable file", true},
		{"proxy port in use", []string{"up", "-p", p, "--", fakemodel}, "proxy port " + p + ": already in use", true},
		{"replica port in use", []string{"up", "-p", strconv.Itoa(busy + 1), "-r", "3", "--", fakemodel}, "port " + strconv.Itoa(busy+3) + " for replica-2: already in use", true},
		{"zero replicas", []string{"up", "-r", "0", "--", fakemodel}, `"-r, --replicas" flag: must be at least 1, not 0`, true},
		{"autoscale bounds reversed", []string{"up", "-r", "5:2", "--", fakemodel}, `"-r, --replicas" flag: MAX must be at least MIN, such as 2:5`, true},
		{"autoscale bound missing", []string{"up", "--replicas", "1:", "--", fakemodel}, `"-r, --replicas" flag: want a whole number or MIN:MAX such as 1:6, got "1:"`, true},
		{"autoscale with no cap", []string{"up", "-r", "1:4", "--max-inflight", "0", "--", fakemodel}, `--replicas 1:4 needs a cap on requests in flight`, true},
		{"bad policy", []string{"up", "--policy", "fastest", "--", fakemodel}, `unknown policy "fastest"`, true},
		{"bad size", []string{"up", "--max-body", "lots", "--", fakemodel}, `want a size such as 50MiB, 512k or 1048576, got "lots"`, true},
		{"admin port in use", []string{"up", "-p", strconv.Itoa(busy + 1), "--", fakemodel}, "admin listener 127.0.0.1:" + p + ": already in use; choose another with --admin HOST:PORT, or --admin none", true},
		{"status without instance", []string{"status"}, `no mattingctl instance "default" is running`, true},
		{"status json without instance", []string{"status", "--json"}, `no mattingctl instance "default" is running`, true},
		{"scale without instance", []string{"scale", "3"}, `no mattingctl instance "default" is running`, true},
		{"down without instance", []string{"down", "--name", "other"}, `no mattingctl instance "other" is running`, true},
		{"dashboard without instance", []string{"dashboard"}, `no mattingctl instance "default" is running`, true},
		{"scale negative", []string{"scale", "--", "-1"}, "replica count must be at least 1, not -1", true},
		{"scale negative without --", []string{"scale", "-1"}, "replica count must be at least 1, not -1", true},
		{"scale zero", []string{"scale", "0"}, "replica count must be at least 1, not 0 (to stop every replica, run mattingctl down)", true},
		{"stop suggests down", []string{"stop"}, `unknown command "stop"; did you mean "down"?`, true},
		{"scale not a number", []string{"scale", "six"}, `replica count "six" is not a whole number`, true},
		{"scale no count without instance", []string{"scale"}, `no mattingctl instance "default" is running`, true},
		{"bad name", []string{"status", "--name", "../x"}, `--name "../x"`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			if args[0] == "up" {
				// Loopback only, for a case that gets as far as listening.
				args = append([]string{"up", "--host", "127.0.0.1"}, args[1:]...)
			}
			_, stderr, code := run(t, t.TempDir(), args...)
			if code == 0 {
				t.Fatalf("exit code 0, want non-zero; stderr:\n%s", stderr)
			}
			line := lastLine(stderr)
			if !strings.HasPrefix(line, "mattingctl: ") || !strings.Contains(line, tt.want) {
				t.Errorf("last line of stderr = %q, want it to contain %q", line, tt.want)
			}
			if tt.onlyLine && strings.Count(strings.TrimRight(stderr, "\n"), "\n") != 0 {
				t.Errorf("stderr has more than the error line:\n%s", stderr)
			}
		})
	}
}

// TestStartFailures covers replicas that never become ready: the instance
// exits non-zero, names the replica and leaves nothing running.
func TestStartFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want string
	}{
		// Both replicas fail; the first to do so is named, whichever it is.
		{"exits at start", []string{"--", fakemodel, "-fail-start"}, "replica-%d (port %d) exited before becoming ready (exit code 1)"},
		{"never ready", []string{"--ready-timeout", "1s", "--health", "/health", "--", fakemodel, "-ready-delay", "1h"}, "replica-%d (port %d) did not become ready within 1s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := start(t, 2, tt.args...)
			if code := in.wait(30 * time.Second); code == 0 {
				t.Fatalf("exit code 0 for a replica that cannot start")
			}
			line := errorLine(in.stderr.String())
			want1 := fmt.Sprintf(tt.want, 1, in.port+1)
			want2 := fmt.Sprintf(tt.want, 2, in.port+2)
			if !strings.HasPrefix(line, "mattingctl: ") || !strings.Contains(line, want1) && !strings.Contains(line, want2) {
				t.Errorf("error line = %q, want %q or %q", line, want1, want2)
			}
			for p := in.port; p <= in.port+2; p++ {
				if !portFree(p) {
					t.Errorf("port %d still in use after the failed start: %s", p, listener(p))
				}
			}
			if _, err := os.Stat(in.home + "/default.sock"); !os.IsNotExist(err) {
				t.Errorf("control socket left behind")
			}
		})
	}
}

func TestSecondInstanceWithSameNameIsRefused(t *testing.T) {
	t.Parallel()
	in := start(t, 1, "--", fakemodel)
	in.waitReady(1)
	_, stderr, code := run(t, in.home, "up", "-p", strconv.Itoa(testutil.FreePorts(t, 3)), "--host", "127.0.0.1", "--", fakemodel)
	if code == 0 || !strings.Contains(lastLine(stderr), `an instance named "default" is already running`) {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	in.waitReady(1) // the first one is untouched
}

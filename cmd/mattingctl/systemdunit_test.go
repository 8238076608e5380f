package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// unitOf runs `mattingctl ARGS` (systemd-unit ...) with self as the
// binary and returns the unit it printed, or the error.
func unitOf(t *testing.T, self string, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	root := newRootCmd(&factory{Out: &out, ErrOut: &errOut, Self: self}, runFuncs{})
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

// unitKeys maps each key of a unit to its values, in order.
func unitKeys(unit string) map[string][]string {
	keys := map[string][]string{}
	for _, line := range strings.Split(unit, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			keys[k] = append(keys[k], v)
		}
	}
	return keys
}

func TestSystemdUnit(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	unit, err := unitOf(t, "/opt/bin/mattingctl", "--name", "mat", "systemd-unit", "-r", "4", "--stop-timeout", "1m", "--drain-delay", "5s",
		"--user", "alice", "--watchdog", "20s", "-e", "GREETING=hello world", "--", "sh", "-c", `exec python3 app.py --port $PORT`)
	if err != nil {
		t.Fatal(err)
	}
	keys := unitKeys(unit)
	want := map[string]string{
		"Type":             "notify",
		"NotifyAccess":     "main",
		"ExecStart":        `/opt/bin/mattingctl --name=mat up --replicas=4 --stop-timeout=1m --drain-delay=5s "--env=GREETING=hello world" -- ` + sh + ` -c "exec python3 app.py --port $$PORT"`,
		"ExecReload":       "/bin/kill -HUP $MAINPID",
		"WorkingDirectory": dir,
		"User":             "alice",
		"KillMode":         "mixed",
		"Delegate":         "yes",
		"TimeoutStopSec":   "80s",  // 5 s + 1 min + 15 s
		"TimeoutStartSec":  "330s", // one wave of --ready-timeout's 5 min, + 30 s
		"Restart":          "on-failure",
		"WatchdogSec":      "20s",
		"Environment":      "MATTINGCTL_HOME=/run/mattingctl",
		"RuntimeDirectory": "mattingctl",
		"WantedBy":         "multi-user.target",
	}
	for k, v := range want {
		if got := keys[k]; len(got) != 1 || got[0] != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	for _, section := range []string{"[Unit]", "[Service]", "[Install]"} {
		if !strings.Contains(unit, "\n"+section+"\n") {
			t.Errorf("no %s section", section)
		}
	}
	if !strings.Contains(unit, "systemctl enable --now mat\n") {
		t.Errorf("the header does not say how to install the unit as mat.service:\n%s", unit)
	}
}

func TestSystemdUnitDefaults(t *testing.T) {
	t.Chdir(t.TempDir())
	unit, err := unitOf(t, "/opt/bin/mattingctl", "systemd-unit", "--user", "root", "--start-concurrency", "2", "-r", "5", "--watchdog", "0", "--", "sh")
	if err != nil {
		t.Fatal(err)
	}
	keys := unitKeys(unit)
	if _, ok := keys["User"]; ok {
		t.Errorf("--user root wrote User=%v", keys["User"])
	}
	if _, ok := keys["WatchdogSec"]; ok {
		t.Errorf("--watchdog 0 wrote WatchdogSec=%v", keys["WatchdogSec"])
	}
	// 5 replicas, 2 at a time: 3 waves of 5 min, + 30 s.
	if got := keys["TimeoutStartSec"]; len(got) != 1 || got[0] != "930s" {
		t.Errorf("TimeoutStartSec = %v, want 930s", got)
	}
	if got := keys["TimeoutStopSec"]; len(got) != 1 || got[0] != "45s" {
		t.Errorf("TimeoutStopSec = %v, want 45s (--stop-timeout's 30 s + 15 s)", got)
	}
}

func TestSystemdUnitConfigFile(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	if err := os.WriteFile("matting.yaml", []byte("stop-timeout: 2m\ncommand: [sh, app.sh]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	unit, err := unitOf(t, "/opt/bin/mattingctl", "systemd-unit", "-f", "matting.yaml")
	if err != nil {
		t.Fatal(err)
	}
	keys := unitKeys(unit)
	if got := keys["ExecStart"][0]; !strings.Contains(got, "--file="+filepath.Join(dir, "matting.yaml")+" -- ") || !strings.HasSuffix(got, "/sh app.sh") {
		t.Errorf("ExecStart = %s, want the file's absolute path and its command", got)
	}
	if got := keys["TimeoutStopSec"][0]; got != "135s" {
		t.Errorf("TimeoutStopSec = %s, want the file's 2 min + 15 s", got)
	}
}

// TestSystemdUnitServices: a file of several services makes a unit that
// runs up on the file alone, described by its services.
func TestSystemdUnitServices(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	file := "services:\n  - name: a\n    route: /a/\n    replicas: 2\n    command: [sh, a.sh]\n  - name: b\n    route: /b/\n    command: sh b.sh\n"
	if err := os.WriteFile("up.yaml", []byte(file), 0o644); err != nil {
		t.Fatal(err)
	}
	unit, err := unitOf(t, "/opt/bin/mattingctl", "systemd-unit", "-f", "up.yaml")
	if err != nil {
		t.Fatal(err)
	}
	keys := unitKeys(unit)
	if got := keys["ExecStart"][0]; !strings.HasSuffix(got, "up --file="+filepath.Join(dir, "up.yaml")) {
		t.Errorf("ExecStart = %s, want up on the file's absolute path, and no command", got)
	}
	if got := keys["Description"][0]; got != "mattingctl default: services a (2 replicas), b (1 replicas)" {
		t.Errorf("Description = %s", got)
	}
}

func TestSystemdUnitRefusals(t *testing.T) {
	t.Chdir(t.TempDir())
	if err := os.WriteFile("detached.yaml", []byte("detach: true\ncommand: [sh]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-d", "--", "sh"}, "-d cannot go in a unit"},
		{[]string{"--detach=true", "--", "sh"}, "-d cannot go in a unit"},
		{[]string{"-f", "detached.yaml"}, "detached.yaml: detach: -d cannot go in a unit"},
		{[]string{"--admin-token", "0123456789abcdef0", "--", "sh"}, "--admin-token cannot go in a unit"},
		{[]string{"--replicas", "four", "--", "sh"}, "--replicas"},
		{[]string{"--", "no-such-program-here"}, `"no-such-program-here" not found`},
		{[]string{}, "no command given"},
	} {
		out, err := unitOf(t, "/opt/bin/mattingctl", append([]string{"systemd-unit"}, tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("systemd-unit %q: error %v, want one line with %q", tc.args, err, tc.want)
		}
		if out != "" {
			t.Errorf("systemd-unit %q printed a unit despite the error:\n%s", tc.args, out)
		}
	}
}

// TestSystemdUnitVerifies runs systemd's own check on a generated unit,
// where systemd-analyze is installed: any warning fails the test.
func TestSystemdUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("no systemd-analyze")
	}
	dir := t.TempDir()
	t.Chdir(dir)
	self, err := os.Executable() // verify checks ExecStart='s program exists
	if err != nil {
		t.Fatal(err)
	}
	unit, err := unitOf(t, self, "systemd-unit", "--user", "root", "-r", "2", "-e", "A=50% $HOME", "--", "sh", "-c", `echo "$PORT"; exec sleep 1000`, ";")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "matting-test.service")
	if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s\nunit:\n%s", err, out, unit)
	}
}

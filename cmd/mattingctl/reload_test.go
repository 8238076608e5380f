package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/control"
	"github.com/mattingctl/mattingctl/supervisor"
)

// TestParseUpAgain: up's command line parses again as at start, with the
// config file's content given and settings over both; flags given on the
// command line still override the file.
func TestParseUpAgain(t *testing.T) {
	file := filepath.Join(t.TempDir(), "m.yaml")
	argv := []string{"--name", "gpu", "up", "-f", file, "--queue", "99"}
	content := []byte("replicas: 2\nmax-inflight: 8\nqueue: 5\nenv: [A=1]\ncommand: [python3, app.py]\n")
	o, err := parseUpAgain(argv, content, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	if o.Name != "gpu" || o.Replicas != 2 || o.MaxInflight != 8 || o.Queue != 99 || !slices.Equal(o.Command, []string{"python3", "app.py"}) {
		t.Errorf("parsed name %s, replicas %d, max-inflight %d, queue %d, command %q", o.Name, o.Replicas, o.MaxInflight, o.Queue, o.Command)
	}
	o, err = parseUpAgain(argv, content, []string{"max-inflight=auto", "queue-timeout=1m", "env=B=2", "env=C=3", "command=python3 app.py --fp16"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if o.MaxInflight != 0 || !o.Adaptive() || o.QueueTimeout == nil || *o.QueueTimeout != time.Minute ||
		!slices.Equal(o.Env, []string{"B=2", "C=3"}) || !slices.Equal(o.Command, []string{"python3", "app.py", "--fp16"}) {
		t.Errorf("with settings: max-inflight %d, queue timeout %v, env %q, command %q", o.MaxInflight, o.QueueTimeout, o.Env, o.Command)
	}
	// Up's own settings are reported, for the supervisor to refuse.
	o, err = parseUpAgain(argv, content, []string{"log-level=debug"}, "")
	if err != nil || fixedSettings(o)["log-level"] != "debug" || fixedSettings(o)["name"] != "gpu" {
		t.Errorf("log-level=debug: %v, %v", err, fixedSettings(o))
	}
	for _, tt := range []struct {
		content string
		sets    []string
		want    string
	}{
		{"queue: [1\n", nil, file + ": "},
		{"queue: 1\nnosuch: 2\n", nil, file + ": line 2: unknown setting \"nosuch\""},
		{"retries: x\n", nil, file + ": line 1: retries: "},
		{"", []string{"max-inflight=lots"}, "max-inflight=lots: "},
		{"", []string{"nosuch=1"}, `unknown setting "nosuch"`},
		{"", []string{"queue"}, `"queue" is not FLAG=VALUE`},
	} {
		if _, err := parseUpAgain(argv, []byte(tt.content), tt.sets, ""); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("content %q, sets %q: error %v, want it to contain %q", tt.content, tt.sets, err, tt.want)
		}
	}
}

// TestUpSource: up gives the supervisor the file it read and a Load that
// parses its command line again.
func TestUpSource(t *testing.T) {
	file := filepath.Join(t.TempDir(), "m.yaml")
	if err := os.WriteFile(file, []byte("queue: 5\ncommand: [x]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var got *upOptions
	root := newRootCmd(testFactory(), runFuncs{up: func(o *upOptions) error { got = o; return nil }})
	root.SetArgs([]string{"up", "-f", file})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	got.Argv = []string{"up", "-f", file}
	src := upSource(got)
	if src.File != file || string(src.Content) != "queue: 5\ncommand: [x]\n" || src.Fixed["file"] != file {
		t.Errorf("source %+v", src)
	}
	o, fixed, err := src.Load([]byte("queue: 6\ncommand: [x]\n"), []string{"retries=0"})
	if err != nil || o.Queue != 6 || o.Retries != 0 || fixed["log-level"] != "info" {
		t.Errorf("load: queue %d, retries %d, fixed %v, %v", o.Queue, o.Retries, fixed, err)
	}
}

func TestReloadAndSetRun(t *testing.T) {
	fake := &fakeClient{reload: control.ReloadResult{Name: "default", Changes: []control.Change{
		{Setting: "max-inflight", Old: "8", New: "auto", Applied: control.AppliedLive},
		{Setting: "upstream-timeout", Old: "10m", New: "2m", Applied: control.AppliedLive},
		{Setting: "command", Old: "python3 app.py", New: "python3 app.py --fp16", Applied: control.AppliedRolling},
	}, Restart: &control.RestartResult{Name: "default", Replaced: []control.Replacement{{Name: "replica-1", OldPid: 10, NewPid: 20, OldPort: 9111, NewPort: 9113}}}}}
	out, _, err := runCmd(t, fake, "set", "max-inflight=auto", "upstream-timeout=2m")
	want := "max-inflight 8 → auto\nupstream-timeout 10m → 2m\ncommand changed: rolling restart\n  was: python3 app.py\n  now: python3 app.py --fp16\n" +
		"replica-1: pid 10 (port 9111) -> pid 20 (port 9113)\ninstance default: 1 replicas restarted\n"
	if err != nil || out != want || !slices.Equal(fake.sets, []string{"max-inflight=auto", "upstream-timeout=2m"}) {
		t.Errorf("set: %v, sent %q, printed\n%s\nwant\n%s", err, fake.sets, out, want)
	}
	fake.reload = control.ReloadResult{Name: "default", Changes: []control.Change{}}
	if out, _, err := runCmd(t, fake, "reload"); err != nil || out != "instance default: no setting changed\n" {
		t.Errorf("reload with no change: %v, %q", err, out)
	}
	fake.reload.Changes = []control.Change{{Setting: "env", Old: "", New: "A=1", Applied: control.AppliedRolling}}
	fake.reload.Restart = &control.RestartResult{Name: "default", Error: "replica-2: did not become ready"}
	if _, _, err := runCmd(t, fake, "reload"); err == nil || !strings.Contains(err.Error(), "rolling restart stopped: replica-2") {
		t.Errorf("reload whose rolling restart stopped: %v", err)
	}
	if _, _, err := runCmd(t, fake, "set", "port"); err == nil || !strings.Contains(err.Error(), "not FLAG=VALUE") {
		t.Errorf("set port: %v", err)
	}
	fake.err = errors.New("port cannot change while the instance runs (restart up to change it); nothing was changed")
	var b bytes.Buffer
	if err := reloadRun(&reloadOptions{Out: &b, Client: func() (instanceClient, error) { return fake, nil }, Settings: []string{"port=9200"}, Timeout: time.Second}); err != fake.err || b.Len() != 0 {
		t.Errorf("a refused set: %v, printed %q", err, b.String())
	}
}

// TestSettingsAreUpFlags: every setting the supervisor compares is one of
// up's flags (or command), so set and reload name them as up does.
func TestSettingsAreUpFlags(t *testing.T) {
	up := newUpCmd(testFactory(), &globalOptions{}, nil)
	for _, name := range supervisor.SettingNames() {
		if name != "command" && name != "name" && up.Flags().Lookup(name) == nil {
			t.Errorf("setting %s is no flag of up's", name)
		}
	}
}

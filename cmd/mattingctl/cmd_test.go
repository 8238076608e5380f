package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/balancer"
)

func TestUpFlags(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		check func(t *testing.T, o *upOptions)
	}{
		{"defaults", []string{"--", "python3", "app.py"}, func(t *testing.T, o *upOptions) {
			if o.Replicas != 1 || o.Port != 9110 || o.BasePort != 0 || o.ReadyTimeout != 5*time.Minute ||
				o.StopTimeout != 30*time.Second || o.Policy != "least_conn" || o.Name != "default" || o.MaxBody != 50<<20 ||
				o.MaxInflight != 0 || o.AdaptiveInflight != balancer.DefaultAdaptiveInflight || o.Queue != 1024 || o.QueueTimeout != nil || o.Retries != 2 || o.ConnectTimeout != time.Second {
				t.Errorf("defaults: %+v", o.Options)
			}
		}},
		{"all flags", []string{"-r", "4", "-p", "8000", "--base-port", "8100", "--health", "/health", "--ready-timeout", "10s",
			"--stop-timeout", "5s", "--max-body", "10m", "--policy", "weighted", "--weights", "2,1,1,1", "--name", "gpu", "-e", "A=1", "-e", "B=2",
			"--max-inflight", "32", "--queue", "0", "--queue-timeout", "5s", "--retries", "0",
			"--", "gunicorn", "-b", "127.0.0.1:{port}", "app:app"}, func(t *testing.T, o *upOptions) {
			if o.Replicas != 4 || o.Port != 8000 || o.BasePort != 8100 || o.Health != "/health" || o.ReadyTimeout != 10*time.Second ||
				o.StopTimeout != 5*time.Second || o.MaxBody != 10<<20 || o.Policy != "weighted" || o.Name != "gpu" ||
				!reflect.DeepEqual(o.Weights, []int{2, 1, 1, 1}) || o.MaxInflight != 32 || o.Queue != 0 || o.QueueTimeout == nil || *o.QueueTimeout != 5*time.Second || o.Retries != 0 ||
				!reflect.DeepEqual(o.Env, []string{"A=1", "B=2"}) {
				t.Errorf("parsed: %+v", o.Options)
			}
			if !reflect.DeepEqual(o.Command, []string{"gunicorn", "-b", "127.0.0.1:{port}", "app:app"}) {
				t.Errorf("command = %q", o.Command)
			}
		}},
		{"command flags without dash stay the command's", []string{"-r", "2", "python3", "app.py", "-v", "--port", "1"}, func(t *testing.T, o *upOptions) {
			if o.Replicas != 2 || o.Port != 9110 || !reflect.DeepEqual(o.Command, []string{"python3", "app.py", "-v", "--port", "1"}) {
				t.Errorf("parsed %d %d %q", o.Replicas, o.Port, o.Command)
			}
		}},
		{"no command", []string{"-r", "2"}, func(t *testing.T, o *upOptions) {
			if len(o.Command) != 0 {
				t.Errorf("command = %q", o.Command)
			}
		}},
		{"max-conns", []string{"--max-conns", "5000", "--", "x"}, func(t *testing.T, o *upOptions) {
			if o.MaxConns != 5000 {
				t.Errorf("MaxConns = %d, want 5000", o.MaxConns)
			}
		}},
		{"max-conns default", []string{"--", "x"}, func(t *testing.T, o *upOptions) {
			if o.MaxConns != 0 {
				t.Errorf("MaxConns = %d, want 0 (from the open-file limit)", o.MaxConns)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got *upOptions
			root := newRootCmd(testFactory(), runFuncs{up: func(o *upOptions) error { got = o; return nil }})
			root.SetArgs(append([]string{"up"}, tt.args...))
			if err := root.Execute(); err != nil {
				t.Fatal(err)
			}
			tt.check(t, got)
		})
	}
}

func TestScaleArgs(t *testing.T) {
	tests := []struct {
		args []string
		want int
		err  string
	}{
		{[]string{"6"}, 6, ""},
		{[]string{"1"}, 1, ""},
		// As --replicas, and in the words of the instance and its
		// dashboard.
		{[]string{"0"}, 0, "replica count must be at least 1, not 0 (to stop every replica, run mattingctl down)"},
		{[]string{"--", "-1"}, 0, "must be at least 1, not -1"},
		// Without --, pflag would take -1 for a shorthand flag.
		{[]string{"-1"}, 0, "replica count must be at least 1, not -1"},
		{[]string{"-10"}, 0, "replica count must be at least 1, not -10"},
		{[]string{"-1.5"}, 0, `replica count "-1.5" is not a whole number`},
		{[]string{"-x"}, 0, "unknown shorthand flag: 'x' in -x"},
		{[]string{"--timeout", "soon", "2"}, 0, `for "--timeout" flag: want a duration such as 30s, 5m or 1h, got "soon"`},
		{[]string{"x"}, 0, "not a whole number"},
		// No count: print the current one (Replicas 0).
		{[]string{}, 0, ""},
		{[]string{"1", "2"}, 0, "scale takes one replica count, not 2 arguments (1 2)"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var got *scaleOptions
			cmd := newRootCmd(testFactory(), runFuncs{scale: func(o *scaleOptions) error { got = o; return nil }})
			cmd.SetArgs(append([]string{"scale"}, tt.args...))
			err := cmd.Execute()
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || got.Replicas != tt.want || got.Timeout != 6*time.Minute {
				t.Fatalf("got %+v, %v", got, err)
			}
		})
	}
}

func TestUpConfigFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mattingctl.yaml")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	run := func(args ...string) (*upOptions, error) {
		var got *upOptions
		root := newRootCmd(testFactory(), runFuncs{up: func(o *upOptions) error { got = o; return nil }})
		root.SetArgs(append([]string{"up", "-f", path}, args...))
		return got, root.Execute()
	}
	write("replicas: 4\nport: 8000\nmax-body: 10m\nweights: [2, 1]\npolicy: weighted\nenv: [A=1]\nname: gpu\ncommand: [python3, app.py]\n")
	o, err := run("-r", "2")
	if err != nil {
		t.Fatal(err)
	}
	if o.Replicas != 2 || o.Port != 8000 || o.MaxBody != 10<<20 || !reflect.DeepEqual(o.Weights, []int{2, 1}) ||
		o.Policy != "weighted" || !reflect.DeepEqual(o.Env, []string{"A=1"}) || o.Name != "gpu" ||
		!reflect.DeepEqual(o.Command, []string{"python3", "app.py"}) {
		t.Errorf("file + flags: %+v", o.Options)
	}
	if o, err = run("--", "./serve"); err != nil || !reflect.DeepEqual(o.Command, []string{"./serve"}) {
		t.Errorf("a command after -- overrides the file's: %v, %v", o, err)
	}
	for _, tt := range []struct{ file, want string }{
		{"replicas: 4\nreplicaz: 2\n", `line 2: unknown setting "replicaz"`},
		{"replicas: four\n", `line 1: replicas: want a whole number or MIN:MAX such as 1:6, got "four"`},
		{"ready-timeout: 5 minutes\n", "line 1: ready-timeout:"},
		{"max-body: lots\n", `line 1: max-body: want a size such as 50MiB, 512k or 1048576, got "lots"`},
	} {
		write(tt.file)
		if _, err := run(); err == nil || !strings.Contains(err.Error(), path+": "+tt.want) {
			t.Errorf("file %q: error %v, want %q", tt.file, err, tt.want)
		}
	}
}

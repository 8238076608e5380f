package main

import (
	"bytes"
	"github.com/mattingctl/mattingctl/balancer"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/control"
)

// parseUpArgs parses `up ARGS -- x` and returns the options or the error.
func parseUpArgs(args ...string) (*upOptions, error) {
	var got *upOptions
	root := newRootCmd(testFactory(), runFuncs{up: func(o *upOptions) error { got = o; return nil }})
	root.SetArgs(append(append([]string{"up"}, args...), "--", "x"))
	err := root.Execute()
	return got, err
}

// TestUpNumberFlags goes through every number and duration flag of up:
// a negative value is refused naming the flag, zero is refused or kept as
// the value its help gives a meaning to, never replaced by the default.
func TestUpNumberFlags(t *testing.T) {
	tests := []struct {
		flag, value string
		want        string // error text; empty: accepted
		check       func(o *upOptions) bool
	}{
		{"--replicas", "0", `invalid argument "0" for "-r, --replicas" flag: must be at least 1, not 0`, nil},
		{"--replicas", "-1", `for "-r, --replicas" flag: must be at least 1, not -1`, nil},
		{"--port", "0", `for "-p, --port" flag: must be at least 1, not 0`, nil},
		{"--port", "-1", `for "-p, --port" flag: must be at least 1`, nil},
		{"--base-port", "-1", `for "--base-port" flag: must not be negative, not -1`, nil},
		{"--base-port", "0", "", func(o *upOptions) bool { return o.BasePort == 0 }},
		{"--base-port", "auto", "", func(o *upOptions) bool { return o.BasePort == 0 }},
		{"--base-port", "next", `for "--base-port" flag: want a whole number or auto, got "next"`, nil},
		{"--max-conns", "-1", "", func(o *upOptions) bool { return o.MaxConns == -1 }}, // refused by the supervisor
		{"--max-conns", "0", "", func(o *upOptions) bool { return o.MaxConns == 0 }},
		{"--max-conns", "auto", "", func(o *upOptions) bool { return o.MaxConns == 0 }},
		{"--max-conns", "5000", "", func(o *upOptions) bool { return o.MaxConns == 5000 }},
		{"--ready-timeout", "-5s", `for "--ready-timeout" flag: must not be negative, not -5s`, nil},
		{"--ready-timeout", "0", `for "--ready-timeout" flag: must be more than 0`, nil},
		{"--stop-timeout", "-5s", `invalid argument "-5s" for "--stop-timeout" flag: must not be negative, not -5s`, nil},
		{"--stop-timeout", "0", `for "--stop-timeout" flag: must be more than 0`, nil},
		{"--stop-timeout", "1ms", "", func(o *upOptions) bool { return o.StopTimeout == time.Millisecond }},
		{"--client-timeout", "-1s", `for "--client-timeout" flag: must not be negative`, nil},
		{"--client-timeout", "0s", `for "--client-timeout" flag: must be more than 0`, nil},
		{"--upstream-timeout", "-1s", `for "--upstream-timeout" flag: must not be negative`, nil},
		{"--upstream-timeout", "0", `for "--upstream-timeout" flag: must be more than 0`, nil},
		{"--send-timeout", "-1s", `for "--send-timeout" flag: must not be negative`, nil},
		{"--send-timeout", "0", `for "--send-timeout" flag: must be more than 0`, nil},
		{"--send-timeout", "5s", "", func(o *upOptions) bool { return o.SendTimeout == 5*time.Second }},
		{"--connect-timeout", "-1s", `for "--connect-timeout" flag: must not be negative`, nil},
		{"--connect-timeout", "0", `for "--connect-timeout" flag: must be more than 0`, nil},
		{"--queue-timeout", "-1s", `for "--queue-timeout" flag: must not be negative`, nil},
		{"--queue-timeout", "0", "", func(o *upOptions) bool { return o.QueueTimeout != nil && *o.QueueTimeout == 0 }},
		{"--queue-timeout", "auto", "", func(o *upOptions) bool { return o.QueueTimeout == nil }},
		{"--queue-timeout", "soon", `for "--queue-timeout" flag: want a duration such as 30s, 5m or 1h or auto, got "soon"`, nil},
		{"--queue-timeout", "30", `for "--queue-timeout" flag: want a duration such as 30s, 5m or 1h or auto, got "30" (a unit is needed: 30s)`, nil},
		{"--drain-delay", "-1s", `for "--drain-delay" flag: must not be negative`, nil},
		{"--drain-delay", "0", "", func(o *upOptions) bool { return o.DrainDelay == 0 }},
		{"--max-body", "0", `for "--max-body" flag: must be more than 0`, nil},
		{"--max-body", "-1", `for "--max-body" flag: must not be negative, not -1`, nil},
		{"--max-body", "1", "", func(o *upOptions) bool { return o.MaxBody == 1 }},
		{"--max-memory", "-1GiB", `for "--max-memory" flag: must not be negative, not -1GiB`, nil},
		{"--max-memory", "0", "", func(o *upOptions) bool { return o.MaxMemory == 0 }},
		{"--max-inflight", "-1", `for "--max-inflight" flag: must not be negative, not -1`, nil},
		{"--max-inflight", "0", "", func(o *upOptions) bool { return o.MaxInflight == 0 && !o.Adaptive() }},
		{"--max-inflight", "auto", "", func(o *upOptions) bool { return o.AdaptiveInflight == balancer.DefaultAdaptiveInflight }},
		{"--max-inflight", "auto:2-32", "", func(o *upOptions) bool { return o.AdaptiveInflight == balancer.InflightBounds{Min: 2, Max: 32} }},
		{"--max-inflight", "auto:4-4", "", func(o *upOptions) bool { return o.AdaptiveInflight == balancer.InflightBounds{Min: 4, Max: 4} }},
		{"--max-inflight", "auto:0-32", `for "--max-inflight" flag: auto:0-32: want 1 <= MIN <= MAX <= 1024, such as auto:1-32`, nil},
		{"--max-inflight", "auto:8-4", `auto:8-4: want 1 <= MIN <= MAX <= 1024`, nil},
		{"--max-inflight", "auto:1-5000", `auto:1-5000: want 1 <= MIN <= MAX <= 1024`, nil},
		{"--max-inflight", "auto:32", `want auto or auto:MIN-MAX such as auto:1-32, got "auto:32"`, nil},
		{"--max-inflight", "autox", `want auto or auto:MIN-MAX such as auto:1-32, got "autox"`, nil},
		{"--max-inflight", "lots", `want a whole number, auto or auto:MIN-MAX, got "lots"`, nil},
		{"--queue", "-1", `for "--queue" flag: must not be negative`, nil},
		{"--queue", "0", "", func(o *upOptions) bool { return o.Queue == 0 }},
		{"--retries", "-1", `for "--retries" flag: must not be negative`, nil},
		{"--retries", "0", "", func(o *upOptions) bool { return o.Retries == 0 }},
		{"--start-concurrency", "-1", `for "--start-concurrency" flag: must not be negative`, nil},
		{"--start-concurrency", "0", "", func(o *upOptions) bool { return o.StartConcurrency == 0 }},
		{"--max-requests", "-1", `for "--max-requests" flag: must not be negative`, nil},
		{"--max-requests", "0", "", func(o *upOptions) bool { return o.MaxRequests == 0 }},
		{"--max-requests-jitter", "-1", `for "--max-requests-jitter" flag: must not be negative`, nil},
		{"--min-ready", "0", `for "--min-ready" flag: must be at least 1, not 0`, nil},
		{"--min-ready", "-1", `for "--min-ready" flag: must be at least 1`, nil},
		{"--weights", "2,0", `for "--weights" flag: weight 0 must be at least 1`, nil},
		{"--weights", "2,-1", `for "--weights" flag: weight -1 must be at least 1`, nil},
		{"--weights", "2,x", `for "--weights" flag: want a whole number, got "x"`, nil},
		{"--weights", "2, 1", "", func(o *upOptions) bool { return reflect.DeepEqual(o.Weights, []int{2, 1}) }},
	}
	for _, tt := range tests {
		t.Run(tt.flag+" "+tt.value, func(t *testing.T) {
			o, err := parseUpArgs(tt.flag, tt.value)
			if tt.want != "" {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("error = %v, want %q", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(o) {
				t.Errorf("parsed: %+v", o.Options)
			}
		})
	}
	// The last --max-inflight decides, whichever kind it is.
	if o, err := parseUpArgs("--max-inflight", "auto", "--max-inflight", "4"); err != nil || o.Adaptive() || o.MaxInflight != 4 {
		t.Errorf("--max-inflight auto then 4: %+v, %v", o.Limits, err)
	}
	if o, err := parseUpArgs("--max-inflight", "4", "--max-inflight", "auto:1-8"); err != nil || o.MostInflight() != 8 || o.MaxInflight != 0 {
		t.Errorf("--max-inflight 4 then auto:1-8: %+v, %v", o.Limits, err)
	}
	// Given twice, --weights adds to the list, as before.
	if o, err := parseUpArgs("--weights", "2,1", "--weights", "3"); err != nil || !reflect.DeepEqual(o.Weights, []int{2, 1, 3}) {
		t.Errorf("--weights twice: %v, %v", o, err)
	}
}

// TestUpConfigFileNumbers: a bad number in the config file is refused
// naming the file, the line and the setting.
func TestUpConfigFileNumbers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mattingctl.yaml")
	for _, tt := range []struct{ file, want string }{
		{"replicas: 2\nstop-timeout: -5s\n", "line 2: stop-timeout: must not be negative, not -5s"},
		{"stop-timeout: 0\n", "line 1: stop-timeout: must be more than 0"},
		{"replicas: 2\n\nqueue: -3\n", "line 3: queue: must not be negative, not -3"},
		{"max-body: 0\n", "line 1: max-body: must be more than 0"},
		{"max-body: -1m\n", "line 1: max-body: must not be negative, not -1m"},
		{"min-ready: 0\n", "line 1: min-ready: must be at least 1, not 0"},
		{"weights: [2, 0]\n", "line 1: weights: weight 0 must be at least 1"},
		{"replicas: 0\n", "line 1: replicas: must be at least 1, not 0"},
	} {
		if err := os.WriteFile(path, []byte(tt.file), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := parseUpArgs("-f", path)
		if err == nil || err.Error() != path+": "+tt.want {
			t.Errorf("file %q: error %v, want %q", tt.file, err, path+": "+tt.want)
		}
	}
	// Zero where it means something is kept from the file too.
	if err := os.WriteFile(path, []byte("queue-timeout: 0\nweights: [2, 1]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if o, err := parseUpArgs("-f", path); err != nil || o.QueueTimeout == nil || *o.QueueTimeout != 0 || !reflect.DeepEqual(o.Weights, []int{2, 1}) {
		t.Errorf("queue-timeout 0 and weights from the file: %+v, %v", o, err)
	}
}

// TestUpMinReadyAboveReplicas: the combination is refused before anything
// starts, where /readyz would otherwise answer 503 for ever.
func TestUpMinReadyAboveReplicas(t *testing.T) {
	o, err := parseUpArgs("--min-ready", "5", "-r", "1")
	if err != nil {
		t.Fatal(err)
	}
	o.StateDir = t.TempDir()
	o.Command = []string{os.Args[0]}
	if err := upRun(o); err == nil || err.Error() != "--min-ready 5 is more than --replicas 1: /readyz would never answer 200" {
		t.Errorf("up --min-ready 5 -r 1: %v", err)
	}
}

// TestScaleWarnings: the scale's warnings go to stderr; the command
// succeeds.
func TestScaleWarnings(t *testing.T) {
	var out, errOut bytes.Buffer
	fake := &fakeClient{scale: control.ScaleResult{Name: "default", From: 2, To: 1,
		Warnings: []string{"scaling to 1, fewer than --min-ready 2: /readyz answers 503 while fewer than 2 replicas are ready"}}}
	err := scaleRun(&scaleOptions{Out: &out, ErrOut: &errOut, Replicas: 1, Timeout: time.Minute,
		Client: func() (instanceClient, error) { return fake, nil }})
	if err != nil || out.String() != "instance default: 2 -> 1 replicas\n" ||
		errOut.String() != "mattingctl: warning: scaling to 1, fewer than --min-ready 2: /readyz answers 503 while fewer than 2 replicas are ready\n" {
		t.Errorf("scale: %v, stdout %q, stderr %q", err, out.String(), errOut.String())
	}
}

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// upFile parses `up -f FILE ARGS`, FILE holding yaml, and returns the
// options or the error.
func upFile(t *testing.T, yaml string, args ...string) (*upOptions, error) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "up.yaml")
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return upFileAt(file, args...)
}

const servicesFile = `port: 9200
max-inflight: 4
services:
  - name: matting
    route: /matting/
    strip_prefix: true
    replicas: 3
    health: /health
    command: [matting-server, -workers, "2"]
  - name: ocr
    route: host:ocr.example
    max-inflight: 1
    command: python3 ocr.py
`

// TestUpServices: a file's services each start from the top's settings and
// the command line's, with their own on top; the instance's settings stay
// the instance's.
func TestUpServices(t *testing.T) {
	o, err := upFile(t, servicesFile, "--queue", "7", "--base-port", "9300")
	if err != nil {
		t.Fatal(err)
	}
	if len(o.Services) != 2 || len(o.Command) != 0 || o.Port != 9200 {
		t.Fatalf("services %d, command %q, port %d", len(o.Services), o.Command, o.Port)
	}
	// The instance's base port is where the services' blocks begin, not
	// each service's own.
	m, ocr := o.Services[0], o.Services[1]
	if o.BasePort != 9300 || m.Options.BasePort != 0 || ocr.Options.BasePort != 0 {
		t.Errorf("base ports: instance %d, matting %d, ocr %d; want 9300, 0, 0", o.BasePort, m.Options.BasePort, ocr.Options.BasePort)
	}
	if m.Name != "matting" || m.Route != "/matting/" || !m.StripPrefix || m.Options.Replicas != 3 || m.Options.Health != "/health" ||
		strings.Join(m.Options.Command, " ") != "matting-server -workers 2" || m.Options.MaxInflight != 4 || m.Options.Queue != 7 {
		t.Errorf("matting: %+v", m)
	}
	if ocr.Name != "ocr" || ocr.Route != "host:ocr.example" || ocr.StripPrefix || ocr.Options.Replicas != 1 || ocr.Options.Health != "" ||
		strings.Join(ocr.Options.Command, " ") != "python3 ocr.py" || ocr.Options.MaxInflight != 1 || ocr.Options.Queue != 7 {
		t.Errorf("ocr: %+v", ocr)
	}
}

func TestUpServicesRefused(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		args []string
		want string
	}{
		{servicesFile, []string{"--", "x"}, "it lists services, each with its command, so up takes no command (x)"},
		{"services:\n  - name: a\n    route: /a/\n    port: 9000\n    command: x\n", nil, "line 4: port is the instance's, not a service's"},
		{"services:\n  - name: a\n    route: /a/\n    replicass: 2\n    command: x\n", nil, `line 4: unknown setting "replicass"`},
		{"services:\n  - name: a\n    route: /a/\n    replicas: two\n    command: x\n", nil, "line 4: replicas:"},
		{"services:\n  - name: a\n    command: x\n", nil, "line 2: service a needs a route"},
		{"services:\n  - route: /a/\n    command: x\n", nil, "line 2: a service needs a name"},
		{"services:\n  - name: a\n    route: /a/\n", nil, "line 2: service a needs a command"},
		{"services:\n  - name: a\n    route: /a/\n    strip_prefix: yes\n    command: x\n", nil, `line 4: strip_prefix: want true or false, not "yes"`},
		{"services: [a, b]\n", nil, "line 1: services: each service is a mapping"},
		{"services: {}\n", nil, "line 1: services: want a list of services"},
	} {
		_, err := upFile(t, tc.yaml, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v; want %q", tc.yaml, err, tc.want)
		}
	}
}

// TestSetService: set --service applies its settings over that service's
// entry only, and refuses the instance's settings and a service the file
// does not list.
func TestSetService(t *testing.T) {
	argv := []string{"up", "-f", "up.yaml"}
	o, err := parseUpAgain(argv, []byte(servicesFile), []string{"max-inflight=3", "command=python3 ocr2.py"}, "ocr")
	if err != nil {
		t.Fatal(err)
	}
	if m, ocr := o.Services[0].Options, o.Services[1].Options; m.MaxInflight != 4 || ocr.MaxInflight != 3 ||
		strings.Join(ocr.Command, " ") != "python3 ocr2.py" || strings.Join(m.Command, " ") != "matting-server -workers 2" {
		t.Errorf("after set --service ocr: matting %d %q, ocr %d %q", m.MaxInflight, m.Command, ocr.MaxInflight, ocr.Command)
	}
	for _, tc := range []struct {
		service string
		sets    []string
		want    string
	}{
		{"ocr", []string{"port=9000"}, "port is the instance's, not a service's"},
		{"ocr", []string{"max-inflite=3"}, `unknown setting "max-inflite"`},
		{"seg", []string{"max-inflight=3"}, "up.yaml lists no service seg"},
	} {
		if _, err := parseUpAgain(argv, []byte(servicesFile), tc.sets, tc.service); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("set --service %s %v: %v; want %q", tc.service, tc.sets, err, tc.want)
		}
	}
}

// TestUpServicesShareGPUs: the top's gpus are shared out between the
// services that do not give their own, by replica counts.
func TestUpServicesShareGPUs(t *testing.T) {
	file := "gpus: 0,1,2,3\nservices:\n  - name: a\n    route: /a/\n    replicas: 3\n    command: x\n  - name: b\n    route: /b/\n    command: y\n  - name: c\n    route: /c/\n    gpus: \"7\"\n    command: z\n"
	o, err := upFile(t, file)
	if err != nil {
		t.Fatal(err)
	}
	got := []string{strings.Join(o.Services[0].Options.GPUs, ","), strings.Join(o.Services[1].Options.GPUs, ","), strings.Join(o.Services[2].Options.GPUs, ",")}
	if got[0] != "0,1,2" || got[1] != "3" || got[2] != "7" {
		t.Errorf("GPUs of a (3 replicas), b (1) and c (its own): %q; want 0,1,2, 3 and 7", got)
	}
}

// TestServicesExample: examples/services/mattingctl.yaml is a valid file of
// two services with what its comments say.
func TestServicesExample(t *testing.T) {
	o, err := upFileAt("../../examples/services/mattingctl.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(o.Services) != 2 {
		t.Fatalf("%d services", len(o.Services))
	}
	m, f := o.Services[0], o.Services[1]
	if m.Route != "/matting/" || !m.StripPrefix || m.Options.Replicas != 3 || m.Options.Health != "/health" ||
		f.Route != "/flask/" || f.Options.MaxInflight != 1 || f.Options.Replicas != 1 || f.Options.Health != "/health" {
		t.Errorf("services: %+v", o.Services)
	}
}

// upFileAt parses `up -f path ARGS`.
func upFileAt(path string, args ...string) (*upOptions, error) {
	var got *upOptions
	root := newRootCmd(testFactory(), runFuncs{up: func(o *upOptions) error { got = o; return nil }})
	root.SetArgs(append([]string{"up", "-f", path}, args...))
	err := root.Execute()
	return got, err
}

// TestSetServiceKeepsShares: set --service a replicas=3 moves no GPU of
// another service's: the shares are the file's.
func TestSetServiceKeepsShares(t *testing.T) {
	file := "gpus: 0,1,2,3\nservices:\n  - name: a\n    route: /a/\n    replicas: 2\n    command: x\n  - name: b\n    route: /b/\n    replicas: 2\n    command: y\n"
	o, err := parseUpAgain([]string{"up", "-f", "up.yaml"}, []byte(file), []string{"replicas=3"}, "a")
	if err != nil {
		t.Fatal(err)
	}
	if a, b := strings.Join(o.Services[0].Options.GPUs, ","), strings.Join(o.Services[1].Options.GPUs, ","); a != "0,1" || b != "2,3" || o.Services[0].Options.Replicas != 3 {
		t.Errorf("after set --service a replicas=3: a's GPUs %s (%d replicas), b's %s; want 0,1 and 2,3", a, o.Services[0].Options.Replicas, b)
	}
}

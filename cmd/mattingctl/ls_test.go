package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/control"
)

// lsFactory lists the instances of fakes, by name; a name with no fake
// has a control socket that fails with errs[name].
func lsFactory(out *bytes.Buffer, fakes map[string]*fakeClient, errs map[string]error, names ...string) *factory {
	return &factory{Out: out, ErrOut: out,
		Instances: func() (string, []string, error) { return "/run/user/1000/mattingctl", names, nil },
		Client: func(name string) (instanceClient, error) {
			if f, ok := fakes[name]; ok {
				return f, nil
			}
			return nil, errs[name]
		},
	}
}

// TestLs: a row per instance; a stale socket shows as stale, and another
// user's as permission denied, never stale, each with a line saying why.
func TestLs(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	ready := control.ReplicaStatus{State: control.Ready}
	fakes := map[string]*fakeClient{
		"default": {status: control.Status{Name: "default", Pid: 4242, Port: 9110, URL: "http://vm:9110/", Desired: 2,
			StartedAt: now.Add(-5*time.Minute - 3*time.Second), Replicas: []control.ReplicaStatus{ready, ready}}},
		"gpu": {status: control.Status{Name: "gpu", Pid: 77, Host: "127.0.0.1", Port: 9210, Desired: 4,
			StartedAt: now.Add(-2 * time.Hour), Replicas: []control.ReplicaStatus{ready, ready, ready, {State: control.Starting}}}},
		"slow": {err: errors.New(`instance "slow" did not answer in time`)},
	}
	errs := map[string]error{
		"old":    fmt.Errorf(`no mattingctl instance "old" is running (stale control socket at /s/old.sock): %w`, control.ErrNotRunning),
		"shared": &control.UntrustedPeerError{Path: "/s/shared.sock", UID: 1001},
	}
	var out bytes.Buffer
	root := newRootCmd(lsFactory(&out, fakes, errs, "default", "gpu", "old", "shared", "slow"), runFuncs{ls: func(o *lsOptions) error {
		o.Now = func() time.Time { return now }
		return lsRun(o)
	}})
	root.SetArgs([]string{"ls"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	want := `NAME     PID   PROXY           READY  UPTIME
default  4242  *:9110          2/2    5m3s
gpu      77    127.0.0.1:9210  3/4    2h0m
old      -     -               -      stale
shared   -     -               -      permission denied
slow     -     -               -      unreachable
old: stale: its control socket is left, but its mattingctl is not running (killed?); ` + "`mattingctl up --name old`" + ` replaces it
shared: refusing control socket /s/shared.sock: it is served by uid 1001`
	if got := out.String(); !strings.HasPrefix(got, want) || !strings.HasSuffix(got, "slow: instance \"slow\" did not answer in time\n") {
		t.Errorf("ls printed:\n%s\nwant it to start with:\n%s", got, want)
	}

	out.Reset()
	root = newRootCmd(lsFactory(&out, fakes, errs, "default", "shared", "old"), runFuncs{})
	root.SetArgs([]string{"ls", "--json"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	var got []lsEntry
	if err := json.Unmarshal(out.Bytes(), &got); err != nil || len(got) != 3 {
		t.Fatalf("ls --json: %v\n%s", err, out.String())
	}
	if e := got[0]; e.Name != "default" || e.State != "running" || e.Pid != 4242 || e.Proxy != "*:9110" || e.URL != "http://vm:9110/" ||
		e.Ready != 2 || e.Replicas != 2 || e.StartedAt == nil || e.Error != "" {
		t.Errorf("ls --json, a running instance: %+v", e)
	}
	if got[1].State != "permission denied" || !strings.Contains(got[1].Error, "uid 1001") || got[2].State != "stale" {
		t.Errorf("ls --json, instances not running: %+v", got[1:])
	}
}

// TestLsNone: with no instance, ls says where it looked; --json prints [].
func TestLsNone(t *testing.T) {
	var out bytes.Buffer
	root := newRootCmd(lsFactory(&out, nil, nil), runFuncs{})
	root.SetArgs([]string{"ls"})
	if err := root.Execute(); err != nil || out.String() != "no instances in /run/user/1000/mattingctl; start one with `mattingctl up`\n" {
		t.Errorf("ls with none: %v, printed %q", err, out.String())
	}
	out.Reset()
	root = newRootCmd(lsFactory(&out, nil, nil), runFuncs{})
	root.SetArgs([]string{"ls", "--json"})
	if err := root.Execute(); err != nil || out.String() != "[]\n" {
		t.Errorf("ls --json with none: %v, printed %q", err, out.String())
	}
}

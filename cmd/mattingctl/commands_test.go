package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/control"
)

// fakeClient is an instance that answers from its fields and records calls.
type fakeClient struct {
	status    control.Status
	scale     control.ScaleResult
	restart   control.RestartResult
	reload    control.ReloadResult
	sets      []string
	dashboard control.DashboardAccess
	err       error
	calls     []string
}

func (f *fakeClient) Status(context.Context) (control.Status, error) {
	f.calls = append(f.calls, "status")
	return f.status, f.err
}

func (f *fakeClient) Scale(_ context.Context, n int) (control.ScaleResult, error) {
	f.calls = append(f.calls, "scale")
	return f.scale, f.err
}

func (f *fakeClient) Restart(context.Context) (control.RestartResult, error) {
	f.calls = append(f.calls, "restart")
	return f.restart, f.err
}

func (f *fakeClient) RestartReplica(_ context.Context, id int) (control.RestartResult, error) {
	f.calls = append(f.calls, fmt.Sprintf("restart %d", id))
	return f.restart, f.err
}

func (f *fakeClient) Reload(context.Context) (control.ReloadResult, error) {
	f.calls = append(f.calls, "reload")
	return f.reload, f.err
}

func (f *fakeClient) Set(_ context.Context, settings []string) (control.ReloadResult, error) {
	f.calls = append(f.calls, "set")
	f.sets = settings
	return f.reload, f.err
}

func (f *fakeClient) Down(context.Context) error {
	f.calls = append(f.calls, "down")
	return f.err
}

func (f *fakeClient) Dashboard(context.Context) (control.DashboardAccess, error) {
	f.calls = append(f.calls, "dashboard")
	return f.dashboard, f.err
}

// testFactory writes nowhere and reaches no instance.
func testFactory() *factory {
	return &factory{
		Out:    io.Discard,
		ErrOut: io.Discard,
		Client: func(name string) (instanceClient, error) {
			return nil, errors.New("no instance in tests")
		},
	}
}

// runCmd runs the command line args with the fake as every instance and
// returns what it printed, the name it connected to and its error.
func runCmd(t *testing.T, fake *fakeClient, args ...string) (out, name string, err error) {
	t.Helper()
	var b bytes.Buffer
	f := &factory{Out: &b, ErrOut: &b, Client: func(n string) (instanceClient, error) {
		name = n
		return fake, nil
	}}
	root := newRootCmd(f, runFuncs{})
	root.SetArgs(args)
	err = root.Execute()
	return b.String(), name, err
}

func TestStatusRun(t *testing.T) {
	fake := &fakeClient{status: control.Status{Name: "gpu", Port: 9110, Desired: 1, Policy: "least_conn",
		Replicas: []control.ReplicaStatus{{ID: 1, Name: "replica-1", Port: 9111, State: control.Ready}}}}
	out, name, err := runCmd(t, fake, "status", "--name", "gpu")
	if err != nil || name != "gpu" {
		t.Fatalf("status: %v, connected to %q", err, name)
	}
	if !strings.HasPrefix(out, "instance gpu: ") || !strings.Contains(out, "1/1 replicas ready") || !strings.Contains(out, "replica-1  9111") {
		t.Errorf("status printed:\n%s", out)
	}
	out, _, err = runCmd(t, fake, "status", "--json")
	var st control.Status
	if err != nil || json.Unmarshal([]byte(out), &st) != nil || st.Name != "gpu" || st.Replicas[0].State != control.Ready {
		t.Errorf("status --json: %v\n%s", err, out)
	}
	fake.err = errors.New(`instance "gpu" did not answer in time`)
	if _, _, err := runCmd(t, fake, "status"); err == nil || err.Error() != fake.err.Error() {
		t.Errorf("status with a failing instance: %v", err)
	}
}

func TestStatusRunNoInstance(t *testing.T) {
	opts := &statusOptions{Out: io.Discard, Now: time.Now, Client: func() (instanceClient, error) {
		return nil, errors.New(`no mattingctl instance "default" is running`)
	}}
	if err := statusRun(opts); err == nil || !strings.Contains(err.Error(), "no mattingctl instance") {
		t.Errorf("statusRun without an instance: %v", err)
	}
}

func TestScaleRun(t *testing.T) {
	fake := &fakeClient{scale: control.ScaleResult{Name: "default", From: 2, To: 3,
		Started: []control.ReplicaStatus{{Name: "replica-3", Port: 9113}}}}
	out, _, err := runCmd(t, fake, "scale", "3")
	if err != nil || out != "instance default: 2 -> 3 replicas; started replica-3 (port 9113)\n" {
		t.Errorf("scale: %v, printed %q", err, out)
	}
	// A replica that did not become ready fails the command, after the line.
	fake.scale.Errors = []string{"replica-3 (port 9113) exited before becoming ready (exit code 1)"}
	out, _, err = runCmd(t, fake, "scale", "3")
	if err == nil || !strings.Contains(err.Error(), "exited before becoming ready") || !strings.Contains(out, "2 -> 3") {
		t.Errorf("scale with a failed replica: %v, printed %q", err, out)
	}
	fake.err = errors.New("the instance is stopping")
	if _, _, err := runCmd(t, fake, "scale", "1"); err == nil || err.Error() != "the instance is stopping" {
		t.Errorf("scale refused: %v", err)
	}
}

// TestScaleWithoutCount: `scale` alone prints the replica count, and the
// autoscaler's bounds when it has them, and scales nothing.
func TestScaleWithoutCount(t *testing.T) {
	fake := &fakeClient{status: control.Status{Name: "default", Desired: 3,
		Replicas: []control.ReplicaStatus{{State: control.Ready}, {State: control.Ready}, {State: control.Starting}}}}
	out, _, err := runCmd(t, fake, "scale")
	if err != nil || out != "instance default: 3 replicas, 2 ready\n" || strings.Join(fake.calls, ",") != "status" {
		t.Errorf("scale without a count: %v, printed %q, calls %v", err, out, fake.calls)
	}
	fake.status.Autoscale = &control.AutoscaleStatus{Min: 2, Max: 6, On: true, Target: 3}
	out, _, err = runCmd(t, fake, "scale")
	if err != nil || out != "instance default: 3 replicas, 2 ready\nautoscale 2:6 target 3\n" {
		t.Errorf("scale without a count, autoscaling: %v, printed %q", err, out)
	}
	fake.status.Autoscale.On = false
	out, _, _ = runCmd(t, fake, "scale")
	if !strings.Contains(out, "autoscale 2:6 off: the count was set by hand") {
		t.Errorf("scale without a count, autoscaling off: printed %q", out)
	}
	fake.err = errors.New(`no mattingctl instance "default" is running`)
	if _, _, err := runCmd(t, fake, "scale"); err == nil || err.Error() != fake.err.Error() {
		t.Errorf("scale without a count, no instance: %v", err)
	}
}

func TestDownRun(t *testing.T) {
	fake := &fakeClient{}
	out, name, err := runCmd(t, fake, "down", "--name", "a")
	if err != nil || out != "instance a stopped\n" || name != "a" || strings.Join(fake.calls, ",") != "down" {
		t.Errorf("down: %v, printed %q, name %q, calls %v", err, out, name, fake.calls)
	}
	fake.err = errors.New(`instance "a" did not answer in time`)
	if out, _, err := runCmd(t, fake, "down", "--name", "a"); err == nil || out != "" {
		t.Errorf("failed down: %v, printed %q (must not claim it stopped)", err, out)
	}
}

func TestRestartRun(t *testing.T) {
	fake := &fakeClient{restart: control.RestartResult{Name: "default",
		Replaced: []control.Replacement{{Name: "replica-1", OldPid: 10, NewPid: 11, OldPort: 9111, NewPort: 9113},
			{Name: "replica-3", NewPid: 12, OldPort: 9113, NewPort: 9113, Revived: true}},
		Skipped: []string{"replica-2 (backoff)"}}}
	out, _, err := runCmd(t, fake, "restart")
	want := "replica-1: pid 10 (port 9111) -> pid 11 (port 9113)\nreplica-3: failed -> pid 12 (port 9113)\n" +
		"replica-2 (backoff): skipped, a new process is on its way\ninstance default: 2 replicas restarted\n"
	if err != nil || out != want || strings.Join(fake.calls, ",") != "restart" {
		t.Errorf("restart: %v, printed %q, want %q (calls %v)", err, out, want, fake.calls)
	}
	fake.calls = nil
	if _, _, err := runCmd(t, fake, "restart", "--replica", "3"); err != nil || strings.Join(fake.calls, ",") != "restart 3" {
		t.Errorf("restart --replica 3: %v, calls %v", err, fake.calls)
	}
	for _, bad := range []string{"0", "-1"} {
		fake.calls = nil
		if _, _, err := runCmd(t, fake, "restart", "--replica", bad); err == nil || !strings.Contains(err.Error(), "--replica must be a replica number") || len(fake.calls) != 0 {
			t.Errorf("restart --replica %s: %v, calls %v", bad, err, fake.calls)
		}
	}
	fake.restart.Error = "replica-2: the successor on port 9114 exited before becoming ready"
	if _, _, err := runCmd(t, fake, "restart"); err == nil || !strings.HasPrefix(err.Error(), "rolling restart stopped: replica-2") {
		t.Errorf("stopped restart: %v", err)
	}
}

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		out, _, err := runCmd(t, &fakeClient{}, args...)
		if err != nil || !strings.HasPrefix(out, "mattingctl ") || !strings.Contains(out, "go1.") {
			t.Errorf("%v: %v, printed %q", args, err, out)
		}
	}
}

// TestFormatDetached: up -d prints the proxy's URL, saying when it
// listens on every interface, and the dashboard's.
func TestFormatDetached(t *testing.T) {
	st := control.Status{Name: "gpu", Pid: 42, Host: "", URL: "http://gpu-box:9110/", Admin: "127.0.0.1:9109",
		Replicas: make([]control.ReplicaStatus, 2)}
	want := `instance gpu started in the background: pid 42, 2 replicas ready
proxy: http://gpu-box:9110/ (listening on all interfaces)
dashboard: http://127.0.0.1:9109/ (with its token: mattingctl dashboard --name gpu)
logs: mattingctl logs --name gpu -f; stop: mattingctl down --name gpu
`
	if got := formatDetached(st); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
	st.Host, st.URL, st.Admin = "127.0.0.1", "http://127.0.0.1:9110/", ""
	if got := formatDetached(st); !strings.Contains(got, "\nproxy: http://127.0.0.1:9110/\n") || strings.Contains(got, "dashboard") {
		t.Errorf("on one address, no admin listener:\n%s", got)
	}
}

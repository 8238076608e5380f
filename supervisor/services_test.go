package supervisor

import (
	"fmt"
	"strings"
	"testing"

	"github.com/mattingctl/mattingctl/internal/control"
	"github.com/mattingctl/mattingctl/internal/fdbudget"
	"github.com/mattingctl/mattingctl/internal/testutil"
)

// twoServices is an instance of two services as a config file gives it:
// instance-wide settings at the top, each service's own in its entry.
func twoServices() Options {
	o := DefaultOptions()
	o.StateDir = "/s"
	matting, flask := DefaultOptions(), DefaultOptions()
	matting.Command, matting.Replicas = []string{"true"}, 3
	flask.Command, flask.MaxInflight = []string{"true"}, 2
	// Instance-wide: what a service says is not what counts.
	flask.Port, flask.Admin = 1, "none"
	o.Services = []Service{
		{Name: "matting", Route: "/matting/", StripPrefix: true, Options: matting},
		{Name: "flask", Route: "/flask/", Options: flask},
	}
	return o
}

func TestServicesShareTheInstance(t *testing.T) {
	s, err := newServices(twoServices())
	if err != nil {
		t.Fatal(err)
	}
	if len(s.all()) != 2 || len(s.others()) != 1 || s.service != "matting" {
		t.Fatalf("services: %d, others %d, first %q", len(s.all()), len(s.others()), s.service)
	}
	m, f := s.all()[0].cfg(), s.all()[1].cfg()
	// Consecutive blocks of ports: matting's 16 from the proxy's plus one,
	// flask's after, to the last port.
	if m.BasePort != 9111 || s.all()[0].lastPort != 9126 || f.BasePort != 9127 || s.all()[1].lastPort != maxPort {
		t.Errorf("ports: matting %d-%d, flask %d-%d", m.BasePort, s.all()[0].lastPort, f.BasePort, s.all()[1].lastPort)
	}
	if f.Port != 9110 || f.Admin != m.Admin || f.MaxInflight != 2 || m.MaxInflight == 2 || m.Replicas != 3 || f.Replicas != 1 {
		t.Errorf("flask: port %d, admin %q (matting's %q), max-inflight %d (matting's %d), replicas %d and %d",
			f.Port, f.Admin, m.Admin, f.MaxInflight, m.MaxInflight, m.Replicas, f.Replicas)
	}
	// Each plans its descriptors within half the open-file limit.
	if m.shareOf != 2 || f.shareOf != 2 || m.fileLimit() > fdbudget.OpenFileLimit()/2 {
		t.Errorf("open-file shares: %d and %d, limit %d of %d", m.shareOf, f.shareOf, m.fileLimit(), fdbudget.OpenFileLimit())
	}
	if got := replicaName("flask", 1); got != "flask-1" {
		t.Errorf("replica name %q", got)
	}
	st := instance{s}.Status()
	if len(st.Services) != 2 || st.Services[0].Route != "/matting/" || !st.Services[0].StripPrefix || st.Services[1].Route != "/flask/" || len(st.Replicas) != 0 {
		t.Errorf("status before the start: %+v", st)
	}
	if _, err := (instance{s}).Service("ocr"); err == nil || !strings.Contains(err.Error(), "the services are matting, flask") {
		t.Errorf("Service(ocr) = %v; want the services listed", err)
	}
	if _, err := (instance{s}).Scale(t.Context(), 2); err == nil || !strings.Contains(err.Error(), "name one with --service") {
		t.Errorf("Scale without a service = %v", err)
	}
}

func TestServicesRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Options)
		want string
	}{
		{"a command too", func(o *Options) { o.Command = []string{"z"} }, "with services, each has its own command"},
		{"same name", func(o *Options) { o.Services[1].Name = "matting" }, "two services are called matting"},
		{"bad name", func(o *Options) { o.Services[1].Name = "a b" }, "service 2: name"},
		{"same route", func(o *Options) { o.Services[1].Route = "/matting/" }, "same route /matting/"},
		{"not a route", func(o *Options) { o.Services[1].Route = "flask" }, `route "flask": want a path prefix`},
		{"overlapping ports", func(o *Options) { o.Services[1].Options.BasePort = 9120 }, "service flask: its ports 9120-"},
		{"a service's own error", func(o *Options) { o.Services[0].Options.Replicas = 0 }, "service matting: --replicas must be at least 1"},
	} {
		o := twoServices()
		tc.edit(&o)
		if _, err := newServices(o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want %q", tc.name, err, tc.want)
		}
	}
}

// TestServiceSource: a service's settings are read again from its entry of
// the file, with the instance's settings and the ports it started with; a
// file that drops or re-routes it is refused.
func TestServiceSource(t *testing.T) {
	file := twoServices()
	inst := &Source{File: "up.yaml", LoadService: func(name string, _ []byte, _ []string) (Options, map[string]string, error) {
		return file, nil, nil
	}}
	src := serviceSource(inst, file.Services[1], 9127)
	o, _, err := src.Load(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if o.BasePort != 9127 || o.MaxInflight != 2 || o.Port != 9110 || o.Admin != "" || o.Services != nil {
		t.Errorf("flask read again: base port %d, max-inflight %d, port %d, admin %q, services %v", o.BasePort, o.MaxInflight, o.Port, o.Admin, o.Services)
	}
	file.Services[1].Route = "/f/"
	if _, _, err := src.Load(nil, nil); err == nil || !strings.Contains(err.Error(), "service flask: its route or strip_prefix changed") {
		t.Errorf("re-routed: %v", err)
	}
	file.Services = file.Services[:1]
	if _, _, err := src.Load(nil, nil); err == nil || !strings.Contains(err.Error(), "up.yaml no longer lists service flask") {
		t.Errorf("dropped: %v", err)
	}
	if serviceSource(&Source{}, file.Services[0], 9111) != nil {
		t.Error("a service of an instance that cannot read its settings again can")
	}
}

// TestServicePortsAfterRollingRestart: a scale-up whose new replicas' home
// ports are held as spares by the service's own replicas (after a rolling
// restart) is refused up front when the service's block has no spare port
// left for them, naming the block, rather than started on a taken port.
func TestServicePortsAfterRollingRestart(t *testing.T) {
	o := twoServices()
	o.Port = testutil.FreePorts(t, 1+16+16)
	s, err := newServices(o)
	if err != nil {
		t.Fatal(err)
	}
	m := s.all()[0]
	base := m.cfg().BasePort
	m.mu.Lock()
	defer m.mu.Unlock()
	m.desired = 3
	spare := &slot{id: 2}
	m.ports[base+3] = spare // replica-2's successor took replica-4's home port
	if err := m.checkNewPortsLocked(4, 15); err != nil {
		t.Errorf("scale to 15, with one spare port left in the block: %v", err)
	}
	err = m.checkNewPortsLocked(4, 16)
	if want := fmt.Sprintf("service matting: its ports, %d-%d, have no room for 16 replicas", base, base+15); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("scale to 16, the whole block: %v; want %q", err, want)
	}
}

// TestMergeReloadResults: a reload of several services reports every
// service's scale and rolling restart.
func TestMergeReloadResults(t *testing.T) {
	a := &control.ScaleResult{From: 1, To: 2, Started: []control.ReplicaStatus{{Name: "a-2"}}}
	b := &control.ScaleResult{From: 3, To: 1, Stopped: []control.ReplicaStatus{{Name: "b-2"}, {Name: "b-3"}}, Warnings: []string{"below min-ready"}}
	m := mergeScale(mergeScale(nil, a), b)
	if m.From != 4 || m.To != 3 || len(m.Started) != 1 || len(m.Stopped) != 2 || len(m.Warnings) != 1 || len(a.Stopped) != 0 {
		t.Errorf("merged scale %+v (a now %+v)", m, a)
	}
	r := mergeRestart(&control.RestartResult{Replaced: []control.Replacement{{Name: "a-1"}}}, &control.RestartResult{Replaced: []control.Replacement{{Name: "b-1"}}, Error: "b-2 did not become ready"})
	if len(r.Replaced) != 2 || r.Error != "b-2 did not become ready" {
		t.Errorf("merged restart %+v", r)
	}
	if mergeRestart(nil, nil) != nil {
		t.Error("no restart merged into one")
	}
}

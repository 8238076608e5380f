package control

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// fakeInstance answers the API with fixed values and records calls.
type fakeInstance struct {
	name    string
	mu      sync.Mutex
	scaled  []int
	stopped chan struct{}
	once    sync.Once
	// dashboard is what Dashboard answers; zero: no admin listener.
	dashboard DashboardAccess
}

func newFakeInstance(name string) *fakeInstance {
	return &fakeInstance{name: name, stopped: make(chan struct{})}
}

func (f *fakeInstance) Status() Status { return Status{Name: f.name, Desired: 2} }
func (f *fakeInstance) Scale(_ context.Context, n int) (ScaleResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.scaled = append(f.scaled, n)
	return ScaleResult{Name: f.name, To: n}, nil
}
func (f *fakeInstance) RollingRestart(context.Context) (RestartResult, error) {
	return RestartResult{Name: f.name}, nil
}
func (f *fakeInstance) RestartReplica(_ context.Context, id int) (RestartResult, error) {
	return RestartResult{Name: f.name}, nil
}
func (f *fakeInstance) Reload(context.Context) (ReloadResult, error) {
	return ReloadResult{Name: f.name, File: "/etc/m.yaml"}, nil
}
func (f *fakeInstance) Set(_ context.Context, settings []string) (ReloadResult, error) {
	if settings[0] == "port=1" {
		return ReloadResult{}, errors.New("port cannot change while the instance runs")
	}
	return ReloadResult{Name: f.name, Changes: []Change{{Setting: "queue", Old: "1", New: "2", Applied: AppliedLive}}}, nil
}
func (f *fakeInstance) Dashboard() (DashboardAccess, error) {
	if f.dashboard == (DashboardAccess{}) {
		return DashboardAccess{}, errors.New(`instance "` + f.name + `" has no admin listener (it was started with --admin none)`)
	}
	return f.dashboard, nil
}
func (f *fakeInstance) Stop(string)              { f.once.Do(func() { close(f.stopped) }) }
func (f *fakeInstance) Stopped() <-chan struct{} { return f.stopped }

func TestCheckStateDir(t *testing.T) {
	tests := []struct {
		name   string
		mode   fs.FileMode // of the state directory
		parent fs.FileMode // of its parent
		want   string      // in the error; empty: accepted
	}{
		{"0700", 0o700, 0o700, ""},
		{"0755", 0o755, 0o700, ""},
		{"world-writable", 0o777, 0o700, "is writable by other users (mode -rwxrwxrwx, no sticky bit)"},
		{"group-writable", 0o770, 0o700, "is writable by other users"},
		{"sticky and world-writable, as /tmp", 0o777 | fs.ModeSticky, 0o700, ""},
		{"world-writable parent", 0o700, 0o777, "its parent"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parent := filepath.Join(t.TempDir(), "p")
			dir := filepath.Join(parent, "state")
			if err := os.MkdirAll(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			chmod(t, dir, tt.mode)
			chmod(t, parent, tt.parent)
			err := CheckStateDir(dir)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("CheckStateDir: %v", err)
				}
				return
			}
			var unsafe *UnsafeDirError
			if !errors.As(err, &unsafe) || !unsafe.Writable || !strings.Contains(err.Error(), tt.want) ||
				!strings.Contains(err.Error(), "state directory "+dir) || !strings.Contains(err.Error(), "MATTINGCTL_HOME") {
				t.Fatalf("CheckStateDir: %v; want an unsafe-directory error containing %q", err, tt.want)
			}
		})
	}
	if err := CheckStateDir(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing directory: %v", err)
	}
}

// TestListenRefusesWritableStateDir is the repro: a world-writable
// state directory without the sticky bit, where another user could rename
// the socket and put one of their own in its place. `up` refuses it, and so
// does a client finding a socket there.
func TestListenRefusesWritableStateDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	c, err := Listen(dir, "default") // while it was safe
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	chmod(t, dir, 0o777)
	if _, err := Listen(dir, "other"); err == nil || !strings.Contains(err.Error(), "writable by other users") ||
		!strings.Contains(err.Error(), "chmod go-w "+dir) {
		t.Errorf("Listen in a 0777 directory: %v", err)
	}
	if _, err := Connect(dir, "default"); err == nil || !strings.Contains(err.Error(), "refusing control socket "+c.Path()) ||
		!strings.Contains(err.Error(), "writable by other users") {
		t.Errorf("Connect in a 0777 directory: %v", err)
	}
	chmod(t, dir, 0o777|fs.ModeSticky)
	if _, err := Connect(dir, "default"); err != nil {
		t.Errorf("Connect in a sticky 1777 directory of ours: %v", err)
	}
}

// TestClientDialErrors: what is behind a failed connection is reported as
// it is, not all as "stale".
func TestClientDialErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Connect(dir, "default"); err == nil || !strings.Contains(err.Error(), `no mattingctl instance "default" is running (no control socket at`) {
		t.Errorf("no socket: %v", err)
	}
	// A socket nobody listens on: a killed instance's.
	path := SocketPath(dir, "default")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	c, err := Connect(dir, "default")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	if _, err := c.Status(context.Background()); err == nil || !strings.Contains(err.Error(), "stale control socket at "+path) {
		t.Errorf("refused: %v", err)
	}
	os.Remove(path)
	if _, err := c.Status(context.Background()); err == nil || !strings.Contains(err.Error(), "no control socket at "+path) {
		t.Errorf("removed after Connect: %v", err)
	}
}

// TestAPIBodies: a body with a field missing, an unknown field, trailing
// data or of the wrong type is refused with 400 and changes nothing;
// endpoints that take no body refuse one.
func TestAPIBodies(t *testing.T) {
	inst := newFakeInstance("x")
	srv := httptest.NewServer(Handler(inst, hclog.NewNullLogger()))
	defer srv.Close()
	tests := []struct {
		path, body string
		code       int
		want       string
	}{
		{"/v1/scale", `{"replicas": 3}`, 200, ""},
		{"/v1/scale", `{}`, 400, `"replicas" is missing`},
		{"/v1/scale", `null`, 400, `"replicas" is missing`},
		{"/v1/scale", ``, 400, "the body is empty"},
		{"/v1/scale", `{"replicas": 3, "force": true}`, 400, `unknown field "force"`},
		{"/v1/scale", `{"Replicas": 3, "replicas": 3, "extra": 1}`, 400, `unknown field "extra"`},
		{"/v1/scale", `{"replicas": "3"}`, 400, "cannot unmarshal string"},
		{"/v1/scale", `{"replicas": 3}{"replicas": 0}`, 400, "data after the JSON object"},
		{"/v1/scale", `[3]`, 400, "cannot unmarshal array"},
		{"/v1/scale", `{"replicas": 3` + strings.Repeat(" ", maxRequestBody) + `}`, 400, "too large"},
		{"/v1/restart", ``, 200, ""},
		{"/v1/restart", `{}`, 200, ""},
		{"/v1/restart", `{"replica": 0}`, 400, `bad restart request: "replica" must be at least 1, not 0`},
		{"/v1/restart", `{"replicas": 2}`, 400, "bad restart request: json: unknown field"},
		{"/v1/down", `{"force": true}`, 400, "bad down request: it takes no body"},
		{"/v1/down", ``, 200, ""},
	}
	for _, tt := range tests {
		resp, err := http.Post(srv.URL+tt.path, "application/json", strings.NewReader(tt.body))
		if err != nil {
			t.Fatal(err)
		}
		var e apiError
		_ = json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != tt.code || !strings.Contains(e.Error, tt.want) {
			t.Errorf("POST %s %.40q: %d %q; want %d %q", tt.path, tt.body, resp.StatusCode, e.Error, tt.code, tt.want)
		}
	}
	if inst.scaled == nil || len(inst.scaled) != 1 || inst.scaled[0] != 3 {
		t.Errorf("scale calls = %v, want only the valid one", inst.scaled)
	}
	// GET ignores a body.
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v1/status", strings.NewReader(`{"x": 1}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Errorf("GET /v1/status with a body: %v %v", resp, err)
	}
	resp.Body.Close()
}

func chmod(t *testing.T, path string, mode fs.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

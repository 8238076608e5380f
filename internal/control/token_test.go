package control

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// TestTokenFile: the token file is its owner's alone (mode 0600, owned by
// this user, whatever the umask), replaces what a killed instance left,
// even a symbolic link, and is gone after RemoveToken with the opener
// page.
func TestTokenFile(t *testing.T) {
	dir := t.TempDir()
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	tok, err := NewToken()
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(tok) {
		t.Errorf("token %q is not 32 hex digits", tok)
	}
	if other, _ := NewToken(); other == tok {
		t.Errorf("two tokens alike: %s", tok)
	}
	// A symbolic link left at the path, pointing elsewhere: replaced, and
	// its target untouched.
	target := filepath.Join(t.TempDir(), "elsewhere")
	if err := os.WriteFile(target, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	path := TokenPath(dir, "gpu")
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
	if err := WriteToken(dir, "gpu", tok); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode() != 0o600 || int(st.Uid) != os.Geteuid() {
		t.Errorf("token file: mode %v, owner %d; want -rw------- and uid %d", fi.Mode(), st.Uid, os.Geteuid())
	}
	if b, _ := os.ReadFile(path); string(b) != tok+"\n" {
		t.Errorf("token file holds %q", b)
	}
	if b, _ := os.ReadFile(target); string(b) != "keep" {
		t.Errorf("the symbolic link's target was written: %q", b)
	}
	page, err := WriteOpener(dir, "gpu", "http://127.0.0.1:9109/?token="+tok)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(page); err != nil || fi.Mode() != 0o600 {
		t.Errorf("opener page: %v, %v; want mode 0600", fi, err)
	}
	if b, _ := os.ReadFile(page); !strings.Contains(string(b), `content="0;url=http://127.0.0.1:9109/?token=`+tok+`"`) {
		t.Errorf("opener page:\n%s", b)
	}
	if err := RemoveToken(dir, "gpu"); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, page} {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s still there after RemoveToken: %v", p, err)
		}
	}
	if err := RemoveToken(dir, "gpu"); err != nil {
		t.Errorf("RemoveToken of nothing: %v", err)
	}
	if es, _ := os.ReadDir(dir); len(es) != 0 {
		t.Errorf("left in the state directory: %v", es)
	}
}

func TestCheckReplicaCount(t *testing.T) {
	for _, n := range []int{0, -1} {
		err := CheckReplicaCount(n)
		if err == nil || !strings.HasPrefix(err.Error(), "replica count must be at least 1, not ") || !strings.Contains(err.Error(), "mattingctl down") {
			t.Errorf("CheckReplicaCount(%d) = %v", n, err)
		}
	}
	for _, n := range []int{1, 1000} {
		if err := CheckReplicaCount(n); err != nil {
			t.Errorf("CheckReplicaCount(%d) = %v", n, err)
		}
	}
}

// TestDashboardAccess: the control socket gives the dashboard's URL and
// token to its own user, and says why when there is no admin listener.
func TestDashboardAccess(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "s")
	srv, err := Listen(dir, "default")
	if err != nil {
		t.Fatal(err)
	}
	inst := newFakeInstance("fake")
	inst.dashboard = DashboardAccess{URL: "http://127.0.0.1:9109/", Token: "0123456789abcdef0123456789abcdef"}
	srv.Start(inst, hclog.NewNullLogger())
	defer srv.Close()
	c, err := Connect(dir, "default")
	if err != nil {
		t.Fatal(err)
	}
	if d, err := c.Dashboard(context.Background()); err != nil || d != inst.dashboard {
		t.Errorf("Dashboard() = %+v, %v", d, err)
	}
	inst.dashboard = DashboardAccess{}
	if _, err := c.Dashboard(context.Background()); err == nil || !strings.Contains(err.Error(), "--admin none") {
		t.Errorf("Dashboard() without an admin listener: %v", err)
	}
}

// TestControlConnectionsCapped: past MaxConns connections open at once,
// a new one is not accepted until one closes, and the instance's
// descriptors stay bounded.
func TestControlConnectionsCapped(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "s")
	srv, err := Listen(dir, "default")
	if err != nil {
		t.Fatal(err)
	}
	srv.Start(newFakeInstance("fake"), hclog.NewNullLogger())
	defer srv.Close()
	var held []*os.File
	defer func() {
		for _, f := range held {
			f.Close()
		}
	}()
	dial := func() *os.File {
		fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := syscall.Connect(fd, &syscall.SockaddrUnix{Name: SocketPath(dir, "default")}); err != nil {
			t.Fatal(err)
		}
		return os.NewFile(uintptr(fd), "conn")
	}
	for range MaxConns {
		held = append(held, dial())
	}
	c, err := Connect(dir, "default")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	_, err = c.Status(ctx)
	cancel()
	if err == nil {
		t.Fatalf("status answered with %d connections open, the cap", MaxConns)
	}
	held[0].Close()
	held = held[1:]
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if st, err := c.Status(ctx); err != nil || st.Name != "fake" {
		t.Errorf("status once a connection closed: %+v, %v", st, err)
	}
}

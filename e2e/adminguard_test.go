package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/testutil"
)

// TestAnotherUserCannotActThroughTheDashboard is the other-user attack:
// another local user (nobody) posts `{"replicas": 0}` to /api/scale, and a
// rolling restart, on the loopback admin port, with the action header
// and no token. Both get 401 and nothing changes; nobody can neither read
// the token file (0600, though the state directory lets them look) nor
// get the token from `mattingctl dashboard`. A clean stop removes the
// file. It needs root, to run curl and mattingctl as nobody.
func TestAnotherUserCannotActThroughTheDashboard(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root, to run commands as another user (uid 65534); CI runs as root")
	}
	curl := needTool(t, "curl", "curl")
	// A state directory nobody may look into (0755, as its parents), so
	// that only the token file's own mode stands in the way.
	base, err := os.MkdirTemp("", "mattingctl-e2e-guard-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	home := filepath.Join(base, "state")
	if err := os.Mkdir(home, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{base, home} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin := copyExecutable(t, mattingctl, base)
	in := startIn(t, home, 2, "--", fakemodel)
	st := in.waitReady(2)
	nobody := &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	asNobody := func(name string, args ...string) (string, error) {
		c := exec.Command(name, args...)
		c.Env = append(os.Environ(), "MATTINGCTL_HOME="+home)
		c.SysProcAttr = nobody
		out, err := c.CombinedOutput()
		return string(out), err
	}

	for _, tt := range []struct{ path, body string }{
		{"/api/scale", `{"replicas": 0}`},
		{"/api/restart", `{}`},
	} {
		out, err := asNobody(curl, "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10",
			"-X", "POST", "-H", "X-Mattingctl-Action: 1", "-d", tt.body, "http://"+st.Admin+tt.path)
		if err != nil || out != "401" {
			t.Errorf("nobody's POST %s %s: %q, %v; want 401", tt.path, tt.body, out, err)
		}
	}
	after := in.status()
	if after.Desired != 2 || after.Ready() != 2 {
		t.Errorf("after nobody's actions: desired %d, ready %d; want 2, 2", after.Desired, after.Ready())
	}
	for i, r := range after.Replicas {
		if r.Pid != st.Replicas[i].Pid || r.Restarts != 0 {
			t.Errorf("%s was restarted by nobody's action: pid %d -> %d", r.Name, st.Replicas[i].Pid, r.Pid)
		}
	}

	tokenFile := filepath.Join(home, "default.token")
	fi, err := os.Stat(tokenFile)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Sys().(*syscall.Stat_t).Uid != 0 {
		t.Fatalf("token file %s: %v, %v; want mode 0600, owned by root", tokenFile, fi, err)
	}
	if out, err := asNobody("cat", tokenFile); err == nil || !strings.Contains(out, "Permission denied") {
		t.Errorf("nobody's cat %s: %q, %v; want permission denied", tokenFile, out, err)
	}
	if out, err := asNobody(bin, "dashboard"); err == nil || strings.Contains(out, "token=") || !strings.Contains(out, "permission denied") {
		t.Errorf("nobody's mattingctl dashboard: %q, %v; want permission denied and no token", out, err)
	}

	in.ctl("down")
	if code := in.wait(30 * time.Second); code != 0 {
		t.Errorf("down: exit %d", code)
	}
	if _, err := os.Stat(tokenFile); !os.IsNotExist(err) {
		t.Errorf("token file after a clean stop: %v; want it removed", err)
	}
}

// TestScaleBoundsAreTheSameEverywhere: `mattingctl scale N` and the
// dashboard's POST /api/scale take the same counts and refuse the others
// in the same words: 0, a count whose ports pass 65535.
func TestScaleBoundsAreTheSameEverywhere(t *testing.T) {
	t.Parallel()
	in := start(t, 1, "--", fakemodel)
	in.waitReady(1)
	_, token := dashboardLink(t, in)
	admin := "http://" + in.status().Admin
	for _, n := range []int{0, 70000} {
		_, stderr, code := in.ctl("scale", strconv.Itoa(n))
		cli := strings.TrimPrefix(lastLine(stderr), "mattingctl: ")
		status, body := postAction(t, admin+"/api/scale", `{"replicas": `+strconv.Itoa(n)+`}`, token)
		var e struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal([]byte(body), &e)
		if code != 1 || status != 409 || cli == "" || e.Error != cli {
			t.Errorf("scale %d: the CLI exits %d saying %q; the API answers %d %q; want 1, 409 and the same words", n, code, cli, status, e.Error)
		}
	}
	if st := in.status(); st.Desired != 1 {
		t.Errorf("desired %d after refused scales, want 1", st.Desired)
	}
}

// startAtFileLimit starts `mattingctl up` as start does, at `ulimit -n
// limit` (soft and hard: the Go runtime raises the soft limit to the
// hard one).
func startAtFileLimit(t *testing.T, limit, replicas int, args ...string) *instance {
	t.Helper()
	home := t.TempDir()
	port := testutil.FreePorts(t, replicas+8)
	full := append([]string{"-c", "ulimit -n " + strconv.Itoa(limit) + ` && exec "$0" "$@"`, mattingctl,
		"up", "--port", strconv.Itoa(port), "--host", "127.0.0.1", "--admin", "127.0.0.1:0", "--replicas", strconv.Itoa(replicas)}, args...)
	return launch(t, "/bin/sh", home, port, full...)
}

// openFiles counts the file descriptors process pid holds.
func openFiles(t *testing.T, pid int) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		t.Skipf("counting descriptors: %v", err)
	}
	return len(fds)
}

// TestDashboardOpenHandsTheBrowserAPage: `mattingctl dashboard --open`
// runs xdg-open on a page in the state directory (mode 0600) that
// redirects to the URL with the token, so that the token is on no command
// line (ps shows those to every user); a clean stop removes the page.
func TestDashboardOpenHandsTheBrowserAPage(t *testing.T) {
	t.Parallel()
	in := start(t, 1, "--", fakemodel)
	admin := in.waitReady(1).Admin
	// up's ready line has the URL without the token, and says how to get
	// the one with it.
	want := `dashboard=http://` + admin + `/ with_token="mattingctl dashboard"`
	testutil.WaitFor(t, 5*time.Second, "the ready line", func() bool { return strings.Contains(in.stderr.String(), want) })
	bin := t.TempDir()
	args := filepath.Join(bin, "args")
	if err := os.WriteFile(filepath.Join(bin, "xdg-open"), []byte("#!/bin/sh\necho \"$@\" > "+args+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(mattingctl, "dashboard", "--open")
	cmd.Env = append(os.Environ(), "MATTINGCTL_HOME="+in.home, "PATH="+bin+":"+os.Getenv("PATH"))
	out, err := cmd.Output()
	checkRace(t, "mattingctl dashboard --open", string(out))
	link := strings.TrimSpace(string(out))
	if err != nil || !strings.HasPrefix(link, "http://"+in.status().Admin+"/?token=") {
		t.Fatalf("dashboard --open: %v, printed %q", err, out)
	}
	if token := strings.TrimPrefix(link, "http://"+admin+"/?token="); strings.Contains(in.stdout.String()+in.stderr.String(), token) {
		t.Errorf("up's output has the token %s in it", token)
	}
	page := filepath.Join(in.home, "default.dashboard.html")
	if b, err := os.ReadFile(args); err != nil || string(b) != page+"\n" {
		t.Fatalf("xdg-open was given %q, %v; want only the page %s", b, err, page)
	}
	fi, err := os.Stat(page)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the page %s: %v, %v; want mode 0600", page, fi, err)
	}
	if b, err := os.ReadFile(page); err != nil || !strings.Contains(string(b), `http-equiv="refresh" content="0;url=`+link+`"`) {
		t.Fatalf("the page %s does not redirect to %s: %v\n%s", page, link, err, b)
	}
	in.ctl("down")
	in.wait(30 * time.Second)
	if _, err := os.Stat(page); !os.IsNotExist(err) {
		t.Errorf("the page after a clean stop: %v; want it removed", err)
	}
}

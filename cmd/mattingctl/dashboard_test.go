package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/control"
)

const dashToken = "0123456789abcdef0123456789abcdef"

// runDashboard runs `mattingctl dashboard ARGS` with the fake instance and
// the given opener and browser, and returns stdout, stderr and the error.
func runDashboard(t *testing.T, fake *fakeClient, opener func(string, string) (string, error), browser func(string) error, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	f := &factory{Out: &out, ErrOut: &errOut, Client: func(string) (instanceClient, error) { return fake, nil }}
	root := newRootCmd(f, runFuncs{dashboard: func(o *dashboardOptions) error {
		o.Opener, o.Browser = opener, browser
		return dashboardRun(o)
	}})
	root.SetArgs(append([]string{"dashboard"}, args...))
	err := root.Execute()
	return out.String(), errOut.String(), err
}

func TestDashboardPrintsTheURLWithTheToken(t *testing.T) {
	fake := &fakeClient{dashboard: control.DashboardAccess{URL: "http://127.0.0.1:9109/", Token: dashToken}}
	opened := false
	out, errOut, err := runDashboard(t, fake, nil, func(string) error { opened = true; return nil })
	if err != nil || out != "http://127.0.0.1:9109/?token="+dashToken+"\n" || errOut != "" || opened {
		t.Errorf("dashboard: %v, printed %q, stderr %q, opened %v", err, out, errOut, opened)
	}
	// The instance's refusal (no admin listener) is the command's error.
	fake.err = errors.New(`instance "default" has no admin listener, so no dashboard (it was started with --admin none)`)
	if out, _, err := runDashboard(t, fake, nil, nil); err == nil || err.Error() != fake.err.Error() || out != "" {
		t.Errorf("dashboard without an admin listener: %v, printed %q", err, out)
	}
}

// TestDashboardOpen: --open hands the browser the opener page's path,
// never the token (a command line is visible in ps), after printing the
// URL; a missing or failing opener is said on stderr, and the URL stays
// printed.
func TestDashboardOpen(t *testing.T) {
	fake := &fakeClient{dashboard: control.DashboardAccess{URL: "http://127.0.0.1:9109/", Token: dashToken}}
	var gotName, gotLink, gotPath string
	opener := func(name, link string) (string, error) {
		gotName, gotLink = name, link
		return "/state/gpu.dashboard.html", nil
	}
	browser := func(path string) error { gotPath = path; return nil }
	out, errOut, err := runDashboard(t, fake, opener, browser, "--open", "--name", "gpu")
	link := "http://127.0.0.1:9109/?token=" + dashToken
	if err != nil || out != link+"\n" || errOut != "" || gotName != "gpu" || gotLink != link || gotPath != "/state/gpu.dashboard.html" {
		t.Errorf("dashboard --open: %v, printed %q, stderr %q; opener(%q, %q), browser(%q)", err, out, errOut, gotName, gotLink, gotPath)
	}
	out, errOut, err = runDashboard(t, fake, opener, nil, "--open")
	if err != nil || out != link+"\n" || !strings.Contains(errOut, "no browser opener (xdg-open)") {
		t.Errorf("no opener: %v, printed %q, stderr %q", err, out, errOut)
	}
	failing := func(string) error { return errors.New("xdg-open could not open a browser (exit status 3)") }
	out, errOut, err = runDashboard(t, fake, opener, failing, "--open")
	if err != nil || out != link+"\n" || errOut != "mattingctl: xdg-open could not open a browser (exit status 3); open the URL above\n" {
		t.Errorf("failing opener: %v, printed %q, stderr %q", err, out, errOut)
	}
}

// TestRunOpener: an opener's exit status is its answer; one still running
// after the wait (a browser in the foreground) is left to run.
func TestRunOpener(t *testing.T) {
	dir := t.TempDir()
	script := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
	got := filepath.Join(dir, "args")
	ok := script("ok", `echo "$@" > `+got)
	if err := runOpener(ok, "/state/x.html", 5*time.Second); err != nil {
		t.Errorf("opener exiting 0: %v", err)
	}
	if b, _ := os.ReadFile(got); string(b) != "/state/x.html\n" {
		t.Errorf("opener got %q", b)
	}
	if err := runOpener(script("fail", "exit 3"), "/x", 5*time.Second); err == nil || !strings.Contains(err.Error(), "could not open a browser (exit status 3)") {
		t.Errorf("opener exiting 3: %v", err)
	}
	t0 := time.Now()
	if err := runOpener(script("slow", "sleep 10"), "/x", 200*time.Millisecond); err != nil || time.Since(t0) > 5*time.Second {
		t.Errorf("opener still running: %v after %s", err, time.Since(t0))
	}
}

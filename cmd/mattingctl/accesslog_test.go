package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestAccessLogFlags(t *testing.T) {
	run := func(args ...string) (*upOptions, error) {
		var got *upOptions
		root := newRootCmd(testFactory(), runFuncs{up: func(o *upOptions) error { got = o; return nil }})
		root.SetArgs(append([]string{"up"}, args...))
		return got, root.Execute()
	}
	o, err := run("--", "x")
	if err != nil || o.AccessLog != "" || o.AccessLogFormat != "combined" {
		t.Fatalf("defaults: %q %q, %v; want none (empty), combined", o.AccessLog, o.AccessLogFormat, err)
	}
	o, err = run("--access-log", "-", "--access-log-format", "json", "--", "x")
	if err != nil || o.AccessLog != "-" || o.AccessLogFormat != "json" {
		t.Fatalf("flags: %q %q, %v", o.AccessLog, o.AccessLogFormat, err)
	}
	if _, err := run("--access-log", "", "--", "x"); err == nil || !strings.Contains(err.Error(), `"--access-log"`) {
		t.Errorf("an empty --access-log: %v, want it refused naming the flag", err)
	}

	path := filepath.Join(t.TempDir(), "mattingctl.yaml")
	if err := os.WriteFile(path, []byte("access-log: /var/log/mattingctl/access.log\naccess-log-format: json\ncommand: [x]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	o, err = run("-f", path)
	if err != nil || o.AccessLog != "/var/log/mattingctl/access.log" || o.AccessLogFormat != "json" {
		t.Errorf("config file: %q %q, %v", o.AccessLog, o.AccessLogFormat, err)
	}
}

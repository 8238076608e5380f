package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestQueueTimeoutFollowsUpstreamTimeout: --queue-timeout not given takes
// the --upstream-timeout value, from the command line or a config file;
// given, 0 included, it is kept.
func TestQueueTimeoutFollowsUpstreamTimeout(t *testing.T) {
	dir := t.TempDir()
	file := func(s string) string {
		p := filepath.Join(dir, strconv.Itoa(strings.Count(s, "\n"))+"-up.yaml")
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tt := range []struct {
		name string
		args []string
		want time.Duration
	}{
		{"default", nil, 600 * time.Second},
		{"upstream given", []string{"--upstream-timeout", "2m"}, 2 * time.Minute},
		{"both given", []string{"--upstream-timeout", "2m", "--queue-timeout", "5s"}, 5 * time.Second},
		{"zero: no limit", []string{"--upstream-timeout", "2m", "--queue-timeout", "0"}, 0},
		{"upstream from a file", []string{"-f", file("upstream-timeout: 90s\n")}, 90 * time.Second},
		{"queue from a file", []string{"-f", file("upstream-timeout: 90s\nqueue-timeout: 0\n")}, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parseUpArgs(tt.args...)
			if err != nil {
				t.Fatal(err)
			}
			if o.QueueTimeout != tt.want {
				t.Errorf("QueueTimeout = %s, want %s", o.QueueTimeout, tt.want)
			}
		})
	}
	cmd := newUpCmd(testFactory(), &globalOptions{}, nil)
	if usage := cmd.Flags().FlagUsages(); !strings.Contains(usage, "default: the --upstream-timeout value; 0: no limit") {
		t.Errorf("--help does not say what --queue-timeout defaults to:\n%s", usage)
	}
}

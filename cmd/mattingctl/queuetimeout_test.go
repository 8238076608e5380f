package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestQueueTimeoutFollowsUpstreamTimeout: --queue-timeout not given, or
// auto, stays nil, which is the --upstream-timeout value whatever that is
// (balancer.Limits), from the command line or a config file; given, 0
// included, it is kept.
func TestQueueTimeoutFollowsUpstreamTimeout(t *testing.T) {
	dir := t.TempDir()
	file := func(s string) string {
		p := filepath.Join(dir, strconv.Itoa(strings.Count(s, "\n"))+"-up.yaml")
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	follows := time.Duration(-1)
	for _, tt := range []struct {
		name     string
		args     []string
		want     time.Duration // follows: nil
		upstream time.Duration
	}{
		{"default", nil, follows, 600 * time.Second},
		{"upstream given", []string{"--upstream-timeout", "2m"}, follows, 2 * time.Minute},
		{"both given", []string{"--upstream-timeout", "2m", "--queue-timeout", "5s"}, 5 * time.Second, 2 * time.Minute},
		{"zero: no limit", []string{"--upstream-timeout", "2m", "--queue-timeout", "0"}, 0, 2 * time.Minute},
		{"auto", []string{"--queue-timeout", "5s", "--queue-timeout", "auto"}, follows, 600 * time.Second},
		{"upstream from a file", []string{"-f", file("upstream-timeout: 90s\n")}, follows, 90 * time.Second},
		{"queue from a file", []string{"-f", file("upstream-timeout: 90s\nqueue-timeout: 0\n")}, 0, 90 * time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parseUpArgs(tt.args...)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case o.UpstreamTimeout != tt.upstream:
				t.Errorf("UpstreamTimeout = %s, want %s", o.UpstreamTimeout, tt.upstream)
			case tt.want == follows && o.QueueTimeout != nil:
				t.Errorf("QueueTimeout = %s, want nil: the --upstream-timeout value", *o.QueueTimeout)
			case tt.want != follows && (o.QueueTimeout == nil || *o.QueueTimeout != tt.want):
				t.Errorf("QueueTimeout = %v, want %s", o.QueueTimeout, tt.want)
			}
		})
	}
	if _, err := parseUpArgs("--queue-timeout", "soon"); err == nil || !strings.Contains(err.Error(), `want a duration such as 30s, 5m or 1h or auto, got "soon"`) {
		t.Errorf("--queue-timeout soon: %v", err)
	}
	cmd := newUpCmd(testFactory(), &globalOptions{}, nil)
	if usage := cmd.Flags().FlagUsages(); !strings.Contains(usage, "(auto: the --upstream-timeout value; 0: no limit) (default auto)") {
		t.Errorf("--help does not say what --queue-timeout defaults to:\n%s", usage)
	}
}

package main

import (
	"strings"
	"testing"

	"github.com/mattingctl/mattingctl/balancer"
)

func TestResponseFlags(t *testing.T) {
	tests := []struct {
		name        string
		args        []string
		buf         int64
		maxUpgraded int
		wantErr     string
	}{
		{"defaults", nil, balancer.DefaultLimits().ResponseBuffer, 0, ""},
		{"set", []string{"--response-buffer", "32MiB", "--max-upgraded", "500"}, 32 << 20, 500, ""},
		{"zero is off", []string{"--response-buffer", "0"}, 0, 0, ""},
		{"auto is derived at start", []string{"--max-upgraded", "500", "--max-upgraded", "auto"}, balancer.DefaultLimits().ResponseBuffer, 0, ""},
		{"negative buffer", []string{"--response-buffer", "-1"}, 0, 0, `invalid argument "-1" for "--response-buffer"`},
		{"negative max-upgraded", []string{"--max-upgraded", "-1"}, 0, 0, `invalid argument "-1" for "--max-upgraded" flag: must not be negative`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got *upOptions
			root := newRootCmd(testFactory(), runFuncs{up: func(o *upOptions) error { got = o; return nil }})
			root.SetArgs(append(append([]string{"up"}, tt.args...), "--", "python3", "app.py"))
			err := root.Execute()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.ResponseBuffer != tt.buf || got.MaxUpgraded != tt.maxUpgraded {
				t.Errorf("response buffer %d, max upgraded %d; want %d, %d", got.ResponseBuffer, got.MaxUpgraded, tt.buf, tt.maxUpgraded)
			}
		})
	}
}

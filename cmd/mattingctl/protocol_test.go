package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestUpstreamProtocolFlag(t *testing.T) {
	file := filepath.Join(t.TempDir(), "m.yaml")
	if err := os.WriteFile(file, []byte("upstream-protocol: h2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		args    []string
		want    string
		wantErr string
	}{
		{"default", nil, "http1", ""},
		{"h2c", []string{"--upstream-protocol", "h2c"}, "h2c", ""},
		{"http1", []string{"--upstream-protocol", "http1"}, "http1", ""},
		{"other", []string{"--upstream-protocol", "h2"}, "", `invalid argument "h2" for "--upstream-protocol" flag: want http1 or h2c, got "h2"`},
		{"empty", []string{"--upstream-protocol="}, "", `for "--upstream-protocol" flag: want http1 or h2c, got ""`},
		{"config file", []string{"-f", file}, "", file + `: line 1: upstream-protocol: want http1 or h2c, got "h2"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got *upOptions
			root := newRootCmd(testFactory(), runFuncs{up: func(o *upOptions) error { got = o; return nil }})
			root.SetArgs(append(append([]string{"up"}, tt.args...), "--", "server"))
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
			if got.UpstreamProtocol != tt.want {
				t.Errorf("UpstreamProtocol = %q, want %q", got.UpstreamProtocol, tt.want)
			}
		})
	}
}

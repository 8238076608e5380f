package main

import (
	"strings"
	"testing"

	"github.com/mattingctl/mattingctl/balancer"
)

func TestBufferFlags(t *testing.T) {
	tests := []struct {
		name      string
		args      []string
		mem, disk int64
		dir       string
		wantErr   string
	}{
		{"defaults", nil, balancer.DefaultLimits().MaxBuffer, balancer.DefaultLimits().MaxDiskBuffer, "", ""},
		{"sizes", []string{"--max-buffer", "512MiB", "--max-disk-buffer", "2g", "--buffer-dir", "/var/tmp/m"}, 512 << 20, 2 << 30, "/var/tmp/m", ""},
		{"zero is none", []string{"--max-buffer", "0", "--max-disk-buffer", "0"}, 0, 0, "", ""},
		{"auto", []string{"--max-buffer", "1m", "--max-buffer", "auto", "--buffer-dir", "/x", "--buffer-dir", "auto"}, balancer.DefaultLimits().MaxBuffer, balancer.DefaultLimits().MaxDiskBuffer, "", ""},
		{"negative", []string{"--max-buffer", "-1"}, 0, 0, "", `invalid argument "-1" for "--max-buffer" flag: must not be negative, not -1`},
		{"not a size", []string{"--max-disk-buffer", "lots"}, 0, 0, "", `invalid argument "lots" for "--max-disk-buffer"`},
		{"not a size nor auto", []string{"--max-buffer", "lots"}, 0, 0, "", `invalid argument "lots" for "--max-buffer" flag: want a size such as 50MiB, 512k or 1048576 or auto, got "lots"`},
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
			if got.MaxBuffer != tt.mem || got.MaxDiskBuffer != tt.disk || got.BufferDir != tt.dir {
				t.Errorf("max buffer %d, max disk buffer %d, dir %q; want %d, %d, %q", got.MaxBuffer, got.MaxDiskBuffer, got.BufferDir, tt.mem, tt.disk, tt.dir)
			}
		})
	}
}

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadConfig(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       string // fmt of the settings, or the error's text
		err        bool
	}{
		{"flags and command", "replicas: 4\nhealth: /health\nenv: [A=1, B=2]\ncommand: [python3, app.py]\n",
			"[{replicas [4] 1} {health [/health] 2} {env [A=1 B=2] 3} {command [python3 app.py] 4}]", false},
		{"command as a string", "command: python3 app.py --port {port}\n", "[{command [python3 app.py --port {port}] 1}]", false},
		{"dashes allowed", "--max-inflight: 8\n", "[{max-inflight [8] 1}]", false},
		{"auto bounds are one value", "max-inflight: auto:1-32\n", "[{max-inflight [auto:1-32] 1}]", false},
		{"empty file", "", "[]", false},
		{"syntax error", "replicas: 4\nhealth: [/health\n", "c.yaml: line 1: did not find expected", true},
		{"not a mapping", "- replicas\n", "c.yaml: line 1: want a mapping", true},
		{"nested", "replicas: 4\nqueue:\n  size: 3\n", "c.yaml: line 3: queue: want a value or a list", true},
		{"twice", "replicas: 4\nport: 1\nreplicas: 2\n", `c.yaml: line 3: "replicas" is already set on line 1`, true},
		{"empty command", "command: []\n", "c.yaml: line 1: command is empty", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.yaml")
			if err := os.WriteFile(path, []byte(tt.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := loadConfig(path)
			if tt.err {
				if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), path) {
					t.Fatalf("error = %v, want one starting with the path and containing %q", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s := fmt.Sprint(got); s != tt.want && !(tt.want == "[]" && len(got) == 0) {
				t.Errorf("settings = %s, want %s", s, tt.want)
			}
		})
	}
}

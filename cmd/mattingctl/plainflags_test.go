package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFlagValuesInWords: a value a flag cannot take is refused in words,
// `want a whole number, got "four"`, for pflag's own flag types as for this
// package's, on the command line and from a config file (there with the
// file and the line), never in strconv's or time's text.
func TestFlagValuesInWords(t *testing.T) {
	tests := []struct {
		flag, value string
		want        string
	}{
		{"replicas", "four", `want a whole number or MIN:MAX such as 1:6, got "four"`},
		{"replicas", "a:b", `want a whole number or MIN:MAX such as 1:6, got "a:b"`},
		{"replicas", "1:", `want a whole number or MIN:MAX such as 1:6, got "1:"`},
		{"replicas", "0:4", `MIN must be at least 1, such as 1:4`},
		{"replicas", "5:2", `MAX must be at least MIN, such as 2:5`},
		{"max-inflight", "4.5", `want a whole number, auto or auto:MIN-MAX, got "4.5"`},
		{"max-conns", "four", `want a whole number or auto, got "four"`},
		{"unhealthy-after", "", `want a whole number, got ""`}, // pflag's int
		{"ready-timeout", "5 minutes", `want a duration such as 30s, 5m or 1h, got "5 minutes"`},
		{"ready-timeout", "300", `want a duration such as 30s, 5m or 1h, got "300" (a unit is needed: 300s)`},
		{"health-interval", "soon", `want a duration such as 30s, 5m or 1h, got "soon"`}, // pflag's duration
		{"health-timeout", "2", `want a duration such as 30s, 5m or 1h, got "2" (a unit is needed: 2s)`},
		{"max-body", "lots", `want a size such as 50MiB, 512k or 1048576, got "lots"`},
		{"max-buffer", "1 TB", `want a size such as 50MiB, 512k or 1048576 or auto, got "1 TB"`},
		{"queue-timeout", "2", `want a duration such as 30s, 5m or 1h or auto, got "2" (a unit is needed: 2s)`},
		{"detach", "maybe", `want true or false, got "maybe"`}, // pflag's bool
		{"weights", "2,x", `want a whole number, got "x"`},
	}
	dir := t.TempDir()
	for _, tt := range tests {
		t.Run(tt.flag+" "+tt.value, func(t *testing.T) {
			_, err := parseUpArgs("--" + tt.flag + "=" + tt.value)
			if err == nil || !strings.HasSuffix(err.Error(), " flag: "+tt.want) {
				t.Errorf("--%s=%s: error %v, want it to end %q", tt.flag, tt.value, err, tt.want)
			}
			assertNoLibraryText(t, err)

			path := filepath.Join(dir, "c.yaml")
			if err := os.WriteFile(path, []byte("port: 8000\n"+tt.flag+": \""+tt.value+"\"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err = parseUpArgs("-f", path)
			if want := path + ": line 2: " + tt.flag + ": " + tt.want; err == nil || err.Error() != want {
				t.Errorf("in a file: error %v, want %q", err, want)
			}
			assertNoLibraryText(t, err)
		})
	}
}

// TestConfigListForOneValue: a list where a flag takes one value is
// refused as a list, not joined with commas into a value refused for
// reasons harder to see; a list of one is that value.
func TestConfigListForOneValue(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	for _, tt := range []struct{ file, want string }{
		{"replicas: [2, 3]\n", `line 1: replicas: want a whole number or MIN:MAX such as 1:6, got a list of 2: [2, 3]`},
		{"detach: [true, false]\n", `line 1: detach: want true or false, got a list of 2: [true, false]`},
		{"ready-timeout: [1m, 2m]\n", `line 1: ready-timeout: want a duration such as 30s, 5m or 1h, got a list of 2: [1m, 2m]`},
	} {
		if err := os.WriteFile(path, []byte(tt.file), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := parseUpArgs("-f", path); err == nil || err.Error() != path+": "+tt.want {
			t.Errorf("file %q: error %v, want %q", tt.file, err, path+": "+tt.want)
		}
	}
	if err := os.WriteFile(path, []byte("replicas: [3]\nweights: [2, 1, 1]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if o, err := parseUpArgs("-f", path); err != nil || o.Replicas != 3 || len(o.Weights) != 3 {
		t.Errorf("a list of one, and weights as a list: %+v, %v", o, err)
	}
}

// assertNoLibraryText fails t if err carries a parser's own text.
func assertNoLibraryText(t *testing.T, err error) {
	t.Helper()
	for _, lib := range []string{"strconv", "invalid syntax", "time: ", "ParseInt", "ParseBool"} {
		if err != nil && strings.Contains(err.Error(), lib) {
			t.Errorf("error %q has %q in it", err, lib)
		}
	}
}

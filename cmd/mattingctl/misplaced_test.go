package main

import (
	"bytes"
	"io"
	"reflect"
	"testing"
)

// TestUpWarnsFlagsAfterTheCommand: up's own flags written after the command
// get one warning line naming them, on stderr; they stay the command's.
func TestUpWarnsFlagsAfterTheCommand(t *testing.T) {
	const advice = " not to mattingctl; put mattingctl's flags before the command (or before --)\n"
	tests := []struct {
		name string
		args []string
		want string // the warning; empty: none
	}{
		{"long flag", []string{"python3", "app.py", "--port", "9000"},
			"mattingctl: warning: --port after the command is passed to python3," + advice},
		{"long flag with =, short flag, global flag", []string{"-r", "2", "python3", "app.py", "--replicas=3", "-p", "9000", "-v", "--name", "x"},
			"mattingctl: warning: --replicas, -p, --name after the command are passed to python3," + advice},
		{"boolean flag takes no value", []string{"python3", "app.py", "-d", "{port}"},
			"mattingctl: warning: -d after the command is passed to python3," + advice},
		{"after --, the user has said they are the command's", []string{"--", "python3", "app.py", "--port", "9000"}, ""},
		{"flags before the command", []string{"-p", "9000", "python3", "app.py"}, ""},
		{"a value with {port} is the app's", []string{"python3", "app.py", "--port", "{port}", "--host=127.0.0.1:{port}"}, ""},
		{"not up's flags", []string{"python3", "app.py", "--verbose", "-x", "--ports", "-pp", "--", "-"}, ""},
		{"the command alone", []string{"python3"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var errOut bytes.Buffer
			var got *upOptions
			f := &factory{Out: io.Discard, ErrOut: &errOut, Client: testFactory().Client}
			root := newRootCmd(f, runFuncs{up: func(o *upOptions) error { got = o; return nil }})
			root.SetArgs(append([]string{"up"}, tt.args...))
			if err := root.Execute(); err != nil {
				t.Fatal(err)
			}
			if errOut.String() != tt.want {
				t.Errorf("stderr = %q, want %q", errOut.String(), tt.want)
			}
			// Everything from the command on is still the command's.
			want := tt.args
			for i, a := range tt.args {
				if a == "--" || a == "python3" {
					want = tt.args[i:]
					if a == "--" {
						want = want[1:]
					}
					break
				}
			}
			if !reflect.DeepEqual(got.Command, want) {
				t.Errorf("command = %q, want %q", got.Command, want)
			}
		})
	}
}

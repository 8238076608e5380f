package replica

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestExpand(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"port", []string{"serve", "--port={port}"}, []string{"serve", "--port=8001"}},
		{"replica", []string{"--name=r{replica}"}, []string{"--name=r3"}},
		{"both in one argument", []string{"-b", "127.0.0.1:{port}#{replica}"}, []string{"-b", "127.0.0.1:8001#3"}},
		{"repeated", []string{"{port}:{port}/{replica}-{replica}"}, []string{"8001:8001/3-3"}},
		{"none", []string{"python3", "app.py"}, []string{"python3", "app.py"}},
		{"other braces untouched", []string{"{PORT}", "{other}", "{port"}, []string{"{PORT}", "{other}", "{port"}},
		{"empty", nil, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := slices.Clone(tt.args)
			got := Expand(in, 3, 8001)
			if !slices.Equal(got, tt.want) {
				t.Errorf("Expand(%q, 3, 8001) = %q, want %q", tt.args, got, tt.want)
			}
			if !slices.Equal(in, tt.args) {
				t.Errorf("Expand changed its input to %q", in)
			}
		})
	}
}

func TestSpecNameAndArgs(t *testing.T) {
	s := Spec{ID: 4, Port: 9004, Command: []string{"srv", "--port", "{port}", "--id={replica}"}}
	if got, want := s.Name(), "replica-4"; got != want {
		t.Errorf("Name() = %q, want %q", got, want)
	}
	if got, want := s.Args(), []string{"srv", "--port", "9004", "--id=4"}; !slices.Equal(got, want) {
		t.Errorf("Args() = %q, want %q", got, want)
	}
	if s.Command[2] != "{port}" {
		t.Errorf("Args changed Command to %q", s.Command)
	}
}

func TestSpecEnviron(t *testing.T) {
	tests := []struct {
		name string
		env  []string
		want []string
	}{
		{"no extra", nil, []string{"PORT=8001", "MATTINGCTL_REPLICA=2"}},
		{"extra first", []string{"A=1", "B=two words"}, []string{"A=1", "B=two words", "PORT=8001", "MATTINGCTL_REPLICA=2"}},
		// PORT and MATTINGCTL_REPLICA come last, so that they win over
		// an Env entry of the same name (exec.Cmd keeps the last).
		{"ours override", []string{"PORT=1", "MATTINGCTL_REPLICA=9"}, []string{"PORT=1", "MATTINGCTL_REPLICA=9", "PORT=8001", "MATTINGCTL_REPLICA=2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Spare capacity in Env must not be written through.
			env := make([]string, len(tt.env), len(tt.env)+4)
			copy(env, tt.env)
			s := Spec{ID: 2, Port: 8001, Env: env}
			got := s.Environ()
			if !slices.Equal(got, tt.want) {
				t.Errorf("Environ() = %q, want %q", got, tt.want)
			}
			if spare := env[len(env):cap(env)]; slices.ContainsFunc(spare, func(s string) bool { return s != "" }) {
				t.Errorf("Environ wrote into Env's spare capacity: %q", spare)
			}
		})
	}
}

func TestCheckCommand(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "fake-server")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	plain := filepath.Join(dir, "plain.txt")
	if err := os.WriteFile(plain, []byte("not a program\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")
	subdir := filepath.Join(dir, "models")
	if err := os.Mkdir(subdir, 0o755); err != nil {
		t.Fatal(err)
	}
	// Only dir is searched, so bare names resolve (or not) there alone.
	t.Setenv("PATH", dir)

	tests := []struct {
		name    string
		command []string
		want    string // the exact error message; empty means no error
	}{
		{"nil", nil, "no command given: put the model server's command after --, e.g. mattingctl up -- python3 app.py"},
		{"empty program", []string{"", "app.py"}, "no command given: put the model server's command after --, e.g. mattingctl up -- python3 app.py"},
		{"not in PATH", []string{"no-such-server", "--port", "1"}, `command "no-such-server" not found in $PATH`},
		{"in PATH but not executable", []string{"plain.txt"}, `command "plain.txt" not found in $PATH`},
		{"path does not exist", []string{missing}, `command "` + missing + `": no such file`},
		{"not executable", []string{plain}, `command "` + plain + `" is not an executable file`},
		{"directory", []string{subdir}, `command "` + subdir + `" is not an executable file`},
		{"ok path", []string{exe, "--flag"}, ""},
		{"ok in PATH", []string{"fake-server"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckCommand(tt.command)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("CheckCommand(%q) = %q, want nil", tt.command, err)
			case tt.want != "" && err == nil:
				t.Errorf("CheckCommand(%q) = nil, want %q", tt.command, tt.want)
			case tt.want != "" && err.Error() != tt.want:
				t.Errorf("CheckCommand(%q) = %q, want %q", tt.command, err, tt.want)
			}
		})
	}
}

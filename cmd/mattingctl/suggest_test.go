package main

import (
	"strings"
	"testing"
)

// TestUnknownCommand: a word that is no command is one error line that
// names the command meant, by synonym or by spelling.
func TestUnknownCommand(t *testing.T) {
	for _, tt := range []struct{ args, want string }{
		{"stop", `unknown command "stop"; did you mean "down"?`},
		{"kill", `unknown command "kill"; did you mean "down"?`},
		{"ps", `unknown command "ps"; did you mean "status"?`},
		{"sttus", `unknown command "sttus"; did you mean "status"?`},
		{"start", `unknown command "start"; did you mean "up"?`},
		{"restat", `unknown command "restat"; did you mean "restart"?`},
		{"--name gpu stop", `unknown command "stop"; did you mean "down"?`},
		{"frobnicate", `unknown command "frobnicate"; see mattingctl --help`},
	} {
		t.Run(tt.args, func(t *testing.T) {
			fake := &fakeClient{}
			out, _, err := runCmd(t, fake, strings.Fields(tt.args)...)
			if err == nil || err.Error() != tt.want {
				t.Fatalf("error = %v, want %q", err, tt.want)
			}
			if out != "" || len(fake.calls) != 0 {
				t.Errorf("printed %q, called %v; want nothing but the error", out, fake.calls)
			}
		})
	}
	// With no command, mattingctl prints its help and succeeds, as before.
	out, _, err := runCmd(t, &fakeClient{})
	if err != nil || !strings.Contains(out, "Available Commands:") || !strings.Contains(out, "mattingctl up --replicas 4") {
		t.Errorf("mattingctl alone: %v, printed %q", err, out)
	}
}

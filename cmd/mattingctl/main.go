// Command mattingctl runs N replicas of a model server behind an embedded
// least-connection proxy, restarts them when they crash and scales them
// live. The commands here parse flags and present results; `up` runs the
// supervisor package, the others talk to a running instance through
// internal/control.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/mattingctl/mattingctl/replica"
)

func main() {
	// `up` runs mattingctl again as its instance's reaper (replica.Reaper),
	// which is no command a user types.
	if len(os.Args) > 1 && os.Args[1] == replica.ReaperArg {
		os.Exit(replica.RunReaper(os.Args[2:], os.Stdin, os.Stderr))
	}
	f := defaultFactory()
	if err := newRootCmd(f, runFuncs{}).Execute(); err != nil {
		code := 1
		var exit *exitError
		if errors.As(err, &exit) {
			code = exit.code
		}
		if err.Error() != "" {
			fmt.Fprintln(f.ErrOut, "mattingctl:", err)
		}
		os.Exit(code)
	}
}

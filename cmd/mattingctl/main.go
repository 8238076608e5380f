// Command mattingctl runs N replicas of a model server behind an embedded
// least-connection proxy, restarts them when they crash and scales them
// live. The commands here parse flags and present results; `up` runs the
// supervisor package, the others talk to a running instance through
// internal/control.
package main

import (
	"fmt"
	"os"
)

func main() {
	f := defaultFactory()
	if err := newRootCmd(f, runFuncs{}).Execute(); err != nil {
		fmt.Fprintln(f.ErrOut, "mattingctl:", err)
		os.Exit(1)
	}
}

// Command mattingctl runs N replicas of a model server behind an embedded
// least-connection proxy, restarts them when they crash and scales them
// live. The commands here only parse flags; the work is in the supervisor
// package.
package main

import (
	"fmt"
	"os"
)

func main() {
	if err := newRootCmd(runFuncs{}).Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "mattingctl:", err)
		os.Exit(1)
	}
}

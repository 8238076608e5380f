//go:build !unix

package main

import "errors"

// soak needs Unix signals (SIGKILL, SIGSTOP, SIGCONT) to make its chaos.
func soak([]string) error { return errors.New("soak runs on Unix only") }

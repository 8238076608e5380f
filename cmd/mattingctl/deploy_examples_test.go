package main

import (
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The deployment examples in examples/kubernetes and examples/nomad are
// checked against the flags `up` really takes: their mattingctl command lines
// go through the same parser as the real command, and ports, probes, checks
// and grace periods must agree with the flags they name. This file holds what
// every orchestrator's check shares; deploy_kubernetes_test.go,
// deploy_nomad_test.go and deploy_dockerfile_test.go hold the rest.

// parseUp runs argv (a mattingctl command line without the program name) through
// newRootCmd as `mattingctl up` would parse it and returns the options, so
// that an unknown flag or a bad value is an error here too.
func parseUp(argv []string) (*upOptions, error) {
	if len(argv) == 0 || argv[0] != "up" {
		return nil, fmt.Errorf("command line %q is not `mattingctl up ...`", argv)
	}
	var got *upOptions
	root := newRootCmd(testFactory(), runFuncs{up: func(o *upOptions) error { got = o; return nil }})
	root.SetArgs(argv)
	root.SetOut(io.Discard)
	root.SetErr(io.Discard)
	if err := root.Execute(); err != nil {
		return nil, fmt.Errorf("mattingctl %s: %w", strings.Join(argv, " "), err)
	}
	if got == nil {
		return nil, fmt.Errorf("mattingctl %s: did not run up", strings.Join(argv, " "))
	}
	if len(got.Command) == 0 {
		return nil, fmt.Errorf("mattingctl %s: no model server command", strings.Join(argv, " "))
	}
	if got.GPUs != "" && got.GPUs != "all" {
		if _, err := parseGPUs(got.GPUs); err != nil {
			return nil, err
		}
	}
	return got, nil
}

// checkContainerFlags checks what every containerised mattingctl needs:
// listeners the orchestrator can reach, a replica health path, a drain
// delay, and an admin port apart from the proxy's and the replicas'.
// It returns the admin port.
func checkContainerFlags(t *testing.T, where string, o *upOptions) int {
	t.Helper()
	if o.Host != "" && o.Host != "0.0.0.0" && o.Host != "::" {
		t.Errorf("%s: --host %q: the proxy must listen on all interfaces in a container", where, o.Host)
	}
	host, portStr, err := net.SplitHostPort(o.Admin)
	if err != nil {
		t.Fatalf("%s: --admin %q must be set as HOST:PORT for the probes: %v", where, o.Admin, err)
	}
	if host != "" && host != "0.0.0.0" && host != "::" {
		t.Errorf("%s: --admin %q: probes come from outside the container; listen on 0.0.0.0", where, o.Admin)
	}
	admin, err := strconv.Atoi(portStr)
	if err != nil || admin <= 0 {
		t.Fatalf("%s: --admin %q has no usable port", where, o.Admin)
	}
	base := o.BasePort
	if base == 0 {
		base = o.Port + 1
	}
	if admin == o.Port || admin >= base && admin < base+o.Replicas {
		t.Errorf("%s: --admin port %d clashes with the proxy (%d) or replicas (%d-%d)", where, admin, o.Port, base, base+o.Replicas-1)
	}
	if o.Health == "" {
		t.Errorf("%s: no --health: a replica would count as ready as soon as its port accepts, before its model is loaded", where)
	}
	if o.DrainDelay <= 0 {
		t.Errorf("%s: no --drain-delay: the proxy would stop accepting while endpoints still send to it", where)
	}
	return admin
}

// startupBudget is the longest `up` may take until /readyz answers 200:
// --min-ready replicas, --start-concurrency at a time, each within
// --ready-timeout.
func startupBudget(o *upOptions) time.Duration {
	minReady := max(o.MinReady, 1)
	waves := 1
	if k := o.StartConcurrency; k > 0 {
		waves = (minReady + k - 1) / k
	}
	return time.Duration(waves) * o.ReadyTimeout
}

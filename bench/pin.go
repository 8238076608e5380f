package main

import (
	"context"
	"fmt"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
)

// A load generator on the cores it measures competes with what it
// measures, and not evenly: behind a proxy that passes every request on
// at once, hundreds of server threads leave the client a sliver of the
// CPU, so it starts its requests (and their clocks) late, and its
// latencies look shorter the more the servers starve it. -client-cpu
// gives the client a core of its own, as clients on other machines have:
// it runs on that CPU, and everything it measures (mattingctl, nginx, the
// replicas) on the others.
type pinning struct {
	client, servers string // CPU lists for taskset; empty: not pinned
}

// newPinning returns the pinning that gives the client CPU cpu, or none
// for a negative cpu.
func newPinning(cpu int) (pinning, error) {
	if cpu < 0 {
		return pinning{}, nil
	}
	n := runtime.NumCPU()
	if n < 2 || cpu >= n {
		return pinning{}, fmt.Errorf("-client-cpu %d: this machine has CPUs 0-%d, and the servers need at least one besides the client's", cpu, n-1)
	}
	if _, err := exec.LookPath("taskset"); err != nil {
		return pinning{}, fmt.Errorf("-client-cpu needs taskset (apt-get install util-linux): %w", err)
	}
	var servers []string
	for i := range n {
		if i != cpu {
			servers = append(servers, strconv.Itoa(i))
		}
	}
	return pinning{client: strconv.Itoa(cpu), servers: strings.Join(servers, ",")}, nil
}

func (p pinning) String() string {
	if p.client == "" {
		return "client and servers share every CPU"
	}
	return "client on CPU " + p.client + ", servers (proxies and replicas) on CPUs " + p.servers
}

// command is exec.Command, run on cpus when set.
func command(cpus, name string, args ...string) *exec.Cmd {
	return commandContext(context.Background(), cpus, name, args...)
}

// commandContext is exec.CommandContext, run on cpus when set.
func commandContext(ctx context.Context, cpus, name string, args ...string) *exec.Cmd {
	if cpus == "" {
		return exec.CommandContext(ctx, name, args...)
	}
	return exec.CommandContext(ctx, "taskset", append([]string{"-c", cpus, name}, args...)...)
}

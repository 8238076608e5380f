package main

import (
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// TestPinning: the client gets the CPU named, the servers every other one;
// a CPU the machine lacks is refused naming the flag.
func TestPinning(t *testing.T) {
	if p, err := newPinning(-1); err != nil || p.client != "" || p.servers != "" {
		t.Errorf("newPinning(-1) = %+v, %v; want none", p, err)
	}
	n := runtime.NumCPU()
	if _, err := newPinning(n); err == nil || !strings.Contains(err.Error(), "-client-cpu "+strconv.Itoa(n)) {
		t.Errorf("newPinning(%d) on %d CPUs: %v, want a refusal naming -client-cpu", n, n, err)
	}
	if _, err := exec.LookPath("taskset"); err != nil || n < 2 {
		t.Skip("needs taskset and 2 CPUs")
	}
	p, err := newPinning(0)
	if err != nil {
		t.Fatal(err)
	}
	servers := strings.Split(p.servers, ",")
	if p.client != "0" || len(servers) != n-1 || servers[0] != "1" || servers[n-2] != strconv.Itoa(n-1) {
		t.Errorf("newPinning(0) on %d CPUs = %+v", n, p)
	}
}

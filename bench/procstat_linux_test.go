package main

import (
	"os"
	"os/exec"
	"slices"
	"testing"
)

func TestProcTreeFindsChildren(t *testing.T) {
	child := exec.Command("sleep", "30")
	if err := child.Start(); err != nil {
		t.Skip("no sleep to start:", err)
	}
	defer func() { _ = child.Process.Kill(); _ = child.Wait() }()
	tree, err := procTree(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if tree[0] != os.Getpid() || !slices.Contains(tree, child.Process.Pid) {
		t.Errorf("procTree(self) = %v, want this process (%d) first and its child %d", tree, os.Getpid(), child.Process.Pid)
	}
	if _, _, err := procCPU(tree); err != nil {
		t.Errorf("procCPU(%v): %v", tree, err)
	}
	if _, _, err := procCPU([]int{1 << 30}); err == nil {
		t.Error("procCPU of a process that does not exist: no error")
	}
}

package main

import (
	"strings"
	"testing"
)

func TestResolveCPUs(t *testing.T) {
	o := &upOptions{CPUs: "auto", ErrOut: &strings.Builder{}}
	o.Replicas = 1
	if err := o.resolveCPUs(); err != nil {
		t.Fatal(err)
	}
	if len(o.Options.CPUs) != 1 || len(o.Options.CPUs[0]) == 0 {
		t.Errorf("auto for 1 replica: %v", o.Options.CPUs)
	}
	o = &upOptions{CPUs: "100000", ErrOut: &strings.Builder{}}
	if err := o.resolveCPUs(); err == nil || !strings.Contains(err.Error(), "--cpus 100000: CPU 100000 is not one mattingctl may use") {
		t.Errorf("CPU outside the mask: %v", err)
	}
}

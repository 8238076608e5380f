package main

import (
	"testing"

	"github.com/mattingctl/mattingctl/internal/control"
)

func TestReplicaCounts(t *testing.T) {
	st := control.Status{Desired: 4, Replicas: []control.ReplicaStatus{{State: control.Ready}, {State: control.Ready}, {State: control.Ready}, {State: "starting"}}}
	if got := replicaCounts(st); got != "3/4 replicas ready" {
		t.Errorf("replicaCounts = %q, want 3/4 replicas ready", got)
	}
	if got := replicaCounts(control.Status{}); got != "" {
		t.Errorf("replicaCounts before the start = %q, want empty", got)
	}
}

package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestReplicasRange: --replicas MIN:MAX starts at MIN with MAX as the
// bound, from the command line and a config file, and a plain N given
// after it is a fixed count again; the delays are taken as given.
func TestReplicasRange(t *testing.T) {
	o, err := parseUpArgs("-r", "1:6", "--scale-up-delay", "2s", "--scale-down-delay", "1m")
	if err != nil {
		t.Fatal(err)
	}
	if o.Replicas != 1 || o.MaxReplicas != 6 || !o.Autoscaled() || o.ScaleUpDelay != 2*time.Second || o.ScaleDownDelay != time.Minute {
		t.Errorf("-r 1:6: replicas %d, max %d, delays %v %v", o.Replicas, o.MaxReplicas, o.ScaleUpDelay, o.ScaleDownDelay)
	}
	if o, err = parseUpArgs("--replicas", "2:6", "-r", "3"); err != nil || o.Replicas != 3 || o.Autoscaled() {
		t.Errorf("2:6 then 3: %+v %v, want a fixed 3", o, err)
	}
	if o, err = parseUpArgs("-r", "4:4"); err != nil || o.Replicas != 4 || o.MaxReplicas != 4 {
		t.Errorf("4:4: %v, want bounds 4 and 4", err)
	}
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte("replicas: 1:6\nscale-down-delay: 90s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if o, err = parseUpArgs("-f", path); err != nil || o.Replicas != 1 || o.MaxReplicas != 6 || o.ScaleDownDelay != 90*time.Second {
		t.Errorf("config file: %v, replicas %d max %d", err, o.Replicas, o.MaxReplicas)
	}
	if o, err = parseUpArgs("-f", path, "-r", "2"); err != nil || o.Replicas != 2 || o.Autoscaled() {
		t.Errorf("config file 1:6, -r 2: %v, want a fixed 2", err)
	}
}

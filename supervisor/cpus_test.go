package supervisor

import (
	"reflect"
	"strings"
	"testing"
)

func TestThreadEnv(t *testing.T) {
	t.Setenv("MKL_NUM_THREADS", "2")
	got := threadEnv(4, []string{"A=1", "ORT_NUM_THREADS=8"})
	want := []string{"OMP_NUM_THREADS=4", "OPENBLAS_NUM_THREADS=4", "NUMEXPR_NUM_THREADS=4"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("threadEnv = %q, want %q (the user's MKL_NUM_THREADS and ORT_NUM_THREADS kept)", got, want)
	}
}

func TestCPUSetsRoundRobin(t *testing.T) {
	o := PlacementOptions{CPUs: [][]int{{0, 1}, {2, 3}}}
	for id, want := range map[int][]int{1: {0, 1}, 2: {2, 3}, 3: {0, 1}, 4: {2, 3}} {
		if got := o.cpusFor(id); !reflect.DeepEqual(got, want) {
			t.Errorf("replica %d: %v, want %v", id, got, want)
		}
	}
	if o.cpuShareWarning(2) != "" {
		t.Error("a warning with one set per replica")
	}
	if w := o.cpuShareWarning(3); !strings.Contains(w, "3 replicas on 2 CPU sets (--cpus): replicas share cores") || !strings.Contains(w, "replica-3 shares CPUs 0-1 with replica-1") {
		t.Errorf("warning %q", w)
	}
	if (&PlacementOptions{}).cpusFor(1) != nil {
		t.Error("CPUs without --cpus")
	}
}

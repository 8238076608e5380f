package supervisor

import (
	"os"
	"reflect"
	"testing"
)

// TestNewSlotPinned: a pinned replica's environment has the thread
// variables at its set's size, after --env and CUDA_VISIBLE_DEVICES, but
// not those set in mattingctl's environment; status shows its CPUs.
func TestNewSlotPinned(t *testing.T) {
	s := newTestSupervisor(t, func(o *Options) {
		o.CPUs, o.Env, o.GPUs = [][]int{{0, 1, 2}}, []string{"A=1"}, []string{"0"}
	}, "serve")
	for _, k := range threadVars {
		t.Setenv(k, "")
	}
	if env, _, cpus := placement(s.cfg(), 2); !reflect.DeepEqual(env, []string{"A=1", "CUDA_VISIBLE_DEVICES=0"}) || !reflect.DeepEqual(cpus, []int{0, 1, 2}) {
		t.Errorf("env %q cpus %v, with every thread variable in mattingctl's environment", env, cpus)
	}
	for _, k := range threadVars {
		os.Unsetenv(k) // t.Setenv restores them
	}
	sl := newSlot(s, 2, "")
	defer sl.release()
	want := []string{"A=1", "CUDA_VISIBLE_DEVICES=0", "OMP_NUM_THREADS=3", "MKL_NUM_THREADS=3", "OPENBLAS_NUM_THREADS=3", "NUMEXPR_NUM_THREADS=3", "ORT_NUM_THREADS=3"}
	if env, _, _ := placement(s.cfg(), 2); !reflect.DeepEqual(env, want) {
		t.Errorf("env %q, want %q", env, want)
	}
	if st := sl.status(); st.CPUs != "0-2" {
		t.Errorf("status CPUs %q, want 0-2", st.CPUs)
	}
}

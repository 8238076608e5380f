package supervisor

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/mattingctl/mattingctl/replica"
)

// threadVars are the variables that set how many threads the common
// numeric runtimes start: OpenMP (PyTorch's intra-op pool too), MKL,
// OpenBLAS, numexpr, and ORT_NUM_THREADS for onnxruntime servers that read
// it. Each starts one thread per core it sees by default, so N replicas on
// one machine run N times as many threads as there are cores.
var threadVars = []string{"OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS", "ORT_NUM_THREADS"}

// checkCPUs checks o.CPUs. Where CPUs cannot be pinned it has no effect,
// and is dropped.
func (o *PlacementOptions) checkCPUs() error {
	if !replica.PinningSupported {
		o.CPUs = nil
		return nil
	}
	for i, set := range o.CPUs {
		if len(set) == 0 {
			return fmt.Errorf("--cpus: CPU set %d is empty", i+1)
		}
		for _, c := range set {
			if c < 0 {
				return fmt.Errorf("--cpus: CPU %d in set %d is not a CPU number", c, i+1)
			}
		}
	}
	return nil
}

// cpusFor returns replica id's CPUs: the sets go round robin, as --gpus.
func (o *PlacementOptions) cpusFor(id int) []int {
	if len(o.CPUs) == 0 {
		return nil
	}
	return o.CPUs[(id-1)%len(o.CPUs)]
}

// threadEnv returns the thread variables set to n, each unless the user
// set it, in mattingctl's environment or in env (--env).
func threadEnv(n int, env []string) []string {
	var out []string
	for _, k := range threadVars {
		if _, ok := os.LookupEnv(k); ok || hasEnv(env, k) {
			continue
		}
		out = append(out, k+"="+strconv.Itoa(n))
	}
	return out
}

func hasEnv(env []string, key string) bool {
	for _, kv := range env {
		if k, _, _ := strings.Cut(kv, "="); k == key {
			return true
		}
	}
	return false
}

// cpuShareWarning says which replicas of n share cores because there are
// fewer CPU sets than replicas, or is "".
func (o *PlacementOptions) cpuShareWarning(n int) string {
	sets := len(o.CPUs)
	if sets == 0 || n <= sets {
		return ""
	}
	return fmt.Sprintf("%d replicas on %d CPU sets (--cpus): replicas share cores, round robin (replica-%d shares CPUs %s with replica-1)",
		n, sets, sets+1, replica.FormatCPUs(o.CPUs[0]))
}

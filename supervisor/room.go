package supervisor

import (
	"fmt"

	"github.com/shirou/gopsutil/v3/mem"
)

// Before the autoscaler adds replicas it checks that the machine holds
// them: free memory for each at the size of the largest running replica,
// and, when replicas are placed, a CPU set and a GPU of their own.

// memoryReserve is the memory left free beside the replicas: the page
// cache of the model files the next replica reads, the proxy's body
// buffers as they fill, and the system, so that adding a replica never
// brings the machine to the out-of-memory killer.
const memoryReserve = 256 << 20

// replicaMemory is what one more replica is counted at: the largest
// running replica's resident memory and a quarter again, as a model
// server grows past its first size as it serves (allocator pools, caches,
// larger batches); at least --max-memory, which a replica may reach
// before it is recycled.
func (s *Supervisor) replicaMemory(largest uint64) uint64 {
	return max(largest+largest/4, uint64(max(s.cfg().MaxMemory, 0)))
}

// room says how many of more replicas, on top of current, the machine
// holds.
func (s *Supervisor) room(current, more int) room {
	fits, why := more, ""
	limit := func(n int, reason string) {
		if n < fits {
			fits, why = max(n, 0), reason
		}
	}
	if sets := len(s.cfg().CPUs); sets > 0 {
		limit(sets-current, fmt.Sprintf("--cpus has %d CPU sets, one for each replica", sets))
	}
	if gpus := len(s.cfg().GPUs); gpus > 0 {
		limit(gpus-current, fmt.Sprintf("--gpus lists %d GPUs, one for each replica (list a GPU twice to share it)", gpus))
	}
	var largest uint64
	for _, sl := range s.active() {
		largest = max(largest, sl.status().RSSBytes)
	}
	free, err := s.memAvailable()
	if err != nil {
		s.log.Warn("autoscaling: cannot read the free memory; adding replicas without checking it", "error", err)
		return roomWhy(fits, why)
	}
	need := s.replicaMemory(largest)
	n := more
	switch {
	case free < memoryReserve:
		n = 0
	case need > 0:
		n = int(min((free-memoryReserve)/need, uint64(more)))
	}
	limit(n, fmt.Sprintf("%s free, a replica needs %s (%s at the largest replica's size and a quarter, %s kept free)",
		formatBytes(free), formatBytes(need+memoryReserve), formatBytes(need), formatBytes(memoryReserve)))
	return roomWhy(fits, why)
}

// roomWhy words the reason: "no room: ..." when none fits, "room for N
// more: ..." when some.
func roomWhy(fits int, why string) room {
	switch {
	case why == "":
		return room{fits: fits}
	case fits == 0:
		return room{fits: 0, why: "no room: " + why}
	}
	return room{fits: fits, why: fmt.Sprintf("room for %d more: %s", fits, why)}
}

// memAvailable reads the memory free for another replica.
func (s *Supervisor) memAvailable() (uint64, error) {
	if s.cfg().MemAvailable != nil {
		return s.cfg().MemAvailable()
	}
	vm, err := mem.VirtualMemory()
	if err != nil {
		return 0, err
	}
	return vm.Available, nil
}

// formatBytes writes n in GiB with one decimal, or MiB below one GiB.
func formatBytes(n uint64) string {
	if n >= 1<<30 {
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	}
	return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20))
}

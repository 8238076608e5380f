package replica

import (
	"fmt"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
)

// PinningSupported reports whether Spec.CPUs has an effect here.
const PinningSupported = true

// AllowedCPUs returns the CPUs mattingctl itself may run on (its affinity
// mask, which taskset, cpusets and container limits narrow), in order.
func AllowedCPUs() ([]int, error) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return nil, fmt.Errorf("reading the CPU affinity mask: %w", err)
	}
	return setCPUs(set), nil
}

// A child inherits the CPU affinity of the thread that forks it, and every
// thread and process it starts inherits it from the child: so a replica is
// pinned by forking it from a thread pinned to its CPUs. That thread is
// one kept for the purpose (pinner): locked to its goroutine, it runs
// nothing else, so its mask never reaches mattingctl's own work, and it
// never ends, which matters because a child's Pdeathsig fires when the
// thread that forked it ends. Threads the runtime creates while a
// goroutine is locked come from its template thread, not from this one.
var (
	pinnerOnce sync.Once
	pinJobs    chan pinJob
)

type pinJob struct {
	set   unix.CPUSet
	start func() error
	done  chan error
}

// startPinned calls start, which forks, with the forking thread's CPU
// affinity set to cpus; with no cpus it just calls start.
func startPinned(cpus []int, start func() error) error {
	if len(cpus) == 0 {
		return start()
	}
	var set unix.CPUSet
	for _, c := range cpus {
		set.Set(c)
	}
	pinnerOnce.Do(func() {
		pinJobs = make(chan pinJob)
		go pinner()
	})
	job := pinJob{set: set, start: start, done: make(chan error, 1)}
	pinJobs <- job
	return <-job.done
}

func pinner() {
	runtime.LockOSThread() // for good: see above
	var free unix.CPUSet
	if err := unix.SchedGetaffinity(0, &free); err != nil {
		free = unix.CPUSet{}
	}
	for job := range pinJobs {
		if err := unix.SchedSetaffinity(0, &job.set); err != nil {
			job.done <- fmt.Errorf("pinning to CPUs %s: %w", FormatCPUs(setCPUs(job.set)), err)
			continue
		}
		err := job.start()
		// Back to the mask it began with, so that no thread of mattingctl
		// shows a replica's CPUs; a failure here is harmless, as the next
		// fork sets its own.
		if free.Count() > 0 {
			_ = unix.SchedSetaffinity(0, &free)
		}
		job.done <- err
	}
}

func setCPUs(set unix.CPUSet) []int {
	var cpus []int
	for c := 0; c < len(set)*64; c++ {
		if set.IsSet(c) {
			cpus = append(cpus, c)
		}
	}
	return cpus
}

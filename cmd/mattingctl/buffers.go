package main

import (
	"os"
	"runtime/debug"
)

// memoryHeadroom is what mattingctl may use besides the request bodies in
// memory: connections, goroutines, the response copy buffers.
const memoryHeadroom = 192 << 20

// setMemoryLimit makes the garbage collector keep the heap within the body
// budget plus headroom: with its default pacing, a heap holding 1 GiB of
// bodies could grow to 2 GiB before a collection. It is a soft limit, and
// GOMEMLIMIT, when set, wins.
func setMemoryLimit(maxBuffer int64) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	debug.SetMemoryLimit(max(maxBuffer, 0) + memoryHeadroom)
}

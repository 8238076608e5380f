package main

import (
	"os"
	"runtime/debug"

	"github.com/mattingctl/mattingctl/balancer"
)

// bufferSizeValue is a flag holding a buffer budget such as 1GiB, where 0
// turns that buffer off (balancer.Off).
type bufferSizeValue struct{ p *int64 }

func (v *bufferSizeValue) String() string {
	if v.p == nil || *v.p == balancer.Off {
		return "0"
	}
	return formatBytes(uint64(*v.p))
}

func (v *bufferSizeValue) Set(s string) error {
	n, err := parseSize(s)
	if err != nil {
		return err
	}
	if n == 0 {
		n = balancer.Off
	}
	*v.p = n
	return nil
}

func (v *bufferSizeValue) Type() string { return "size" }

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

package balancer

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
)

// Request bodies are held in chunks of chunkSize bytes (after a smaller
// first one, readbody.go), and reserved a chunk at a time as they arrive:
// a client that declares 50 MiB and sends little costs little.
const chunkSize = 64 << 10

// BufferFilePattern names the files bodies are spilled to, as
// os.CreateTemp takes it; RemoveBufferFiles removes them.
const BufferFilePattern = "mattingctl-body-*"

// RemoveBufferFiles removes the body files in dir that an earlier process
// left behind (it was killed while serving). A missing dir has none.
func RemoveBufferFiles(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("buffer directory %s: %w", dir, err)
	}
	prefix := strings.TrimSuffix(BufferFilePattern, "*")
	for _, e := range entries {
		if e.Type().IsRegular() && strings.HasPrefix(e.Name(), prefix) {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("removing a leftover request body: %w", err)
			}
		}
	}
	return nil
}

// errBuffersFull is why a body was refused: neither the memory nor the
// disk budget has room for it.
var errBuffersFull = errors.New("the proxy's request body buffers are full")

// buffers accounts for the request bodies the proxy holds, in memory and on
// disk, against the two budgets.
type buffers struct {
	maxMem  int64 // 0: no body in memory
	maxDisk int64 // 0: no body on disk
	dir     string
	// onRemade is told when the directory was made again (bufferdir.go);
	// nil: nobody is.
	onRemade func(dir string)

	mem  atomic.Int64 // bytes of memory reserved by bodies
	disk atomic.Int64 // bytes of disk reserved by bodies
}

func newBuffers(maxMem, maxDisk int64, dir string) *buffers {
	return &buffers{maxMem: max(maxMem, 0), maxDisk: max(maxDisk, 0), dir: dir}
}

// reserveMem reserves n bytes of memory for a body. A body's first chunk
// may use the whole budget; later chunks only up to seven eighths of it, so
// that a flood of large uploads leaves room for small requests, which spill
// large ones to disk rather than wait.
func (b *buffers) reserveMem(n int64, first bool) bool {
	limit := b.maxMem
	if !first {
		limit -= b.maxMem / 8
	}
	return reserve(&b.mem, n, limit)
}

func (b *buffers) releaseMem(n int64) { b.mem.Add(-n) }

// hasRoom reports whether a body's first n bytes would find room now, in
// memory or on disk; nothing is reserved.
func (b *buffers) hasRoom(n int64) bool {
	return b.mem.Load()+n <= b.maxMem || b.disk.Load()+1 <= b.maxDisk
}

// reserveDisk reserves n bytes of disk for a body.
func (b *buffers) reserveDisk(n int64) bool { return reserve(&b.disk, n, b.maxDisk) }

func (b *buffers) releaseDisk(n int64) { b.disk.Add(-n) }

func reserve(used *atomic.Int64, n, limit int64) bool {
	for {
		u := used.Load()
		if u+n > limit {
			return false
		}
		if used.CompareAndSwap(u, u+n) {
			return true
		}
	}
}

// chunks recycles body chunks: at the original load test's ~220 KB per
// request, allocating each afresh costs more CPU (zeroing and collection)
// than proxying it.
var chunks = sync.Pool{New: func() any { return new([chunkSize]byte) }}

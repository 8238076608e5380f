package balancer

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
)

// errClientLeft ends a read-ahead whose client stopped reading.
var errClientLeft = errors.New("the client stopped reading the response")

// spool is a response body read from the backend by its own goroutine
// (fill) and handed to the proxy's copy to the client (Read) as the client
// takes it. The backlog is the bytes filled but not yet read: first those
// in memory chunks, then those in the file. Once memory has no room, fill
// writes to the file until the client has caught up with everything, then
// to memory again; and whenever the client has caught up, the file is
// written from its start, so that it never holds more than the backlog at
// its largest.
type spool struct {
	b    *Balancer
	a    *attempt
	src  io.ReadCloser // the backend's body; fill's alone
	conn *atomic.Int64 // memory held ahead for the client's connection
	wake chan struct{} // a token for Read: bytes filled, or the end
	room chan struct{} // a token for fill: bytes taken, or Close

	// mu guards the fields below. Bytes are copied in and out of a chunk
	// and the file outside it: fill only writes past the backlog, and
	// Read only reads within it.
	mu       sync.Mutex
	mem      []*[chunkSize]byte // the memory part, oldest first
	head     int                // bytes of mem[0] already read
	tail     int                // bytes filled in the last chunk of mem
	memLen   int64              // bytes in memory not read yet
	file     *os.File           // the disk part; nil until first needed
	rOff     int64              // the disk part is bytes rOff..wOff of file
	wOff     int64
	onDisk   bool  // fill writes to the file
	noDisk   bool  // the file could not be made: no disk part
	memHeld  int64 // reserved from the budgets: every chunk but floor
	diskHeld int64
	// floor is the chunk held when no budget had room for one: a
	// response may always hold one chunk, as passing it through would
	// (ReverseProxy's copy buffer), so fill never waits for room with
	// nothing for the client to read. Nil when none is.
	floor   *[chunkSize]byte
	err     error // how the backend's body ended: io.EOF or why not
	filled  bool  // fill has ended
	closed  bool  // the client's side has ended
	waiting bool  // fill waits for room
}

// fill reads the backend's body to its end, then releases the backend.
func (s *spool) fill() {
	var err error
	var scratch *[copySize]byte // what is read for the file passes through it
	for {
		dst, toDisk := s.next()
		if dst == nil && !toDisk {
			err = errClientLeft
			break
		}
		if toDisk {
			if scratch == nil {
				scratch = copyBuffers.Get().(*[copySize]byte)
			}
			dst = scratch[:]
		}
		n, rerr := s.src.Read(dst)
		if toDisk && n > 0 {
			off := s.fileEnd()
			if _, werr := s.file.WriteAt(dst[:n], off); werr != nil {
				s.b.cfg().Logger.Error("cannot write a response to its file in the buffer directory; the response is broken off", "error", werr)
				err = fmt.Errorf("spooling the response to disk: %w", werr)
				break
			}
			s.add(n, off)
		} else if n > 0 {
			s.add(n, -1)
		}
		if rerr != nil {
			err = rerr
			break
		}
	}
	if err == io.EOF {
		s.a.end(true) // the backend is free while the client reads
	}
	_ = s.src.Close()
	if scratch != nil {
		copyBuffers.Put(scratch)
	}
	s.mu.Lock()
	s.err, s.filled = err, true
	last := s.closed
	s.mu.Unlock()
	poke(s.wake)
	if last {
		s.free()
	}
}

// next returns where fill reads to next: the free end of a memory chunk,
// or, when toDisk, the file (and dst is nil). It waits while neither
// memory nor disk has room, which is never while the backlog is empty
// (floor), and returns nil and false once the client's side has ended.
func (s *spool) next() (dst []byte, toDisk bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for !s.closed {
		if s.onDisk && s.memLen == 0 && s.rOff == s.wOff {
			s.onDisk = false // the client has caught up: back to memory
		}
		if !s.onDisk {
			if n := len(s.mem); n > 0 && s.tail < chunkSize {
				return s.mem[n-1][s.tail:], false
			}
			if charged := s.reserveChunk(); charged || len(s.mem) == 0 {
				c := chunks.Get().(*[chunkSize]byte)
				if !charged {
					s.floor = c
				}
				s.mem = append(s.mem, c)
				s.tail = 0
				return c[:], false
			}
			s.onDisk = s.openFile()
		}
		if s.onDisk && (s.wOff+chunkSize <= s.diskHeld || s.growDisk()) {
			return nil, true
		}
		s.waitForRoom()
	}
	return nil, false
}

// fileEnd returns where in the file the bytes just read go: after the
// disk part, or at the start of the file when the client has caught up
// with everything (the room reserved for the end is there too).
func (s *spool) fileEnd() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.memLen == 0 && s.rOff == s.wOff {
		s.rOff, s.wOff = 0, 0
	}
	return s.wOff
}

// reserveChunk reserves a chunk of memory within the connection's bound
// and the budget, whose last eighth stays for request bodies' first
// chunks.
func (s *spool) reserveChunk() bool {
	if !reserve(s.conn, chunkSize, s.b.cfg().ResponseBuffer) {
		return false
	}
	if !s.b.bufs.reserveMem(chunkSize, false) {
		s.conn.Add(-chunkSize)
		return false
	}
	s.memHeld += chunkSize
	return true
}

// openFile makes the spool's file, once, and reports whether there is
// one. The file is removed at once: it lives while it is open, and not
// even a kill -9 leaves it behind.
func (s *spool) openFile() bool {
	if s.file != nil || s.noDisk || s.b.bufs.maxDisk == 0 {
		return s.file != nil
	}
	f, err := s.b.bufs.createFile() // made again if a tmp cleaner removed it
	if err != nil {
		s.noDisk = true
		s.b.warnSpool(err)
		return false
	}
	_ = os.Remove(f.Name())
	s.file = f
	return true
}

// growDisk reserves another chunk of disk for the file.
func (s *spool) growDisk() bool {
	if !s.b.bufs.reserveDisk(chunkSize) {
		return false
	}
	s.diskHeld += chunkSize
	return true
}

// waitForRoom waits, with mu held on entry and on return, until the client
// has taken something or gone.
func (s *spool) waitForRoom() {
	s.waiting = true
	s.mu.Unlock()
	<-s.room
	s.mu.Lock()
	s.waiting = false
}

// add counts n bytes just filled: at off in the file, or, when off is
// negative, in the last chunk.
func (s *spool) add(n int, off int64) {
	s.mu.Lock()
	if off >= 0 {
		s.wOff = off + int64(n)
	} else {
		s.tail += n
		s.memLen += int64(n)
	}
	s.mu.Unlock()
	poke(s.wake)
}

// Read hands the client's copy what has been read from the backend,
// waiting for more when it has all of that.
func (s *spool) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	s.mu.Lock()
	for s.memLen == 0 && s.rOff == s.wOff {
		if err := s.err; err != nil {
			s.mu.Unlock()
			return 0, err
		}
		s.mu.Unlock()
		<-s.wake
		s.mu.Lock()
	}
	if s.memLen > 0 {
		c, end := s.mem[0], chunkSize
		if len(s.mem) == 1 {
			end = s.tail
		}
		n := copy(p, c[s.head:end])
		s.head += n
		s.memLen -= int64(n)
		if s.head == chunkSize { // read whole; fill is past it
			s.mem[0] = nil
			s.mem = s.mem[1:]
			s.head = 0
			s.releaseChunk(c)
		}
		s.tookLocked()
		s.mu.Unlock()
		return n, nil
	}
	f, off, n := s.file, s.rOff, min(int64(len(p)), s.wOff-s.rOff)
	s.mu.Unlock()
	k, err := f.ReadAt(p[:n], off)
	s.mu.Lock()
	s.rOff += int64(k)
	s.tookLocked()
	s.mu.Unlock()
	if k < int(n) {
		return k, fmt.Errorf("reading a response spooled to disk: %w", err)
	}
	return k, nil
}

// tookLocked wakes fill if it waits for room; mu is held.
func (s *spool) tookLocked() {
	if s.waiting {
		poke(s.room)
	}
}

// releaseChunk gives back a chunk read whole.
func (s *spool) releaseChunk(c *[chunkSize]byte) {
	chunks.Put(c)
	if c == s.floor {
		s.floor = nil
		return
	}
	s.memHeld -= chunkSize
	s.conn.Add(-chunkSize)
	s.b.bufs.releaseMem(chunkSize)
}

// Close ends the client's side; the memory, the file and the budgets go
// back once fill has ended too (at once when the backend's body was read
// whole).
func (s *spool) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	last := s.filled
	s.mu.Unlock()
	poke(s.room)
	if last {
		s.free()
	}
	return nil
}

// free returns the chunks, the file and the budgets; both sides are done.
func (s *spool) free() {
	for _, c := range s.mem {
		chunks.Put(c)
	}
	s.mem = nil
	s.conn.Add(-s.memHeld)
	s.b.bufs.releaseMem(s.memHeld)
	s.b.bufs.releaseDisk(s.diskHeld)
	s.memHeld, s.diskHeld = 0, 0
	if s.file != nil {
		_ = s.file.Close()
	}
}

// poke leaves a token in c, unless one waits there already.
func poke(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

package replica

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// A replica that writes 100 MB a second to stdout cost mattingctl a whole
// core: every line was read, prefixed, queued and written. Past a rate
// (Output.Rate) the lines are dropped instead, and cheaply: the pipe is
// still read, so the replica does not block, but in large chunks in which
// only the newlines are counted, until the replica's budget has room again.
// Only past skimRate, over all replicas, does a replica wait to write.

// rateNoticeEvery spaces the notices of lines dropped over the rate in a
// replica's output: the first comes at once, the next ones sum what was
// dropped since, at most this often.
const rateNoticeEvery = 10 * time.Second

// skimChunk is how much is read at once while lines are being dropped.
const skimChunk = 256 << 10

// skimRate bounds what all replicas' skims read, together, in bytes a
// second: past it they stop reading until the next moment there is room,
// and a replica that writes faster waits in its writes, as it would on a
// terminal. Without it a replica writing as fast as it can (1.2 GB a
// second of short lines) cost mattingctl 63% of a core in reads alone; at
// 128 MiB a second, 34-35% on a busy 2-core machine (the e2e bound is
// 35%). 64 MiB a second is still far more than a model server logs.
const skimRate = 64 << 20

// rateLimiter is one replica's budget of output, shared by its stdout and
// stderr: a token bucket refilled at rate bytes a second that holds at most
// a second's worth. A line that begins while the budget is positive
// passes and spends its bytes, which may take it below zero: lines are
// never cut.
type rateLimiter struct {
	rate int64
	now  func() time.Time // the clock; tests move it

	mu      sync.Mutex // guards the fields below
	tokens  float64    // bytes; below zero after a line larger than what was left
	last    time.Time  // when tokens was last refilled
	pending uint64     // lines dropped since the last notice
	noticed time.Time  // when the last notice was written; zero: never
}

// newRateLimiter returns a budget of rate bytes a second, full, or nil
// (no limit) for a rate of zero or less.
func newRateLimiter(rate int64) *rateLimiter {
	if rate <= 0 {
		return nil
	}
	l := &rateLimiter{rate: rate, now: time.Now, tokens: float64(rate)}
	l.last = l.now()
	return l
}

// refillLocked adds what the time since the last refill earned. l.mu is
// held.
func (l *rateLimiter) refillLocked() {
	now := l.now()
	if d := now.Sub(l.last); d > 0 {
		l.tokens = min(l.tokens+float64(l.rate)*d.Seconds(), float64(l.rate))
		l.last = now
	}
}

// spend takes n bytes from the budget, which may go below zero: a line
// that began while there was room passes whole. A nil limiter has no
// budget to spend.
func (l *rateLimiter) spend(n int) {
	if l == nil {
		return
	}
	l.mu.Lock()
	l.refillLocked()
	l.tokens -= float64(n)
	l.mu.Unlock()
}

// room reports whether the budget is positive again.
func (l *rateLimiter) room() bool { return l.untilRoom() <= 0 }

// untilRoom returns how long until the budget is positive again; zero or
// less when it is.
func (l *rateLimiter) untilRoom() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.refillLocked()
	if l.tokens > 0 {
		return 0
	}
	return time.Duration((1-l.tokens)/float64(l.rate)*float64(time.Second)) + time.Millisecond
}

// dropped counts n lines dropped, and returns the notice to write now, if
// one is due: the first at once, then at most every rateNoticeEvery.
func (l *rateLimiter) dropped(n uint64) (notice uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pending += n
	if now := l.now(); l.pending > 0 && (l.noticed.IsZero() || now.Sub(l.noticed) >= rateNoticeEvery) {
		notice, l.pending, l.noticed = l.pending, 0, now
	}
	return notice
}

// flush returns the lines dropped since the last notice, for a last
// notice when the output ends.
func (l *rateLimiter) flush() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.pending
	l.pending = 0
	return n
}

// rateNotice is the line, without prefix, saying n lines were dropped.
func rateNotice(n uint64, rate int64) string {
	lines := "lines"
	if n == 1 {
		lines = "line"
	}
	return fmt.Sprintf("mattingctl: dropped %d %s: this replica writes more than %s a second (--output-rate)\n", n, lines, formatBytes(rate))
}

// formatBytes writes n as --output-rate takes it: 1MiB, 512KiB, 1000.
func formatBytes(n int64) string {
	for _, u := range []struct {
		shift uint
		name  string
	}{{30, "GiB"}, {20, "MiB"}, {10, "KiB"}} {
		if n >= 1<<u.shift && n%(1<<u.shift) == 0 {
			return fmt.Sprintf("%d%s", n>>u.shift, u.name)
		}
	}
	return fmt.Sprintf("%d bytes", n)
}

// deadliner is a pipe that can time a read out (an *os.File in the
// poller), so that skim never waits in a read past the moment the budget
// has room again: a line arriving after a quiet spell, a traceback say,
// must not be dropped for a flood before it.
type deadliner interface{ SetReadDeadline(time.Time) error }

// skim drops what br holds and reads from it until the budget has room
// again, then up to the end of the line it is in (midLine says the data
// before it ended mid-line), and returns how many lines it dropped. It
// reads in chunks of skimChunk, counting newlines, and looks at the clock
// once a chunk. With dl (br's source) set, no read outlasts the wait for
// room. A read error (end of file) ends it, with the error.
func (l *rateLimiter) skim(br *bufio.Reader, dl deadliner, pace *rateLimiter, chunk []byte, midLine bool) (uint64, error) {
	lines, midLine, err := l.skimUntilRoom(br, dl, pace, chunk, midLine)
	if err != nil {
		return lines, err
	}
	for midLine {
		piece, err := br.ReadSlice('\n')
		if len(piece) > 0 && piece[len(piece)-1] == '\n' {
			return lines + 1, nil
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return lines + 1, err
		}
	}
	return lines, nil
}

// skimUntilRoom is skim's first part: it drops what br holds and reads
// until the budget has room, and says whether that left it mid-line. It
// reads no more than pace (nil: no bound), shared by every replica, allows.
func (l *rateLimiter) skimUntilRoom(br *bufio.Reader, dl deadliner, pace *rateLimiter, chunk []byte, midLine bool) (uint64, bool, error) {
	var lines uint64
	if dl != nil {
		defer func() { _ = dl.SetReadDeadline(time.Time{}) }()
	}
	for {
		wait := l.untilRoom()
		if wait <= 0 {
			return lines, midLine, nil
		}
		if pace != nil {
			if d := pace.untilRoom(); d > 0 {
				time.Sleep(min(d, wait))
				continue
			}
		}
		if dl != nil {
			_ = dl.SetReadDeadline(time.Now().Add(wait))
		}
		n, err := br.Read(chunk)
		if n > 0 {
			lines += uint64(bytes.Count(chunk[:n], []byte{'\n'}))
			midLine = chunk[n-1] != '\n'
			pace.spend(n)
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			continue // nothing came while there was no room
		}
		if err != nil {
			if midLine {
				lines++
			}
			return lines, false, err
		}
	}
}

package replica

import (
	"bytes"
	"strings"
	"sync"
	"time"
	"unicode"
)

// A replica that exits before it is ready says why in its last lines of
// output ("Port 5000 is in use", a traceback's last line): the error that
// reports the exit quotes them, so that the reason is where the operator
// looks first.

// TailLines is how many of its last lines of output a process keeps for
// an error to quote.
const TailLines = 5

// tailLineMax bounds one kept line, in bytes.
const tailLineMax = 300

// outputSettle bounds the wait, once a process has exited, for its last
// lines still in the pipes: a grandchild that holds them open must not
// delay the error.
const outputSettle = 500 * time.Millisecond

// lineTail keeps the last TailLines lines of a process's stdout and stderr
// together. A nil lineTail keeps nothing.
type lineTail struct {
	mu    sync.Mutex // guards lines and n
	lines [TailLines]string
	n     int // lines added in all
}

// add keeps line, made printable: without its line end and control
// characters (an escape sequence must not reach the operator's terminal
// from an error), at most tailLineMax bytes.
func (t *lineTail) add(line []byte) {
	if t == nil {
		return
	}
	line = bytes.TrimRight(line, "\r\n")
	if len(line) > tailLineMax {
		line = line[:tailLineMax]
	}
	s := strings.Map(func(r rune) rune {
		if r == '\t' {
			return ' '
		}
		if unicode.IsControl(r) {
			return -1
		}
		return r
	}, strings.ToValidUTF8(string(line), "?"))
	if strings.TrimSpace(s) == "" {
		return // says nothing
	}
	t.mu.Lock()
	t.lines[t.n%TailLines] = s
	t.n++
	t.mu.Unlock()
}

// last returns the kept lines, oldest first.
func (t *lineTail) last() []string {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	k := min(t.n, TailLines)
	out := make([]string, 0, k)
	for i := t.n - k; i < t.n; i++ {
		out = append(out, t.lines[i%TailLines])
	}
	return out
}

// exitedBeforeReady is WaitReady's error for a process that exited: how,
// and its last lines of output, once they are read (for outputSettle at
// most).
func (p *Process) exitedBeforeReady() error {
	if p.outDone != nil {
		t := time.NewTimer(outputSettle)
		select {
		case <-p.outDone:
		case <-t.C:
		}
		t.Stop()
	}
	return &ErrExited{Exit: p.Exit(), Name: p.spec.Name(), Tail: p.tail.last()}
}

package replica

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"sync"
)

// maxLine bounds one line of replica output; a longer line is passed on in
// pieces of this size, each with the prefix.
const maxLine = 64 << 10

// Output passes replicas' output through line by line, each line prefixed
// with the replica's name ("replica-2 | ..."), so that lines from different
// replicas never interleave mid-line.
type Output struct {
	// Stdout and Stderr receive the replicas' stdout and stderr lines.
	Stdout, Stderr io.Writer
	// Width pads names to this many characters so the bars line up; zero
	// means no padding.
	Width int

	mu sync.Mutex // serialises writes to Stdout and Stderr
}

func (o *Output) copyLines(w io.Writer, name string, r io.ReadCloser) {
	defer r.Close()
	if o.Width > len(name) {
		name += strings.Repeat(" ", o.Width-len(name))
	}
	prefix := []byte(name + " | ")
	br := bufio.NewReaderSize(r, maxLine)
	var buf []byte
	split := false // the previous piece ended a full buffer, not a line
	for {
		line, err := br.ReadSlice('\n')
		// A line of a multiple of maxLine bytes leaves only its newline
		// for the last piece; that piece ends the line already written.
		if len(line) > 0 && !(split && len(line) == 1 && line[0] == '\n') {
			buf = append(append(buf[:0], prefix...), line...)
			if buf[len(buf)-1] != '\n' {
				buf = append(buf, '\n')
			}
			o.mu.Lock()
			_, _ = w.Write(buf)
			o.mu.Unlock()
		}
		split = errors.Is(err, bufio.ErrBufferFull)
		if err != nil && !split {
			return
		}
	}
}

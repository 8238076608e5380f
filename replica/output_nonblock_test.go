package replica

import (
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/nonblock"
	"github.com/mattingctl/mattingctl/internal/testutil"
)

// stuck is a destination that blocks every Write until released, as a
// FIFO nobody reads does.
type stuck struct {
	release chan struct{}
	out     testutil.SyncBuffer
}

func (s *stuck) Write(p []byte) (int, error) {
	<-s.release
	return s.out.Write(p)
}

// TestOutputNeverBlocksTheReplica: with a destination that blocks, the
// replica's pipe is still read to the end: lines past the buffer are
// dropped and counted, and a warning follows once the destination takes
// lines again.
func TestOutputNeverBlocksTheReplica(t *testing.T) {
	dst := &stuck{release: make(chan struct{})}
	o := NewOutput(dst, dst, 0)
	r, w := io.Pipe()
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		o.copyLines(o.Stdout, "r-1", r, nil)
	}()
	// 40,000 lines of 40 bytes: 1.6 MB, past nonblock.DefaultBuffer.
	const lines = 40_000
	wrote := make(chan error, 1)
	go func() {
		for i := 0; i < lines; i++ {
			if _, err := fmt.Fprintf(w, "request %06d answered in 12 ms ok\n", i); err != nil {
				wrote <- err
				return
			}
		}
		wrote <- w.Close()
	}()
	select {
	case err := <-wrote:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the replica's writes blocked: its output is not being read")
	}
	select {
	case <-copied:
	case <-time.After(10 * time.Second):
		t.Fatal("copyLines did not finish")
	}
	if o.Dropped() == 0 {
		t.Fatal("no line counted as dropped with the destination blocked")
	}
	dropped := o.Dropped()
	close(dst.release)
	o.Close()
	got := dst.out.String()
	want := fmt.Sprintf("mattingctl: dropped %d lines while output was blocked\n", dropped)
	if !strings.HasSuffix(got, want) {
		t.Fatalf("output does not end with %q: ...%s", want, got[max(0, len(got)-200):])
	}
	if n := strings.Count(got, "\n") - 1; uint64(n)+dropped != lines {
		t.Fatalf("%d lines written + %d dropped != %d", n, dropped, lines)
	}
	if !strings.HasPrefix(got, "r-1 | request 000000 answered") {
		t.Fatalf("output starts %q", got[:40])
	}
}

// TestNewOutputWriters: a *nonblock.Writer is used as it is and left open by
// Close; one writer given for both streams is wrapped once; nil discards.
func TestNewOutputWriters(t *testing.T) {
	var buf testutil.SyncBuffer
	shared := nonblock.NewWriter(&buf, nonblock.Options{})
	o := NewOutput(shared, nil, 0)
	if o.Stdout != shared || o.Stderr != io.Discard {
		t.Fatalf("NewOutput(nonblock, nil): Stdout %T, Stderr %T", o.Stdout, o.Stderr)
	}
	o.Close()
	_, _ = shared.Write([]byte("still open\n"))
	if !shared.Close(5*time.Second) || buf.String() != "still open\n" || shared.Dropped() != 0 {
		t.Fatalf("Output.Close closed a writer it was given: wrote %q, dropped %d", buf.String(), shared.Dropped())
	}

	var both testutil.SyncBuffer
	o = NewOutput(&both, &both, 0)
	if o.Stdout != o.Stderr || len(o.owned) != 1 {
		t.Fatalf("one destination for both streams got %d writers", len(o.owned))
	}
	o.Close()
}

package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/mattingctl/mattingctl/internal/testutil"
)

// TestBlockedStderrDoesNotBlockTheLog: with stderr a pipe nobody reads,
// mattingctl's log never blocks; entries past the buffer are dropped and
// counted, and once stderr is read again a warning in the log's own format
// says how many.
func TestBlockedStderrDoesNotBlockTheLog(t *testing.T) {
	for _, tt := range []struct {
		format string
		json   bool
		want   *regexp.Regexp
	}{
		{"text", false, regexp.MustCompile(`\[WARN\]  mattingctl: dropped (\d+) lines while output was blocked: dropped=(\d+)\n`)},
		{"json", true, regexp.MustCompile(`\{"@level":"warn","@message":"dropped (\d+) lines while output was blocked",.*"dropped":(\d+)\}\n`)},
	} {
		t.Run(tt.format, func(t *testing.T) {
			rd, wr, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer rd.Close()
			defer wr.Close()
			o := newUpOutput(io.Discard, wr, hclog.LoggerOptions{Name: "mattingctl", JSONFormat: tt.json})
			logged := make(chan struct{})
			go func() {
				defer close(logged)
				for i := range 50_000 { // about 5 MB
					o.log.Info("a log line of some length, as the proxy writes", "request", i, "path", "/matting")
				}
			}()
			select {
			case <-logged:
			case <-time.After(10 * time.Second):
				t.Fatal("logging blocked on a stderr nobody reads")
			}
			if o.errOut.Dropped() == 0 {
				t.Fatal("no log line counted as dropped")
			}
			var got testutil.SyncBuffer
			go func() { _, _ = io.Copy(&got, rd) }()
			testutil.WaitFor(t, 10*time.Second, "the warning", func() bool { return tt.want.MatchString(got.String()) })
			m := tt.want.FindStringSubmatch(got.String())
			if m[1] != m[2] || m[1] != fmt.Sprint(o.errOut.Dropped()) {
				t.Errorf("warning says %s and %s, Dropped = %d", m[1], m[2], o.errOut.Dropped())
			}
			o.Close()
		})
	}
}

// TestUpOutputSharesOneDestination: stdout and stderr on the same file (a
// terminal, `2>&1`, the log of up -d) get one writer, so their lines keep
// their order; different files get one each.
func TestUpOutputSharesOneDestination(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	f1, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f1.Close()
	f2, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f2.Close()
	o := newUpOutput(f1, f2, hclog.LoggerOptions{})
	if o.out != o.errOut {
		t.Error("one file opened twice got two writers")
	}
	o.Close()

	other, err := os.Create(path + "2")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	o = newUpOutput(f1, other, hclog.LoggerOptions{})
	if o.out == o.errOut {
		t.Error("two files got one writer")
	}
	o.Close()
	var a, b strings.Builder
	o = newUpOutput(&a, &b, hclog.LoggerOptions{})
	if o.out == o.errOut {
		t.Error("two buffers got one writer")
	}
	o.Close()
}

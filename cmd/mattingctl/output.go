package main

import (
	"bytes"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/hashicorp/go-hclog"

	"github.com/mattingctl/mattingctl/internal/admin"
	"github.com/mattingctl/mattingctl/internal/logsafe"
	"github.com/mattingctl/mattingctl/internal/nonblock"
	"github.com/mattingctl/mattingctl/replica"
)

// upOutput is `up`'s stdout and stderr made non-blocking: replicas' output
// and mattingctl's log wait in a bounded queue each (nonblock.DefaultBuffer)
// and are dropped and counted when the destination is blocked past it or
// gone, so that a terminal, pipe or FIFO that stops reading cannot freeze
// the replicas or the supervisor.
type upOutput struct {
	out, errOut *nonblock.Writer
	log         hclog.Logger // mattingctl's log, to errOut
}

// newUpOutput wraps out and errOut, and makes the log, with logOpts, to
// errOut. One destination behind both (a terminal, `2>&1`, the log file of
// up -d) gets one writer, which keeps the order of replica output and log
// lines. The warning written after drops on errOut is a log line in the
// log's format.
func newUpOutput(out, errOut io.Writer, logOpts hclog.LoggerOptions) *upOutput {
	handleSIGPIPE()
	o := &upOutput{}
	o.errOut = nonblock.NewWriter(errOut, nonblock.Options{
		Warning: func(n uint64) []byte {
			var b bytes.Buffer
			lo := logOpts
			lo.Output = &b
			hclog.New(&lo).Warn(nonblock.WarningText(n), "dropped", n)
			return b.Bytes()
		},
	})
	logOpts.Output = o.errOut
	// One line per call, whatever a client put in a path it logs.
	o.log = logsafe.Wrap(hclog.New(&logOpts))
	if sameFile(out, errOut) {
		o.out = o.errOut
		return o
	}
	o.out = nonblock.NewWriter(out, nonblock.Options{
		Gone: func(err error) {
			o.log.Warn("stdout has gone (a closed pipe); replica output is dropped from now on and counted in "+admin.MetricLogLinesDropped, "error", err)
		},
	})
	return o
}

// Close writes what is queued, for at most replica.OutputCloseTimeout per
// destination. SIGPIPE stays handled: the error line main prints last goes
// to stderr too.
func (o *upOutput) Close() {
	o.errOut.Close(replica.OutputCloseTimeout)
	if o.out != o.errOut {
		o.out.Close(replica.OutputCloseTimeout)
	}
}

// handleSIGPIPE keeps a closed pipe on stdout or stderr (`up | head`) from
// killing mattingctl, for the rest of the process: Go's runtime dies of
// SIGPIPE when a write to fd 1 or 2 fails with EPIPE unless the program
// asks for SIGPIPE with signal.Notify; then the write just fails, and
// nonblock.Writer stops writing there. Notify rather than Ignore: an
// ignored signal stays ignored in the replicas exec'd after it, a handled
// one is reset to the default.
func handleSIGPIPE() {
	c := make(chan os.Signal, 1) // never read: Notify does not block on it
	signal.Notify(c, syscall.SIGPIPE)
}

// sameFile reports whether a and b are files open on the same file: a
// terminal on fd 1 and 2, or one file or pipe given for both.
func sameFile(a, b io.Writer) bool {
	fa, ok1 := a.(*os.File)
	fb, ok2 := b.(*os.File)
	if !ok1 || !ok2 {
		return false
	}
	sa, err1 := fa.Stat()
	sb, err2 := fb.Stat()
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}

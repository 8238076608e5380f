package replica

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"
)

// Probe tells whether a replica is ready for traffic: its port accepts a TCP
// connection or, when Path is set, GET Path answers 2xx, or, with GRPC, the
// gRPC health check answers SERVING (grpcprobe.go).
type Probe struct {
	// Addr is the replica's host:port.
	Addr string
	// Path is the health-check path; empty means a TCP connect is enough.
	Path string
	// Timeout bounds one check; zero means 2s.
	Timeout time.Duration
	// Client sends the HTTP checks; nil means a client with keep-alives off.
	Client *http.Client
	// H2C makes the HTTP check speak HTTP/2 over cleartext with prior
	// knowledge, for a replica that speaks nothing else.
	H2C bool
	// GRPC makes the check grpc.health.v1.Health/Check of GRPCService
	// (empty: the server as a whole), over h2c; Path is not used.
	GRPC        bool
	GRPCService string
}

// NewProbe returns the probe for a replica on 127.0.0.1:port, by the
// --health value health: a path, "grpc" or "grpc:SERVICE" (GRPCHealth), or
// empty for a TCP connect.
func NewProbe(port int, health string) Probe {
	p := Probe{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Path: health}
	if service, ok := GRPCHealth(health); ok {
		p.Path, p.GRPC, p.GRPCService = "", true, service
	}
	return p
}

// Check runs the probe once. A failure's text is its cause in a few words
// (causes.go), as the operator reads it in the log and in status; the
// error it came from stays reachable with errors.Is and errors.As.
func (p Probe) Check(ctx context.Context) error {
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if p.GRPC {
		return p.checkGRPC(parent, ctx, timeout)
	}
	if p.Path == "" {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", p.Addr)
		if err != nil {
			return p.failed(err, timeout, ended(parent))
		}
		return c.Close()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.Addr+p.Path, nil)
	if err != nil {
		return err
	}
	resp, err := p.httpClient().Do(req)
	if err != nil {
		return p.failed(err, timeout, ended(parent))
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return &StatusError{Path: p.Path, Code: resp.StatusCode}
	}
	return nil
}

var probeClient = &http.Client{
	Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	},
}

// ErrExited is returned by WaitReady when the process exits first.
type ErrExited struct{ Exit Exit }

func (e *ErrExited) Error() string { return "exited before becoming ready (" + e.Exit.String() + ")" }

// NotReadyError is returned by WaitReady when ctx ends before a check
// passes. It is ctx's error, and says why the replica was not ready.
type NotReadyError struct {
	// Err is ctx's error.
	Err error
	// Last is the last check's failure: the last one that ran to its end,
	// unless ctx cut short every check.
	Last error
}

func (e *NotReadyError) Error() string {
	return fmt.Sprintf("%v; last check: %v", e.Err, e.Last)
}

func (e *NotReadyError) Unwrap() []error { return []error{e.Err, e.Last} }

// Progress reports on a replica that is not ready yet. The zero Progress
// reports nothing.
type Progress struct {
	// Every is how often Report is called while the replica is not ready.
	Every time.Duration
	// Report is given how long WaitReady has waited and the last check's
	// failure.
	Report func(waited time.Duration, last error)
}

// WaitReady checks p every interval until it passes, the process exits
// (an *ErrExited), or ctx ends (a *NotReadyError). Meanwhile it reports to
// progress why the replica is not ready.
func (p Probe) WaitReady(ctx context.Context, proc *Process, interval time.Duration, progress Progress) error {
	begun := time.Now()
	t := time.NewTicker(interval)
	defer t.Stop()
	var report <-chan time.Time // nil: no reports
	if progress.Every > 0 && progress.Report != nil {
		r := time.NewTicker(progress.Every)
		defer r.Stop()
		report = r.C
	}
	var last error
	for {
		err := p.Check(ctx)
		if err == nil {
			return nil
		}
		// A check that ctx cut short says only that time ran out; the
		// one before it says why the replica was not ready.
		if last == nil || !ended(ctx) {
			last = err
		}
		for next := false; !next; {
			select {
			case <-proc.Done():
				return &ErrExited{Exit: proc.Exit()}
			case <-ctx.Done():
				return &NotReadyError{Err: ctx.Err(), Last: last}
			case <-report:
				progress.Report(time.Since(begun), last)
			case <-t.C:
				next = true
			}
		}
	}
}

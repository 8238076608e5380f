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
// connection or, when Path is set, GET Path answers 2xx.
type Probe struct {
	// Addr is the replica's host:port.
	Addr string
	// Path is the health-check path; empty means a TCP connect is enough.
	Path string
	// Timeout bounds one check; zero means 2s.
	Timeout time.Duration
	// Client sends the HTTP checks; nil means a client with keep-alives off.
	Client *http.Client
}

// NewProbe returns the probe for a replica on 127.0.0.1:port.
func NewProbe(port int, path string) Probe {
	return Probe{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Path: path}
}

// Check runs the probe once.
func (p Probe) Check(ctx context.Context) error {
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if p.Path == "" {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", p.Addr)
		if err != nil {
			return err
		}
		return c.Close()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.Addr+p.Path, nil)
	if err != nil {
		return err
	}
	client := p.Client
	if client == nil {
		client = probeClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("GET %s answered %s", p.Path, resp.Status)
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

// WaitReady checks p every interval until it passes, the process exits
// (an *ErrExited), or ctx ends (ctx's error, with the last check's failure).
func (p Probe) WaitReady(ctx context.Context, proc *Process, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	var last error
	for {
		if last = p.Check(ctx); last == nil {
			return nil
		}
		select {
		case <-proc.Done():
			return &ErrExited{Exit: proc.Exit()}
		case <-ctx.Done():
			return fmt.Errorf("%w (last check: %v)", ctx.Err(), last)
		case <-t.C:
		}
	}
}

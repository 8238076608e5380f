package replica

import (
	"context"
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
	code, err := p.get(ctx, p.Path)
	if err != nil {
		return p.failed(err, timeout, ended(parent))
	}
	if code < 200 || code > 299 {
		return &StatusError{Path: p.Path, Code: code}
	}
	return nil
}

// get sends GET path to the replica and returns the status it answered.
func (p Probe) get(ctx context.Context, path string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.Addr+path, nil)
	if err != nil {
		return 0, err
	}
	resp, err := p.httpClient().Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return resp.StatusCode, nil
}

var probeClient = &http.Client{
	Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	},
}

package balancer

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// The gRPC tests use the standard health service as their proto service:
// Check is a unary call and Watch a server-streaming one, and the test
// server below gives the request's service name meanings of its own.

// grpcHealth is a health server whose answers depend on the service
// asked about:
//
//	""           SERVING
//	"fail"       FAILED_PRECONDITION with a message, and a trailer x-why
//	"hold"       waits until release is closed or the call ends
//	"echo:TEXT"  SERVING, with TEXT in the header x-echo
//
// Every answer names its backend in the header x-backend and, when the call
// came with one, its grpc-timeout in x-grpc-timeout.
type grpcHealth struct {
	healthpb.UnimplementedHealthServer
	name    string
	release chan struct{}
	held    atomic.Int32 // calls in "hold" now
	calls   atomic.Int32
	arrived chan struct{} // a token per held call
}

func (h *grpcHealth) Check(ctx context.Context, req *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	h.calls.Add(1)
	md, _ := metadata.FromIncomingContext(ctx)
	hdr := metadata.Pairs("x-backend", h.name)
	if t := md.Get("grpc-timeout"); len(t) > 0 {
		hdr.Set("x-grpc-timeout", t[0])
	}
	if d, ok := ctx.Deadline(); ok {
		hdr.Set("x-deadline-left", time.Until(d).String())
	}
	svc := req.GetService()
	switch {
	case svc == "fail":
		_ = grpc.SetHeader(ctx, hdr)
		_ = grpc.SetTrailer(ctx, metadata.Pairs("x-why", "because"))
		return nil, status.Error(codes.FailedPrecondition, "bad input: ünï 100%")
	case svc == "hold":
		h.held.Add(1)
		defer h.held.Add(-1)
		h.arrived <- struct{}{}
		select {
		case <-h.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	case strings.HasPrefix(svc, "echo:"):
		hdr.Set("x-echo", strings.TrimPrefix(svc, "echo:"))
	}
	_ = grpc.SetHeader(ctx, hdr)
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

// Watch sends SERVING, NOT_SERVING and SERVING, then ends with the
// trailer x-watched and OK.
func (h *grpcHealth) Watch(req *healthpb.HealthCheckRequest, stream grpc.ServerStreamingServer[healthpb.HealthCheckResponse]) error {
	h.calls.Add(1)
	_ = stream.SetHeader(metadata.Pairs("x-backend", h.name))
	for _, s := range []healthpb.HealthCheckResponse_ServingStatus{
		healthpb.HealthCheckResponse_SERVING, healthpb.HealthCheckResponse_NOT_SERVING, healthpb.HealthCheckResponse_SERVING,
	} {
		if err := stream.Send(&healthpb.HealthCheckResponse{Status: s}); err != nil {
			return err
		}
	}
	stream.SetTrailer(metadata.Pairs("x-watched", "3"))
	return nil
}

// grpcBackend is a Backend with a grpc-go server behind it, which speaks
// h2c only.
type grpcBackend struct {
	*Backend
	health *grpcHealth
}

func newGRPCBackend(t *testing.T, id int) *grpcBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	name := "replica-" + strconv.Itoa(id)
	h := &grpcHealth{name: name, release: make(chan struct{}), arrived: make(chan struct{}, 1000)}
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, h)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		select {
		case <-h.release:
		default:
			close(h.release)
		}
		srv.Stop()
	})
	return &grpcBackend{Backend: NewBackend(id, name, ln.Addr().String()), health: h}
}

// newServedBalancer runs a balancer through Serve on a loopback port, as
// mattingctl does (HTTP/1.1 and h2c with prior knowledge), and returns its
// address.
func newServedBalancer(t *testing.T, opts Options, backends ...*Backend) (*Balancer, string) {
	t.Helper()
	bal := New(opts)
	for _, be := range backends {
		bal.Add(be)
	}
	return bal, serveBalancer(t, bal)
}

// dialGRPC returns a health client on one connection to addr.
func dialGRPC(t *testing.T, addr string) healthpb.HealthClient {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return healthpb.NewHealthClient(cc)
}

// h2cClient speaks HTTP/2 with prior knowledge, as gRPC does, but lets a
// test read the raw headers and trailers.
func h2cClient() *http.Client {
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// grpcFrame is msg as a gRPC length-prefixed message.
func grpcFrame(t *testing.T, msg proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	var hdr [5]byte
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(b)))
	return append(hdr[:], b...)
}

// rawCheck sends Health/Check for service to url over c with the given
// extra headers, reads the whole answer and returns it; its body is read,
// so its Trailer is filled in.
func rawCheck(t *testing.T, c *http.Client, url, service string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url+"/grpc.health.v1.Health/Check",
		bytes.NewReader(grpcFrame(t, &healthpb.HealthCheckRequest{Service: service})))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("Te", "trailers")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("Health/Check: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil && !errors.Is(err, io.EOF) {
		t.Fatalf("Health/Check: reading the answer: %v", err)
	}
	return resp, body
}

// grpcStatusOf returns the grpc-status and grpc-message of a raw answer,
// from its trailers or, trailers-only, its headers.
func grpcStatusOf(resp *http.Response) (string, string) {
	if s := resp.Trailer.Get("Grpc-Status"); s != "" {
		return s, resp.Trailer.Get("Grpc-Message")
	}
	return resp.Header.Get("Grpc-Status"), resp.Header.Get("Grpc-Message")
}

// newH2CServer starts an httptest server that speaks h2c only; its
// connections are counted in conns when that is not nil.
func newH2CServer(t *testing.T, h http.Handler, conns ...*connCount) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	if len(conns) > 0 {
		srv.Config.ConnState = conns[0].track
	}
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

// connCount counts a server's connections.
type connCount struct {
	opened atomic.Int32 // ever
	open   atomic.Int32 // now
}

func (c *connCount) track(_ net.Conn, s http.ConnState) {
	switch s {
	case http.StateNew:
		c.opened.Add(1)
		c.open.Add(1)
	case http.StateClosed, http.StateHijacked:
		c.open.Add(-1)
	}
}

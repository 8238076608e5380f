package replica

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/mattingctl/mattingctl/internal/testutil"
)

func TestNewProbeGRPC(t *testing.T) {
	for _, tc := range []struct {
		health  string
		grpc    bool
		service string
		path    string
	}{
		{"grpc", true, "", ""},
		{"grpc:matting.Matting", true, "matting.Matting", ""},
		{"grpc:", true, "", ""},
		{"/health", false, "", "/health"},
		{"", false, "", ""},
	} {
		p := NewProbe(9000, tc.health)
		if p.GRPC != tc.grpc || p.GRPCService != tc.service || p.Path != tc.path {
			t.Errorf("NewProbe(%q) = %+v", tc.health, p)
		}
	}
}

// grpcServer serves the standard health service, with the server as a
// whole SERVING, "matting" NOT_SERVING and "loading" UNKNOWN, unless bare
// (no health service at all).
func grpcServer(t *testing.T, bare bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	if !bare {
		hs := health.NewServer()
		hs.SetServingStatus("matting", healthpb.HealthCheckResponse_NOT_SERVING)
		hs.SetServingStatus("loading", healthpb.HealthCheckResponse_UNKNOWN)
		healthpb.RegisterHealthServer(srv, hs)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return ln.Addr().String()
}

func TestProbeCheckGRPC(t *testing.T) {
	addr := grpcServer(t, false)
	bare := grpcServer(t, true)
	h1 := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(h1.Close)
	closed := net.JoinHostPort("127.0.0.1", strconv.Itoa(testutil.FreePort(t)))
	for _, tc := range []struct {
		name, addr, service string
		want                string // "" passes
	}{
		{"serving", addr, "", ""},
		{"not serving", addr, "matting", `grpc health check of "matting" -> NOT_SERVING`},
		{"unknown status", addr, "loading", `grpc health check of "loading" -> UNKNOWN`},
		{"unknown service", addr, "nope", `grpc health check of "nope" -> NOT_FOUND: unknown service`},
		{"no health service", bare, "", "grpc health check -> UNIMPLEMENTED: unknown service grpc.health.v1.Health"},
		// "the replica answered in HTTP/1.1, not HTTP/2 (h2c)" when the
		// client reads the server's 400 before it closes the connection.
		{"an HTTP/1.1 server", h1.Listener.Addr().String(), "", "grpc health check: "},
		{"no listener", closed, "", "no listener on " + closed + " (connection refused)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := Probe{Addr: tc.addr, GRPC: true, GRPCService: tc.service, Timeout: 5 * time.Second}
			err := p.Check(context.Background())
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Check() = %v, want it to pass", err)
			case tc.want == "":
			case err == nil:
				t.Fatalf("Check() passed, want %q", tc.want)
			case !strings.HasPrefix(err.Error(), tc.want):
				t.Errorf("Check() = %q, want %q", err, tc.want)
			}
		})
	}
	err := Probe{Addr: closed, GRPC: true, Timeout: 5 * time.Second}.Check(context.Background())
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("refused check %v does not wrap ECONNREFUSED", err)
	}
}

// TestProbeCheckGRPCTimeout: a server that accepts the call and never
// answers fails the check at its timeout, in words.
func TestProbeCheckGRPCTimeout(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	}))
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	t.Cleanup(srv.Close)
	err := Probe{Addr: srv.Listener.Addr().String(), GRPC: true, Timeout: 200 * time.Millisecond}.Check(context.Background())
	if err == nil || err.Error() != "grpc health check: no answer within 200ms" {
		t.Errorf("Check() = %v", err)
	}
}

// TestProbeCheckH2C: an h2c-only replica passes an HTTP check spoken in
// h2c, and fails one spoken in HTTP/1.1.
func TestProbeCheckH2C(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 2 {
			http.Error(w, "h2c only", http.StatusHTTPVersionNotSupported)
		}
	}))
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()
	if err := (Probe{Addr: addr, Path: "/health", H2C: true}).Check(context.Background()); err != nil {
		t.Errorf("h2c check of an h2c replica: %v", err)
	}
	if err := (Probe{Addr: addr, Path: "/health"}).Check(context.Background()); err == nil {
		t.Error("an HTTP/1.1 check of an h2c-only replica passed")
	}
}

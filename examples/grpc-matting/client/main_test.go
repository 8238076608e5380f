package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mattingctl/mattingctl/examples/grpc-matting/mattingpb"
)

func TestParseFlags(t *testing.T) {
	cfg, err := parseFlags([]string{"-c", "64", "-n", "640", "-bg", "1, 2,3"}, io.Discard)
	if err != nil || cfg.c != 64 || cfg.n != 640 || cfg.bg.R != 1 || cfg.bg.G != 2 || cfg.bg.B != 3 || cfg.addr != "127.0.0.1:9110" {
		t.Errorf("parseFlags = %+v, %v", cfg, err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-c", "0"}, "-c is 0"},
		{[]string{"-n", "0"}, "-n is 0"},
		{[]string{"-bg", "1,2"}, `-bg "1,2": want three numbers`},
		{[]string{"-bg", "1,2,300"}, `"300" is not a number 0-255`},
		{[]string{"-duration", "-1s"}, "-duration is -1s"},
	} {
		if _, err := parseFlags(tc.args, io.Discard); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseFlags(%q) = %v, want %q", tc.args, err, tc.want)
		}
	}
}

func TestReport(t *testing.T) {
	busy := status.Error(codes.ResourceExhausted, "all replicas are busy and the queue is full")
	got := report([]result{
		{replica: "replica-1", took: time.Second},
		{replica: "replica-2", took: 2 * time.Second},
		{replica: "replica-1", took: 3 * time.Second},
		{err: busy}, {err: busy},
	}, 2*time.Second)
	want := "calls=5 ok=3 failed=2 throughput=1.5 calls/s p50=2s p99=3s max=3s\n" +
		"replica-1         2  66.7%\n" +
		"replica-2         1  33.3%\n" +
		"failures:\n" +
		"     2  ResourceExhausted: all replicas are busy and the queue is full\n"
	if got != want {
		t.Errorf("report:\n%s\nwant:\n%s", got, want)
	}
}

// fakeMatting answers every call from the replica named by the call's
// number, and fails every fifth.
type fakeMatting struct {
	mattingpb.UnimplementedMattingServer
	calls, conns atomic.Int32
}

func (f *fakeMatting) Matte(ctx context.Context, req *mattingpb.MatteRequest) (*mattingpb.MatteReply, error) {
	n := f.calls.Add(1)
	if n%5 == 0 {
		return nil, status.Error(codes.Unavailable, "no ready replica")
	}
	return &mattingpb.MatteReply{Png: []byte("png"), Replica: "replica-" + string(rune('1'+n%2))}, nil
}

// TestRealMain: the calls go over one connection, are counted per
// replica, and a failure makes the exit code 1.
func TestRealMain(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeMatting{}
	srv := grpc.NewServer()
	mattingpb.RegisterMattingServer(srv, f)
	go func() { _ = srv.Serve(countingListener{ln, &f.conns}) }()
	t.Cleanup(srv.Stop)
	var out, errOut bytes.Buffer
	code := realMain(context.Background(), []string{"-addr", ln.Addr().String(), "-c", "8", "-n", "40"}, &out, &errOut)
	if code != 1 {
		t.Errorf("exit code %d with failed calls, want 1; stderr %s", code, errOut.String())
	}
	for _, want := range []string{"calls=40 ok=32 failed=8", "replica-1        16  50.0%", "8  Unavailable: no ready replica"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if n := f.conns.Load(); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
}

type countingListener struct {
	net.Listener
	n *atomic.Int32
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

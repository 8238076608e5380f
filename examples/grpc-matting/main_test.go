package main

import (
	"bytes"
	"context"
	"image"
	"image/color"
	"image/png"
	"io"
	"math"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/mattingctl/mattingctl/examples/grpc-matting/mattingpb"
	"github.com/mattingctl/mattingctl/internal/testutil"
)

func TestParseFlags(t *testing.T) {
	env := func(port string) func(string) string {
		return func(k string) string {
			if k == "PORT" {
				return port
			}
			return ""
		}
	}
	for _, tc := range []struct {
		args    []string
		port    string
		want    int
		wantErr string
	}{
		{nil, "", 9111, ""},
		{nil, "9300", 9300, ""},
		{[]string{"-port", "9400"}, "9300", 9400, ""},
		{nil, "x", 0, `PORT is "x"`},
		{[]string{"-port", "70000"}, "", 0, `-port is "70000"`},
		{[]string{"-workers", "0"}, "", 0, "-workers is 0"},
		{[]string{"extra"}, "", 0, `unexpected argument "extra"`},
	} {
		cfg, err := parseFlags(tc.args, env(tc.port), io.Discard)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("parseFlags(%q, PORT=%q) = %v, want %q", tc.args, tc.port, err, tc.wantErr)
			}
			continue
		}
		if err != nil || cfg.port != tc.want {
			t.Errorf("parseFlags(%q, PORT=%q) = %d, %v; want %d", tc.args, tc.port, cfg.port, err, tc.want)
		}
	}
}

// discPNG is a red disc on a grey-green wall, as a PNG file.
func discPNG(t *testing.T) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 80, 60))
	for y := range 60 {
		for x := range 80 {
			c := color.RGBA{120, 140, 110, 255}
			if math.Hypot(float64(x)-40, float64(y)-30) < 18 {
				c = color.RGBA{200, 30, 30, 255}
			}
			img.SetRGBA(x, y, c)
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// start serves cfg on a loopback port until the test ends and returns a
// connection to it.
func start(t *testing.T, cfg config, replica string) *grpc.ClientConn {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, ln, cfg, replica, io.Discard) }()
	cc, err := grpc.NewClient("passthrough:///"+ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cc.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return cc
}

func TestMatte(t *testing.T) {
	cc := start(t, config{workers: 2}, "3")
	client := mattingpb.NewMattingClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	blue := &mattingpb.Color{R: 33, G: 150, B: 242}
	reply, err := client.Matte(ctx, &mattingpb.MatteRequest{Image: discPNG(t), Bg: blue})
	if err != nil {
		t.Fatal(err)
	}
	out, err := png.Decode(bytes.NewReader(reply.GetPng()))
	if err != nil {
		t.Fatalf("the reply is not a PNG: %v", err)
	}
	if got := color.RGBAModel.Convert(out.At(0, 0)); got != (color.RGBA{33, 150, 242, 255}) {
		t.Errorf("corner %v, want the background", got)
	}
	if got := color.RGBAModel.Convert(out.At(40, 30)); got != (color.RGBA{200, 30, 30, 255}) {
		t.Errorf("centre %v, want the disc", got)
	}
	if reply.GetReplica() != "replica-3" || reply.GetPort() == 0 || reply.GetPid() == 0 {
		t.Errorf("reply names replica %q port %d pid %d", reply.GetReplica(), reply.GetPort(), reply.GetPid())
	}

	for _, tc := range []struct {
		req  *mattingpb.MatteRequest
		want string
	}{
		{&mattingpb.MatteRequest{Image: []byte("not an image")}, "image is not a decodable PNG or JPEG"},
		{&mattingpb.MatteRequest{Image: discPNG(t), Bg: &mattingpb.Color{R: 256}}, "bg (256, 0, 0) has a channel over 255"},
	} {
		_, err := client.Matte(ctx, tc.req)
		if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.HasPrefix(st.Message(), tc.want) {
			t.Errorf("bad request: %v, want InvalidArgument: %s", err, tc.want)
		}
	}
}

func TestHealth(t *testing.T) {
	cc := start(t, config{workers: 1, readyAfter: 300 * time.Millisecond}, "")
	hc := healthpb.NewHealthClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	check := func(service string) healthpb.HealthCheckResponse_ServingStatus {
		resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: service})
		if err != nil {
			t.Fatalf("Check(%q): %v", service, err)
		}
		return resp.GetStatus()
	}
	if s := check(""); s != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("loading: %v, want NOT_SERVING", s)
	}
	testutil.WaitFor(t, 5*time.Second, "SERVING after -ready-after 300ms", func() bool {
		return check("") == healthpb.HealthCheckResponse_SERVING
	})
	if s := check(mattingpb.Matting_ServiceDesc.ServiceName); s != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("%s: %v", mattingpb.Matting_ServiceDesc.ServiceName, s)
	}
}

// TestNameIsThePortWithoutMattingctl: outside mattingctl a reply names
// the server by its port.
func TestNameIsThePortWithoutMattingctl(t *testing.T) {
	cc := start(t, config{workers: 1}, "")
	reply, err := mattingpb.NewMattingClient(cc).Matte(context.Background(), &mattingpb.MatteRequest{Image: discPNG(t)})
	if err != nil {
		t.Fatal(err)
	}
	if want := "port " + strconv.Itoa(int(reply.GetPort())); reply.GetReplica() != want {
		t.Errorf("replica %q, want %q", reply.GetReplica(), want)
	}
}

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/mattingctl/mattingctl/examples/grpc-matting/mattingpb"
	"github.com/mattingctl/mattingctl/internal/testutil"
)

// The gRPC tests run examples/grpc-matting as the replicas, with
// --upstream-protocol h2c, and call it through the proxy on one client
// connection, as a gRPC client in production does.

var (
	grpcBuild              sync.Once
	grpcServer, grpcClient string
	grpcImage              string // a small PNG file
	grpcImageBytes         []byte
	grpcBuildErr           error

	perReplicaLine = regexp.MustCompile(`(?m)^(replica-\d+)\s+(\d+)\s+[\d.]+%$`)
	grpcSummary    = regexp.MustCompile(`calls=(\d+) ok=(\d+) failed=(\d+)`)
)

// grpcLoadEnv sets how long TestGRPCCrash's load lasts; grpcDefaultLoad
// keeps CI short.
const (
	grpcLoadEnv     = "MATTINGCTL_E2E_GRPC_LOAD"
	grpcDefaultLoad = 12 * time.Second
)

// grpcExample builds examples/grpc-matting and its client once, next to
// the mattingctl binary, and a small test image (the matting is then
// cheap, so that the calls measure the proxy).
func grpcExample(t *testing.T) (server, client, img string) {
	t.Helper()
	grpcBuild.Do(func() {
		dir := filepath.Dir(mattingctl)
		grpcServer, grpcClient = filepath.Join(dir, "grpc-matting"), filepath.Join(dir, "grpc-matting-client")
		for _, b := range []struct{ bin, pkg string }{
			{grpcServer, "../examples/grpc-matting"},
			{grpcClient, "../examples/grpc-matting/client"},
		} {
			if out, err := exec.Command("go", "build", "-o", b.bin, b.pkg).CombinedOutput(); err != nil {
				grpcBuildErr = fmt.Errorf("building %s: %v\n%s", b.pkg, err, out)
				return
			}
		}
		img := image.NewRGBA(image.Rect(0, 0, 64, 48))
		for y := range 48 {
			for x := range 64 {
				c := color.RGBA{120, 140, 110, 255}
				if (x-32)*(x-32)+(y-24)*(y-24) < 15*15 {
					c = color.RGBA{200, 30, 30, 255}
				}
				img.SetRGBA(x, y, c)
			}
		}
		var buf bytes.Buffer
		if err := png.Encode(&buf, img); err != nil {
			grpcBuildErr = err
			return
		}
		grpcImageBytes = buf.Bytes()
		grpcImage = filepath.Join(dir, "disc.png")
		grpcBuildErr = os.WriteFile(grpcImage, grpcImageBytes, 0o644)
	})
	if grpcBuildErr != nil {
		t.Fatal(grpcBuildErr)
	}
	return grpcServer, grpcClient, grpcImage
}

func (in *instance) addr() string { return "127.0.0.1:" + strconv.Itoa(in.port) }

// runGRPCClient runs the example client against in's proxy with args and
// returns its output, the calls per replica and its exit code.
func runGRPCClient(t *testing.T, in *instance, client string, args ...string) (string, map[string]int, int) {
	t.Helper()
	cmd := exec.Command(client, append([]string{"-addr", in.addr(), "-timeout", "20s"}, args...)...)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running the gRPC client: %v", err)
	}
	per := map[string]int{}
	for _, m := range perReplicaLine.FindAllStringSubmatch(string(out), -1) {
		n, _ := strconv.Atoi(m[2])
		per[m[1]] = n
	}
	return string(out), per, code
}

// TestGRPCSpread: one client connection with 64 calls in flight is spread
// over every replica, call by call, where a connection-level balancer
// (a Kubernetes Service) would pin all of them to one.
func TestGRPCSpread(t *testing.T) {
	t.Parallel()
	server, client, img := grpcExample(t)
	in := start(t, 4, "--upstream-protocol", "h2c", "--health", "grpc", "--", server, "-delay", "20ms")
	in.waitReady(4)
	const n = 1280
	out, per, code := runGRPCClient(t, in, client, "-c", "64", "-n", strconv.Itoa(n), "-image", img)
	if code != 0 || !strings.Contains(out, fmt.Sprintf("calls=%d ok=%d failed=0", n, n)) {
		t.Fatalf("client exit %d:\n%s", code, out)
	}
	if len(per) != 4 {
		t.Fatalf("calls went to %d replicas, want 4:\n%s", len(per), out)
	}
	for name, k := range per {
		if share := float64(k) / n; share < 0.15 || share > 0.35 {
			t.Errorf("%s served %d of %d calls (%.0f%%), want 15-35%%", name, k, n, 100*share)
		}
	}
	// The proxy counted the same calls.
	var served uint64
	for _, r := range in.status().Replicas {
		served += r.Requests
		if want := per[r.Name]; r.Requests != uint64(want) {
			t.Errorf("status says %s served %d, the replies %d", r.Name, r.Requests, want)
		}
	}
	if served != n {
		t.Errorf("status counts %d calls, want %d", served, n)
	}
	t.Logf("%s", out)
}

// TestGRPCCrash: kill -9 of a replica under a gRPC load fails no call:
// the calls it held are retried on another replica, and it is restarted.
// The load lasts MATTINGCTL_E2E_GRPC_LOAD (default 12s; 20s is the
// figure asked for).
func TestGRPCCrash(t *testing.T) {
	t.Parallel()
	server, client, img := grpcExample(t)
	load := grpcDefaultLoad
	if v := os.Getenv(grpcLoadEnv); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("%s=%q: %v", grpcLoadEnv, v, err)
		}
		load = d
	}
	in := start(t, 4, "--upstream-protocol", "h2c", "--health", "grpc", "--", server, "-delay", "50ms")
	st := in.waitReady(4)
	victim := st.Replicas[1]
	type outcome struct {
		out  string
		code int
	}
	done := make(chan outcome, 1)
	go func() {
		out, _, code := runGRPCClient(t, in, client, "-c", "32", "-duration", load.String(), "-image", img)
		done <- outcome{out, code}
	}()
	// Kill once the replica is busy with calls.
	testutil.WaitFor(t, 10*time.Second, victim.Name+" serving calls", func() bool {
		for _, r := range in.status().Replicas {
			if r.Name == victim.Name && r.Inflight > 0 && r.Requests > 20 {
				return true
			}
		}
		return false
	})
	if err := syscall.Kill(victim.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	res := <-done
	m := grpcSummary.FindStringSubmatch(res.out)
	if res.code != 0 || m == nil || m[3] != "0" {
		t.Fatalf("client exit %d after kill -9 of %s:\n%s", res.code, victim.Name, res.out)
	}
	if calls, _ := strconv.Atoi(m[1]); calls < 100 {
		t.Errorf("only %d calls in %s", calls, load)
	}
	st = in.status()
	for _, r := range st.Replicas {
		if r.Name == victim.Name && (r.Restarts < 1 || r.Pid == victim.Pid) {
			t.Errorf("%s was not restarted: %+v", r.Name, r)
		}
	}
	t.Logf("%s killed during a %s load: %s (retried %d)", victim.Name, load, strings.SplitN(res.out, "\n", 2)[0], st.Retried)
}

// dialProxy returns a matting client on one connection to in's proxy.
func dialProxy(t *testing.T, in *instance) mattingpb.MattingClient {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+in.addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return mattingpb.NewMattingClient(cc)
}

// TestGRPCRefusals: an overfull queue reaches a gRPC client as
// RESOURCE_EXHAUSTED, a status it reads, with the proxy's words; the
// calls admitted are served.
func TestGRPCRefusals(t *testing.T) {
	t.Parallel()
	server, _, _ := grpcExample(t)
	in := start(t, 1, "--upstream-protocol", "h2c", "--health", "grpc", "--max-inflight", "1", "--queue", "1",
		"--", server, "-delay", "1s")
	in.waitReady(1)
	client := dialProxy(t, in)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var mu sync.Mutex
	got := map[codes.Code]int{}
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() {
			_, err := client.Matte(ctx, &mattingpb.MatteRequest{Image: grpcImageBytes})
			st := status.Convert(err)
			if st.Code() == codes.ResourceExhausted && st.Message() != "all replicas are busy and the queue is full" {
				t.Errorf("RESOURCE_EXHAUSTED says %q", st.Message())
			}
			if st.Code() != codes.OK && st.Code() != codes.ResourceExhausted {
				t.Errorf("a call failed with %v", err)
			}
			mu.Lock()
			got[st.Code()]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if got[codes.OK] < 2 || got[codes.ResourceExhausted] < 1 || got[codes.OK]+got[codes.ResourceExhausted] != 6 {
		t.Errorf("outcomes %v, want the slot's and the queue's calls served and the rest RESOURCE_EXHAUSTED", got)
	}
	if st := in.status(); st.Rejected != uint64(got[codes.ResourceExhausted]) {
		t.Errorf("status counts %d rejected, the client %d", st.Rejected, got[codes.ResourceExhausted])
	}
}

// TestGRPCHealth: --health grpc keeps a replica that reports NOT_SERVING
// out of rotation, says why, and a call meanwhile gets UNAVAILABLE; a
// replica that turns SERVING becomes ready.
func TestGRPCHealth(t *testing.T) {
	t.Parallel()
	server, _, _ := grpcExample(t)

	loading := start(t, 1, "--upstream-protocol", "h2c", "--health", "grpc", "--ready-timeout", "3s", "--", server, "-ready-after", "1h")
	client := dialProxy(t, loading)
	testutil.WaitFor(t, 10*time.Second, "the proxy to answer", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := client.Matte(ctx, &mattingpb.MatteRequest{Image: grpcImageBytes})
		st := status.Convert(err)
		if st.Code() == codes.Unavailable && strings.HasPrefix(st.Message(), "no ready replica") {
			return true
		}
		if st.Code() != codes.Unavailable { // connection refused before the proxy listens is Unavailable too
			t.Fatalf("a call with no replica ready: %v, want UNAVAILABLE: no ready replica", err)
		}
		return false
	})
	if code := loading.wait(15 * time.Second); code != 1 {
		t.Errorf("up exited %d, want 1", code)
	}
	if want := "last check: grpc health check -> NOT_SERVING"; !strings.Contains(loading.stderr.String(), want) {
		t.Errorf("the log does not say %q:\n%s", want, loading.stderr.String())
	}

	slow := start(t, 2, "--upstream-protocol", "h2c", "--health", "grpc:matting.v1.Matting", "--", server, "-ready-after", "1s")
	slow.waitReady(2)
	if _, err := dialProxy(t, slow).Matte(context.Background(), &mattingpb.MatteRequest{Image: grpcImageBytes}); err != nil {
		t.Errorf("a call once ready: %v", err)
	}
}

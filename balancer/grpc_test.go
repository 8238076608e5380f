package balancer

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/mattingctl/mattingctl/internal/testutil"
)

func TestParseGRPCTimeout(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"1H", time.Hour, true},
		{"2M", 2 * time.Minute, true},
		{"30S", 30 * time.Second, true},
		{"250m", 250 * time.Millisecond, true},
		{"99999999u", 99999999 * time.Microsecond, true},
		{"7n", 7, true},
		{"0S", 0, true},
		{"99999999H", 1<<63 - 1, true}, // past a Duration: the longest
		{"", 0, false},
		{"S", 0, false},
		{"10", 0, false},
		{"10s", 0, false}, // units are case-sensitive: s is not S
		{"123456789S", 0, false},
		{"-5S", 0, false},
		{"+5S", 0, false},
		{"1.5S", 0, false},
	} {
		got, ok := parseGRPCTimeout(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseGRPCTimeout(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestFormatGRPCTimeout(t *testing.T) {
	for _, tc := range []struct {
		in   time.Duration
		want string
	}{
		{-time.Second, "1n"},
		{0, "1n"},
		{1500 * time.Nanosecond, "1500n"},
		{99999999, "99999999n"},
		{250 * time.Millisecond, "250000u"},
		{2 * time.Second, "2000000u"},
		{2*time.Second + 1, "2000001u"}, // rounded up, never shorter
		{time.Hour, "3600000m"},
		{1000 * time.Hour, "3600000S"},
		{100000 * time.Hour, "6000000M"},
		{1<<63 - 1, "2562048H"},
	} {
		got := formatGRPCTimeout(tc.in)
		if got != tc.want {
			t.Errorf("formatGRPCTimeout(%v) = %q, want %q", tc.in, got, tc.want)
		}
		if back, ok := parseGRPCTimeout(got); !ok || back < tc.in {
			t.Errorf("formatGRPCTimeout(%v) = %q reads back as %v, %v", tc.in, got, back, ok)
		}
	}
}

func TestEncodeGRPCMessage(t *testing.T) {
	got := encodeGRPCMessage("queue full: 100% ünï\n")
	want := "queue full: 100%25 %C3%BCn%C3%AF%0A"
	if got != want {
		t.Errorf("encodeGRPCMessage = %q, want %q", got, want)
	}
}

// TestGRPCPassesThroughH2C: unary and server-streaming calls reach a gRPC
// server over h2c and come back with their headers, messages, status,
// message and trailers intact.
func TestGRPCPassesThroughH2C(t *testing.T) {
	be := newGRPCBackend(t, 1)
	_, addr := newServedBalancer(t, testOptions(func(o *Options) { o.UpstreamH2C = true }), be.Backend)
	client := dialGRPC(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	var hdr, trl metadata.MD
	resp, err := client.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Header(&hdr))
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING || hdr.Get("x-backend")[0] != "replica-1" {
		t.Errorf("Check = %v with header %v, want SERVING from replica-1", resp.GetStatus(), hdr)
	}

	_, err = client.Check(ctx, &healthpb.HealthCheckRequest{Service: "fail"}, grpc.Trailer(&trl))
	st := status.Convert(err)
	if st.Code() != codes.FailedPrecondition || st.Message() != "bad input: ünï 100%" {
		t.Errorf("failing Check: %v, want FailedPrecondition with the replica's message", err)
	}
	if got := trl.Get("x-why"); len(got) != 1 || got[0] != "because" {
		t.Errorf("failing Check's trailers %v, want x-why: because", trl)
	}

	stream, err := client.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	var got []string
	for {
		m, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("Watch after %v: %v", got, err)
		}
		got = append(got, m.GetStatus().String())
	}
	if strings.Join(got, ",") != "SERVING,NOT_SERVING,SERVING" {
		t.Errorf("Watch sent %v", got)
	}
	if w := stream.Trailer().Get("x-watched"); len(w) != 1 || w[0] != "3" {
		t.Errorf("Watch's trailers %v, want x-watched: 3", stream.Trailer())
	}
}

// TestGRPCRefusalsAreStatuses: the proxy's own refusals reach a gRPC
// client as gRPC statuses it can read, in the words of the HTTP answer.
func TestGRPCRefusalsAreStatuses(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	check := func(t *testing.T, client healthpb.HealthClient, service string, want codes.Code, msg string) {
		t.Helper()
		_, err := client.Check(ctx, &healthpb.HealthCheckRequest{Service: service})
		st := status.Convert(err)
		if st.Code() != want || !strings.HasPrefix(st.Message(), msg) {
			t.Errorf("Check(%q) = %v; want %v: %s", service, err, want, msg)
		}
	}
	t.Run("no replica", func(t *testing.T) {
		_, addr := newServedBalancer(t, testOptions(func(o *Options) { o.UpstreamH2C = true }))
		check(t, dialGRPC(t, addr), "", codes.Unavailable, errNoBackend.Error())
	})
	t.Run("queue full", func(t *testing.T) {
		be := newGRPCBackend(t, 1)
		_, addr := newServedBalancer(t, testOptions(func(o *Options) { o.UpstreamH2C = true; o.MaxInflight = 1 }), be.Backend)
		client := dialGRPC(t, addr)
		go func() { _, _ = client.Check(ctx, &healthpb.HealthCheckRequest{Service: "hold"}) }()
		<-be.health.arrived
		check(t, client, "", codes.ResourceExhausted, errQueueFull.Error())

		// As a raw answer: trailers-only, 200, and the pushback.
		resp, body := rawCheck(t, h2cClient(), "http://"+addr, "", nil)
		code, msg := grpcStatusOf(resp)
		if resp.StatusCode != http.StatusOK || len(body) != 0 || resp.Header.Get("Content-Type") != "application/grpc" ||
			resp.Header.Get("Grpc-Status") != "8" || code != "8" || msg != errQueueFull.Error() {
			t.Errorf("raw answer %d %v %q trailers %v, want a trailers-only 200 with grpc-status 8", resp.StatusCode, resp.Header, body, resp.Trailer)
		}
		if ms, err := strconv.Atoi(resp.Header.Get("Grpc-Retry-Pushback-Ms")); err != nil || ms < 1000 || resp.Header.Get("Retry-After") != "" {
			t.Errorf("grpc-retry-pushback-ms %q (Retry-After %q), want the Retry-After in ms", resp.Header.Get("Grpc-Retry-Pushback-Ms"), resp.Header.Get("Retry-After"))
		}
		if be.health.calls.Load() != 1 {
			t.Errorf("the replica got %d calls, want the held one only", be.health.calls.Load())
		}
	})
	t.Run("queue timeout", func(t *testing.T) {
		be := newGRPCBackend(t, 1)
		_, addr := newServedBalancer(t, testOptions(func(o *Options) {
			o.UpstreamH2C = true
			o.MaxInflight = 1
			o.Queue = 10
			o.QueueTimeout = new(200 * time.Millisecond)
		}), be.Backend)
		client := dialGRPC(t, addr)
		go func() { _, _ = client.Check(ctx, &healthpb.HealthCheckRequest{Service: "hold"}) }()
		<-be.health.arrived
		check(t, client, "", codes.DeadlineExceeded, errQueueTimeout.Error())
	})
	t.Run("replica does not answer", func(t *testing.T) {
		dead := NewBackend(1, "replica-1", closedAddr(t))
		_, addr := newServedBalancer(t, testOptions(func(o *Options) { o.UpstreamH2C = true }), dead)
		check(t, dialGRPC(t, addr), "", codes.Unavailable, "replica-1 did not answer")
	})
	t.Run("body too large", func(t *testing.T) {
		be := newGRPCBackend(t, 1)
		_, addr := newServedBalancer(t, testOptions(func(o *Options) { o.UpstreamH2C = true; o.MaxBody = 64 }), be.Backend)
		check(t, dialGRPC(t, addr), strings.Repeat("x", 100), codes.ResourceExhausted, "request body is over the limit of 64 bytes")
	})
}

// TestGRPCRetriedOnAnotherReplica: a call that a replica refused, or
// reset before answering, is sent whole to another one.
func TestGRPCRetriedOnAnotherReplica(t *testing.T) {
	var resets atomic.Int32
	var wrongBody atomic.Value
	// A replica that reads the whole call, then resets its stream.
	resetting := newH2CServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if want := grpcFrame(t, &healthpb.HealthCheckRequest{Service: "echo:" + r.Header.Get("X-Call")}); string(b) != string(want) {
			wrongBody.Store(fmt.Sprintf("%q, want %q", b, want))
		}
		resets.Add(1)
		panic(http.ErrAbortHandler)
	}))
	for _, tc := range []struct {
		name string
		addr string
	}{
		{"refused", closedAddr(t)},
		{"reset", resetting.Listener.Addr().String()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := NewBackend(1, "replica-1", tc.addr)
			good := newGRPCBackend(t, 2)
			bal, addr := newServedBalancer(t, testOptions(func(o *Options) { o.UpstreamH2C = true; o.Retries = 2; o.Policy = &RoundRobin{} }), bad, good.Backend)
			client := dialGRPC(t, addr)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			for i := range 4 {
				call := fmt.Sprintf("call-%d-%s", i, strings.Repeat("z", i*1000))
				var hdr metadata.MD
				_, err := client.Check(metadata.AppendToOutgoingContext(ctx, "x-call", call),
					&healthpb.HealthCheckRequest{Service: "echo:" + call}, grpc.Header(&hdr))
				if err != nil {
					t.Fatalf("call %d: %v", i, err)
				}
				if got := hdr.Get("x-echo"); len(got) != 1 || got[0] != call {
					t.Fatalf("call %d reached replica-2 as %v", i, got)
				}
			}
			if bal.Stats().Retried == 0 {
				t.Error("no call was retried")
			}
			if w := wrongBody.Load(); w != nil {
				t.Errorf("the resetting replica got %v", w)
			}
		})
	}
	if resets.Load() == 0 {
		t.Error("the resetting replica got no call")
	}
}

// TestGRPCTimeoutBoundsTheCall: a call's grpc-timeout ends its wait for a
// replica that ignores it, and its wait in the queue, with
// DEADLINE_EXCEEDED; the replica is told what is left of it.
func TestGRPCTimeoutBoundsTheCall(t *testing.T) {
	var seen atomic.Value
	var seenAt atomic.Int64 // when the call arrived, in Unix nanoseconds
	ended := make(chan time.Duration, 10)
	arrived := make(chan struct{}, 10)
	// A replica that ignores grpc-timeout and holds every call until it
	// is cancelled.
	stubborn := newH2CServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		seen.Store(r.Header.Get("Grpc-Timeout"))
		seenAt.Store(start.UnixNano())
		_, _ = io.ReadAll(r.Body)
		arrived <- struct{}{}
		<-r.Context().Done()
		ended <- time.Since(start)
	}))
	be := NewBackend(1, "replica-1", stubborn.Listener.Addr().String())
	bal, addr := newServedBalancer(t, testOptions(func(o *Options) { o.UpstreamH2C = true; o.MaxInflight = 1; o.Queue = 10 }), be)
	c := h2cClient()

	start := time.Now()
	resp, _ := rawCheck(t, c, "http://"+addr, "", map[string]string{"Grpc-Timeout": "300m"})
	took := time.Since(start)
	code, msg := grpcStatusOf(resp)
	if resp.StatusCode != http.StatusOK || code != "4" || !strings.HasPrefix(msg, "replica-1 did not answer") {
		t.Errorf("answer %d grpc-status %q %q, want 200 with DEADLINE_EXCEEDED (4)", resp.StatusCode, code, msg)
	}
	if took > 3*time.Second {
		t.Errorf("answered after %s; the deadline was 300ms", took)
	}
	select {
	case d := <-ended:
		if d > 3*time.Second {
			t.Errorf("the replica's call was cancelled after %s", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the replica's call was not cancelled at the deadline")
	}
	if v, _ := seen.Load().(string); v == "" {
		t.Error("the replica got no grpc-timeout")
	} else if d, ok := parseGRPCTimeout(v); !ok || d > 300*time.Millisecond || d < 300*time.Millisecond-time.Unix(0, seenAt.Load()).Sub(start)-50*time.Millisecond {
		// What is left when the call reached the replica, give or take
		// the header's whole milliseconds and the machine's scheduling.
		t.Errorf("the replica got grpc-timeout %q %s after the call began, want what was left of 300m", v, time.Unix(0, seenAt.Load()).Sub(start).Round(time.Millisecond))
	}

	<-arrived
	// In the queue: one call holds the only slot, the next waits no
	// longer than its own deadline, with no queue timeout.
	holdCtx, stopHold := context.WithCancel(context.Background())
	defer stopHold()
	go func() {
		req, _ := http.NewRequestWithContext(holdCtx, http.MethodPost, "http://"+addr+"/grpc.health.v1.Health/Check", strings.NewReader("\x00\x00\x00\x00\x00"))
		req.Header.Set("Content-Type", "application/grpc")
		if resp, err := c.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	<-arrived
	start = time.Now()
	resp, _ = rawCheck(t, c, "http://"+addr, "", map[string]string{"Grpc-Timeout": "200m"})
	took = time.Since(start)
	code, msg = grpcStatusOf(resp)
	if code != "4" || msg != errQueueTimeout.Error() || took > 3*time.Second {
		t.Errorf("queued call answered grpc-status %q %q after %s, want 4 (%s) after about 200ms", code, msg, took, errQueueTimeout)
	}
	if q := bal.Stats().Queued; q != 0 {
		t.Errorf("%d still queued", q)
	}
	bal.transport.CloseIdleConnections()
}

// TestH2CUpstreamCountsStreams: over h2c, calls multiplexed on one client
// connection and on one connection per replica are counted one by one, for
// least_conn and MaxInflight alike.
func TestH2CUpstreamCountsStreams(t *testing.T) {
	g := newGate()
	defer g.open()
	var conns [2]connCount
	var protos sync.Map
	var tbs [2]*Backend
	for i := range tbs {
		srv := newH2CServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			protos.Store(r.Proto, true)
			if r.URL.Path == "/hold" {
				g.handler(w, r)
			}
		}), &conns[i])
		tbs[i] = NewBackend(i+1, "replica-"+strconv.Itoa(i+1), srv.Listener.Addr().String())
	}
	bal, addr := newServedBalancer(t, testOptions(func(o *Options) { o.UpstreamH2C = true; o.MaxInflight = 3; o.Queue = 10 }), tbs[0], tbs[1])
	c := h2cClient() // one connection: HTTP/2 multiplexes
	// A burst at a cold start may dial a few connections at once, of which
	// the transport keeps one: warm up first.
	testutil.WaitFor(t, settle, "a connection to each replica", func() bool {
		code, _, _ := get(t, c, "http://"+addr+"/")
		return code == http.StatusOK && conns[0].open.Load() == 1 && conns[1].open.Load() == 1
	})
	opened := [2]int32{conns[0].opened.Load(), conns[1].opened.Load()}

	codes := make(chan int, 8)
	for range 8 {
		go func() {
			resp, err := c.Get("http://" + addr + "/hold")
			if err != nil {
				codes <- 0
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			codes <- resp.StatusCode
		}()
	}
	g.waitArrivals(t, 6)
	testutil.WaitFor(t, settle, "2 calls queued", func() bool { return bal.Stats().Queued == 2 })
	for _, be := range tbs {
		if n := be.InFlight(); n != 3 {
			t.Errorf("%s has %d calls in flight, want 3 (its cap)", be.Name, n)
		}
	}
	select {
	case <-g.arrived:
		t.Fatal("a 7th call reached a replica past the caps")
	default:
	}
	g.open()
	for range 8 {
		if code := <-codes; code != http.StatusOK {
			t.Errorf("a call got %d", code)
		}
	}
	for i, be := range tbs {
		if n := conns[i].opened.Load() - opened[i]; n != 0 || conns[i].open.Load() != 1 {
			t.Errorf("%s: %d connections opened for 4 calls and %d open, want them all on the one open", be.Name, n, conns[i].open.Load())
		}
	}
	protos.Range(func(k, _ any) bool {
		if k != "HTTP/2.0" {
			t.Errorf("a replica was spoken to in %v", k)
		}
		return true
	})

	// An HTTP/1.1 client is translated.
	code, _, _ := get(t, http.DefaultClient, "http://"+addr+"/")
	if code != http.StatusOK {
		t.Errorf("HTTP/1.1 through h2c: %d", code)
	}
}

// TestReadAheadKeepsTrailers: a response read ahead of the client (it has
// a Content-Length) still brings its trailers, which HTTP/2 replicas may
// send after any body.
func TestReadAheadKeepsTrailers(t *testing.T) {
	const size = 200 << 10
	srv := newH2CServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Sum")
		w.Header().Set("Content-Length", strconv.Itoa(size))
		_, _ = w.Write([]byte(strings.Repeat("a", size)))
		w.Header().Set("X-Sum", "97x"+strconv.Itoa(size))
	}))
	be := NewBackend(1, "replica-1", srv.Listener.Addr().String())
	bal, addr := newServedBalancer(t, testOptions(func(o *Options) { o.UpstreamH2C = true }), be)
	resp, err := h2cClient().Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	// The read-ahead holds the body in the proxy's budget until it is sent.
	if bal.Stats().MemoryBuffered == 0 {
		t.Log("the response was not read ahead (it may have been sent already)")
	}
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil || n != size {
		t.Fatalf("read %d bytes, %v", n, err)
	}
	if got := resp.Trailer.Get("X-Sum"); got != "97x"+strconv.Itoa(size) {
		t.Errorf("trailer X-Sum = %q (trailers %v)", got, resp.Trailer)
	}
}

// TestUpgradeRefusedOverH2C: h2c has no Upgrade; the proxy says so rather
// than pass a request the transport refuses as if the replica failed.
func TestUpgradeRefusedOverH2C(t *testing.T) {
	srv := newH2CServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	be := NewBackend(1, "replica-1", srv.Listener.Addr().String())
	bal, addr := newServedBalancer(t, testOptions(func(o *Options) { o.UpstreamH2C = true }), be)
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/ws", nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotImplemented || errorBody(t, resp, body) != errUpgradeOverH2C {
		t.Errorf("upgrade over h2c: %d %s", resp.StatusCode, body)
	}
	if be.Errors() != 0 || bal.Stats().Failed != 0 {
		t.Error("the refused upgrade counted against the replica")
	}
}

// TestH2ClientGoneCancelsItsCalls: a gRPC client that closes its
// connection has its calls cancelled on the replicas.
func TestH2ClientGoneCancelsItsCalls(t *testing.T) {
	be := newGRPCBackend(t, 1)
	_, addr := newServedBalancer(t, testOptions(func(o *Options) { o.UpstreamH2C = true }), be.Backend)
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	client := healthpb.NewHealthClient(cc)
	errc := make(chan error, 2)
	for range 2 {
		go func() {
			_, err := client.Check(context.Background(), &healthpb.HealthCheckRequest{Service: "hold"})
			errc <- err
		}()
	}
	for range 2 {
		<-be.health.arrived
	}
	cc.Close()
	for range 2 {
		<-errc
	}
	testutil.WaitFor(t, 5*time.Second, "the replica's calls to be cancelled", func() bool {
		return be.health.held.Load() == 0 && be.InFlight() == 0
	})
}

package balancer

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/mattingctl/mattingctl/internal/testutil"
)

func TestSummary(t *testing.T) {
	var before, now snapshot
	if s := summary(before, now, 10*time.Second); s != "" {
		t.Errorf("summary of nothing = %q, want none", s)
	}
	now.rejected[reasonPredictedWait] = 63
	now.rejected[reasonQueueFull] = 31
	want := "rejected 94 requests in the last 10s: queue full (31), predicted wait over queue timeout (63)"
	if s := summary(before, now, 10*time.Second); s != want {
		t.Errorf("summary = %q\nwant      %q", s, want)
	}
	before = now
	now.badGateway, now.gatewayTimeout = 2, 1
	now.rejected[reasonNoBackend] = 1
	want = "rejected 1 request in the last 10s: no ready replica (1); " +
		"failed 3 requests in the last 10s: 502 no answer from a replica (2), 504 no answer within the upstream timeout (1)"
	if s := summary(before, now, 10*time.Second); s != want {
		t.Errorf("summary = %q\nwant      %q", s, want)
	}
	before = now
	now.brokenOff[sendTimeout] = 16
	now.brokenOff[upstreamTimeout] = 1
	want = "broke off 17 responses in the last 10s: client took nothing for --send-timeout (16), replica sent nothing for --upstream-timeout (1)"
	if s := summary(before, now, 10*time.Second); s != want {
		t.Errorf("summary = %q\nwant      %q", s, want)
	}
}

func TestSummaryOfPoisonAndClients(t *testing.T) {
	var before, now snapshot
	now.poisoned, now.quarantineHits = 1, 4
	now.limited[limitUploads], now.limited[limitSlow] = 7, 2
	now.rapidResets = 1
	want := "refused 9 requests in the last 10s: client address over --max-client-uploads (7), upload slower than --min-upload-rate (2); " +
		"failed 5 requests in the last 10s: 502 request broke replicas twice (1), 502 request quarantined (4); " +
		"closed 1 client connection in the last 10s that cancelled most of their requests as soon as they sent them (HTTP/2 rapid reset)"
	if s := summary(before, now, 10*time.Second); s != want {
		t.Errorf("summary = %q\nwant      %q", s, want)
	}
}

func TestRetrySummary(t *testing.T) {
	var before, now snapshot
	if s := retrySummary(before, now, 10*time.Second); s != "" {
		t.Errorf("retry summary of nothing = %q", s)
	}
	now.retries[busy], now.retries[reset], now.retries[dropped] = 50, 7, 1
	before.retries[busy] = 10
	want := "retried 48 requests in the last 10s: replica busy (40), reset by replica (7), replica died (1)"
	if s := retrySummary(before, now, 10*time.Second); s != want {
		t.Errorf("retry summary = %q\nwant            %q", s, want)
	}
}

// TestSummaryLogged: while requests are rejected, a warning says how many
// and why once per interval; when none are, nothing is logged.
func TestSummaryLogged(t *testing.T) {
	var out testutil.SyncBuffer
	logger := hclog.New(&hclog.LoggerOptions{Output: &out, Level: hclog.Warn})
	bal, srv := newTestBalancer(t, testOptions(func(o *Options) { o.Logger = logger })) // no backend: every request is rejected
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { defer close(done); bal.summarize(200*time.Millisecond, stop) }()
	defer func() { close(stop); <-done }()
	for range 3 {
		if a := send(srv.Client(), srv.URL); a.code != http.StatusServiceUnavailable {
			t.Fatalf("answer %+v, want 503", a)
		}
	}
	testutil.WaitFor(t, settle, "the summary line", func() bool {
		return strings.Contains(out.String(), "rejected 3 requests in the last 200ms: no ready replica (3)")
	})
	lines := strings.Count(out.String(), "\n")
	time.Sleep(500 * time.Millisecond) // two more intervals with nothing to say
	if n := strings.Count(out.String(), "\n"); n != lines {
		t.Errorf("logged while nothing was rejected:\n%s", out.String())
	}
}

// TestBusyRetriesLogged: retries of busy replicas, logged at debug one by
// one, are summed up at info once per interval.
func TestBusyRetriesLogged(t *testing.T) {
	var out testutil.SyncBuffer
	logger := hclog.New(&hclog.LoggerOptions{Output: &out, Level: hclog.Info})
	be := NewBackend(1, "replica-1", closedAddr(t)) // refuses, while alive: busy
	be.Alive = func() bool { return true }
	bal, srv := newTestBalancer(t, testOptions(func(o *Options) {
		o.Logger, o.Retries, o.QueueTimeout = logger, 2, new(300*time.Millisecond)
	}), be)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { defer close(done); bal.summarize(200*time.Millisecond, stop) }()
	defer func() { close(stop); <-done }()
	if a := send(srv.Client(), srv.URL); a.code != http.StatusServiceUnavailable {
		t.Fatalf("answer %+v, want 503 after the queue timeout", a)
	}
	testutil.WaitFor(t, settle, "the retry summary", func() bool {
		return strings.Contains(out.String(), "[INFO]  retried ") && strings.Contains(out.String(), "replica busy (")
	})
	if strings.Contains(out.String(), "replica did not answer") {
		t.Errorf("a busy replica's refusal logged one by one at info:\n%s", out.String())
	}
}

type recorded struct {
	replica string
	code    int
}

type recorder struct {
	mu  sync.Mutex
	got []recorded
}

func (r *recorder) Observe(replica string, code int, _ time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, recorded{replica, code})
}

func (r *recorder) list() []recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]recorded(nil), r.got...)
}

// TestClientGoneMidStreamIs499: a client that disconnects while a streamed
// response is being written is recorded as 499, not 0; a replica that
// breaks off its response while the client is there leaves the status the
// client got.
func TestClientGoneMidStreamIs499(t *testing.T) {
	be := newTestBackend(t, 1, func(w http.ResponseWriter, r *http.Request) {
		for i := 0; ; i++ {
			if r.URL.Query().Get("die") != "" && i == 3 {
				panic(http.ErrAbortHandler) // the replica breaks off
			}
			if _, err := fmt.Fprintf(w, "chunk %d\n", i); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	})
	rec := &recorder{}
	_, srv := newTestBalancer(t, testOptions(func(o *Options) { o.Observer = rec }), be.Backend)

	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(conn, "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(conn)
	if line, err := br.ReadString('\n'); err != nil || !strings.Contains(line, "200") {
		t.Fatalf("status line %q, %v", line, err)
	}
	conn.Close() // mid-stream
	testutil.WaitFor(t, settle, "the request recorded", func() bool { return len(rec.list()) == 1 })
	if got := rec.list()[0]; got != (recorded{"replica-1", StatusClientGone}) {
		t.Errorf("recorded %+v, want replica-1 and 499", got)
	}

	resp, err := srv.Client().Get(srv.URL + "/stream?die=1")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = bufio.NewReader(resp.Body).ReadString(0) // to the break
	resp.Body.Close()
	testutil.WaitFor(t, settle, "the second request recorded", func() bool { return len(rec.list()) == 2 })
	if got := rec.list()[1]; got != (recorded{"replica-1", http.StatusOK}) {
		t.Errorf("recorded %+v, want replica-1 and the 200 the client got", got)
	}
}

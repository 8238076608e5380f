package balancer

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/accesslog"
	"github.com/mattingctl/mattingctl/internal/testutil"
)

// records is an AccessLogger that keeps what it is told.
type records struct {
	mu   sync.Mutex
	recs []accesslog.Record
}

func (r *records) Log(rec accesslog.Record) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec)
}

// wait waits for n records and returns them.
func (r *records) wait(t *testing.T, n int) []accesslog.Record {
	t.Helper()
	testutil.WaitFor(t, settle, fmt.Sprintf("%d access log records", n), func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(r.recs) >= n
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.recs) != n {
		t.Fatalf("%d records, want %d: %+v", len(r.recs), n, r.recs)
	}
	return append([]accesslog.Record(nil), r.recs...)
}

// TestAccessLogRecord: an ordinary request's record has the request line,
// the client, the bytes each way, the replica and one attempt.
func TestAccessLogRecord(t *testing.T) {
	be := newTestBackend(t, 1, echo)
	rec := &records{}
	_, srv := newTestBalancer(t, testOptions(func(o *Options) { o.AccessLog = rec }), be.Backend)
	req, _ := http.NewRequest("POST", srv.URL+"/predict?model=a&n=1", strings.NewReader("0123456789"))
	req.Header.Set("User-Agent", "test-agent")
	req.Header.Set("Referer", "http://ref/")
	before := time.Now()
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	got := rec.wait(t, 1)[0]
	if got.Time.Before(before.Add(-time.Second)) || got.Time.After(time.Now()) {
		t.Errorf("Time %v is not when the request arrived (%v)", got.Time, before)
	}
	host, _, _ := net.SplitHostPort(got.Client)
	want := accesslog.Record{
		Time: got.Time, Client: got.Client, Method: "POST", Path: "/predict?model=a&n=1", Protocol: "HTTP/1.1",
		Referer: "http://ref/", UserAgent: "test-agent", Status: 200, BytesIn: 10, BytesOut: int64(len(body)),
		Duration: got.Duration, Queued: got.Queued, Replica: "replica-1", Attempts: 1,
	}
	if got != want || host != "127.0.0.1" {
		t.Errorf("record\n%+v\nwant\n%+v", got, want)
	}
	if got.Duration <= 0 || got.Queued < 0 || got.Queued > got.Duration {
		t.Errorf("Duration %v, Queued %v", got.Duration, got.Queued)
	}
}

// TestAccessLogOutcomes: the status, replica and attempts recorded are
// the ones the client saw and the tries made.
func TestAccessLogOutcomes(t *testing.T) {
	t.Run("retried: the replica that answered, 2 attempts", func(t *testing.T) {
		refusing := NewBackend(1, "replica-1", closedAddr(t))
		ok := newTestBackend(t, 2, nil)
		rec := &records{}
		_, srv := newTestBalancer(t, testOptions(func(o *Options) { o.Policy = &RoundRobin{}; o.Retries = 2; o.AccessLog = rec }), refusing, ok.Backend)
		if code, _, _ := get(t, srv.Client(), srv.URL+"/"); code != 200 {
			t.Fatalf("status %d", code)
		}
		got := rec.wait(t, 1)[0]
		if got.Status != 200 || got.Replica != "replica-2" || got.Attempts != 2 {
			t.Errorf("status %d, replica %q, attempts %d; want 200, replica-2, 2", got.Status, got.Replica, got.Attempts)
		}
	})
	t.Run("502: the replica tried last, every attempt", func(t *testing.T) {
		b1 := NewBackend(1, "replica-1", closedAddr(t))
		b2 := NewBackend(2, "replica-2", closedAddr(t))
		rec := &records{}
		_, srv := newTestBalancer(t, testOptions(func(o *Options) { o.Policy = &RoundRobin{}; o.Retries = 2; o.AccessLog = rec }), b1, b2)
		if code, _, _ := get(t, srv.Client(), srv.URL+"/"); code != 502 {
			t.Fatalf("status %d, want 502", code)
		}
		got := rec.wait(t, 1)[0]
		if got.Status != 502 || got.Attempts != 3 || got.Replica == "" {
			t.Errorf("status %d, replica %q, attempts %d; want 502, a replica, 3", got.Status, got.Replica, got.Attempts)
		}
	})
	t.Run("503 with no replica: none reached, no attempt", func(t *testing.T) {
		rec := &records{}
		_, srv := newTestBalancer(t, testOptions(func(o *Options) { o.AccessLog = rec }))
		code, _, body := get(t, srv.Client(), srv.URL+"/x")
		if code != 503 {
			t.Fatalf("status %d, want 503", code)
		}
		got := rec.wait(t, 1)[0]
		if got.Status != 503 || got.Replica != "" || got.Attempts != 0 || got.BytesOut != int64(len(body)) {
			t.Errorf("%+v; want 503, no replica, 0 attempts, %d bytes out", got, len(body))
		}
	})
	t.Run("503 queue full: the time queued", func(t *testing.T) {
		g := newGate()
		defer g.open()
		be := newTestBackend(t, 1, g.handler)
		rec := &records{}
		_, srv := newTestBalancer(t, testOptions(func(o *Options) {
			o.MaxInflight = 1
			o.Queue = 1
			o.QueueTimeout = new(300 * time.Millisecond)
			o.AccessLog = rec
		}), be.Backend)
		go func() {
			if resp, err := srv.Client().Get(srv.URL + "/held"); err == nil {
				resp.Body.Close()
			}
		}()
		g.waitArrivals(t, 1)
		if code, _, _ := get(t, srv.Client(), srv.URL+"/queued"); code != 503 {
			t.Fatalf("status %d, want 503", code)
		}
		got := rec.wait(t, 1)[0]
		if got.Status != 503 || got.Path != "/queued" || got.Queued < 200*time.Millisecond || got.Attempts != 0 {
			t.Errorf("%+v; want 503 for /queued after ~300ms queued", got)
		}
		g.open()
		rec.wait(t, 2)
	})
	t.Run("413: the bytes received", func(t *testing.T) {
		be := newTestBackend(t, 1, nil)
		rec := &records{}
		_, srv := newTestBalancer(t, testOptions(func(o *Options) { o.MaxBody = 100; o.AccessLog = rec }), be.Backend)
		// Chunked: the limit is found by reading.
		resp, err := srv.Client().Post(srv.URL+"/", "text/plain", io.LimitReader(zeros{}, 1000))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		got := rec.wait(t, 1)[0]
		if got.Status != 413 || got.BytesIn < 100 || got.Attempts != 0 {
			t.Errorf("%+v; want 413, at least 100 bytes in, 0 attempts", got)
		}
	})
	t.Run("499: the client went away", func(t *testing.T) {
		g := newGate()
		defer g.open()
		be := newTestBackend(t, 1, g.handler)
		rec := &records{}
		_, srv := newTestBalancer(t, testOptions(func(o *Options) { o.AccessLog = rec }), be.Backend)
		conn, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprint(conn, "GET /held HTTP/1.1\r\nHost: x\r\n\r\n")
		g.waitArrivals(t, 1)
		conn.Close() // a FIN is enough (clientconn.go)
		got := rec.wait(t, 1)[0]
		if got.Status != StatusClientGone || got.Replica != "replica-1" || got.Attempts != 1 || got.BytesOut != 0 {
			t.Errorf("%+v; want 499 from replica-1, nothing sent", got)
		}
	})
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// TestAccessLogUpgradeAtAnswer: an upgrade is logged with 101 when it is
// answered, while its tunnel is still open.
func TestAccessLogUpgradeAtAnswer(t *testing.T) {
	be := tunnelBackend(t)
	rec := &records{}
	_, srv := newTestBalancer(t, testOptions(func(o *Options) { o.AccessLog = rec }), be.Backend)
	conn, code := openTunnel(t, srv.Listener.Addr().String())
	if code != http.StatusSwitchingProtocols {
		t.Fatalf("status %d, want 101", code)
	}
	got := rec.wait(t, 1)[0]
	if got.Status != 101 || got.Replica != "replica-1" || got.Attempts != 1 || got.Path != "/ws" {
		t.Errorf("%+v; want 101 for /ws from replica-1", got)
	}
	conn.Close()
	// The tunnel's end logs nothing more. Close returns once every
	// handler has.
	srv.Close()
	rec.wait(t, 1)
}

// blockedDst is an io.Writer that blocks until released, as a disk that
// stopped answering does.
type blockedDst struct {
	release chan struct{}
	entered chan struct{}
	once    sync.Once
}

func (d *blockedDst) Write(p []byte) (int, error) {
	d.once.Do(func() { close(d.entered) })
	<-d.release
	return len(p), nil
}

// TestAccessLogSlowDiskNeverSlowsRequests: with the access log's writer
// blocked in Write, requests are answered as fast as with no access log,
// and the lines that do not fit the queue are dropped and counted.
func TestAccessLogSlowDiskNeverSlowsRequests(t *testing.T) {
	const n = 2000
	run := func(alog AccessLogger) time.Duration {
		be := newTestBackend(t, 1, nil)
		_, srv := newTestBalancer(t, testOptions(func(o *Options) { o.AccessLog = alog }), be.Backend)
		c := srv.Client()
		c.Transport.(*http.Transport).MaxIdleConnsPerHost = 8
		c.Timeout = 10 * time.Second // a request held up by the log fails
		// Warm the connections up.
		get(t, c, srv.URL+"/")
		start := time.Now()
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < n; i += 8 {
					resp, err := c.Get(srv.URL + "/")
					if err != nil {
						t.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						t.Errorf("status %d", resp.StatusCode)
					}
				}
			}()
		}
		wg.Wait()
		return time.Since(start)
	}
	dst := &blockedDst{release: make(chan struct{}), entered: make(chan struct{})}
	defer close(dst.release)
	l := accesslog.New(accesslog.Options{Path: accesslog.Stdout, Stdout: dst, Queue: 64, FlushEvery: time.Millisecond})
	if err := l.Start(); err != nil {
		t.Fatal(err)
	}
	defer l.Close(0)
	l.Log(accesslog.Record{})
	<-dst.entered // blocked from now on
	without := run(nil)
	blocked := run(l)
	t.Logf("%d requests: %s without an access log, %s with its writer blocked; %d lines dropped", n, without, blocked, l.Dropped())
	// Generous for a shared machine: a request waiting on the writer would
	// take seconds in all.
	if blocked > 3*without+time.Second {
		t.Errorf("requests took %s with the writer blocked, %s without", blocked, without)
	}
	// A request's line is logged as its handler ends, which may be just
	// after its client has the answer: wait for the last.
	want := uint64(n + 1 - 64)
	testutil.WaitFor(t, 5*time.Second, "every line past the queue counted dropped", func() bool { return l.Dropped() >= want })
	if got := l.Dropped(); got != want {
		t.Errorf("dropped %d, want %d (all but the queue's 64)", got, want)
	}
}

// BenchmarkAccessLog proxies small GETs with and without an access log
// (to a file); allocs/op shows the per-request cost of the record.
func BenchmarkAccessLog(b *testing.B) {
	for _, on := range []bool{false, true} {
		b.Run(map[bool]string{false: "off", true: "file"}[on], func(b *testing.B) {
			opts := testOptions(func(o *Options) { o.MaxInflight = 8; o.Queue = 1024 })
			if on {
				l := accesslog.New(accesslog.Options{Path: b.TempDir() + "/access.log"})
				if err := l.Start(); err != nil {
					b.Fatal(err)
				}
				defer func() {
					l.Close(5 * time.Second)
					b.ReportMetric(float64(l.Dropped()), "dropped")
				}()
				opts.AccessLog = l
			}
			bal := New(opts)
			bal.Add(newBenchBackend(b))
			srv := newBenchServer(b, bal)
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := client.Get(srv)
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			})
		})
	}
}

package balancer

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/testutil"
)

// testBackend is a Backend with a real HTTP server behind it that counts
// the requests reaching it and names itself in an X-Backend header.
type testBackend struct {
	*Backend
	srv  *httptest.Server
	hits atomic.Int32
}

func newTestBackend(t *testing.T, id int, h http.HandlerFunc) *testBackend {
	t.Helper()
	tb := &testBackend{}
	name := "replica-" + strconv.Itoa(id)
	tb.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tb.hits.Add(1)
		w.Header().Set("X-Backend", name)
		if h == nil {
			fmt.Fprint(w, "ok from "+name)
			return
		}
		h(w, r)
	}))
	t.Cleanup(tb.srv.Close)
	tb.Backend = NewBackend(id, name, tb.srv.Listener.Addr().String())
	return tb
}

// testOptions returns the options a test starts from, with set applied
// when not nil: DefaultLimits with admission and retries off (no cap on
// in-flight requests, no queue, no queue timeout, no retry, no
// quarantine, no client address's share or minimum upload rate), so that
// a test turns on only the limits it is about.
func testOptions(set func(*Options)) Options {
	o := Options{Limits: DefaultLimits()}
	o.MaxInflight, o.AdaptiveInflight, o.Queue, o.QueueTimeout, o.Retries = 0, InflightBounds{}, 0, new(time.Duration(0)), 0
	o.Quarantine, o.MaxClientUploads, o.MaxClientBuffer, o.MinUploadRate = 0, 0, new(int64(0)), 0
	if set != nil {
		set(&o)
	}
	return o
}

// newTestBalancer starts a balancer behind an httptest server with
// backends in rotation.
func newTestBalancer(t *testing.T, opts Options, backends ...*Backend) (*Balancer, *httptest.Server) {
	t.Helper()
	bal := New(opts)
	for _, b := range backends {
		bal.Add(b)
	}
	srv := httptest.NewUnstartedServer(bal)
	srv.Config.ConnContext = connContext // as Serve's server has it
	srv.Start()
	t.Cleanup(func() {
		srv.Close()
		bal.transport.CloseIdleConnections()
	})
	return bal, srv
}

// echoed is what the echo handler saw of a request.
type echoed struct {
	Method           string
	RequestURI       string
	Body             []byte
	ContentLength    int64
	TransferEncoding []string
	Header           http.Header
}

func echo(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(echoed{
		Method:           r.Method,
		RequestURI:       r.RequestURI,
		Body:             body,
		ContentLength:    r.ContentLength,
		TransferEncoding: r.TransferEncoding,
		Header:           r.Header,
	})
}

// gate holds the requests reaching its handler until it is opened.
type gate struct {
	arrived chan struct{}
	release chan struct{}
	once    sync.Once
}

func newGate() *gate {
	return &gate{arrived: make(chan struct{}, 1000), release: make(chan struct{})}
}

func (g *gate) handler(w http.ResponseWriter, r *http.Request) {
	g.arrived <- struct{}{}
	select {
	case <-g.release:
		fmt.Fprint(w, "released")
	case <-r.Context().Done():
	}
}

// open releases every held request, now and later; it may be called more
// than once, so tests defer it to clean up after a failure.
func (g *gate) open() { g.once.Do(func() { close(g.release) }) }

// waitArrivals waits for n more requests to reach the handler.
func (g *gate) waitArrivals(t *testing.T, n int) {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for i := range n {
		select {
		case <-g.arrived:
		case <-deadline:
			t.Fatalf("only %d of %d requests reached the backend", i, n)
		}
	}
}

// settle bounds the wait for the balancer's counters to settle. The
// counters a request's release updates change just after its response is
// written, so a client may see the response first: tests poll them with
// testutil.WaitFor rather than read them once.
const settle = 15 * time.Second

// waitClosed fails unless ch is closed within d.
func waitClosed(t *testing.T, ch <-chan struct{}, d time.Duration, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(d):
		t.Fatalf("%s: not closed within %s", what, d)
	}
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// get sends GET url and returns the status, the X-Backend header and the body.
func get(t *testing.T, c *http.Client, url string) (int, string, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading body: %v", url, err)
	}
	return resp.StatusCode, resp.Header.Get("X-Backend"), string(body)
}

// closedAddr returns a 127.0.0.1 address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(testutil.FreePort(t)))
}

// errorBody decodes the proxy's JSON error answer.
func errorBody(t *testing.T, resp *http.Response, body []byte) string {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	if cl := resp.Header.Get("Content-Length"); cl != strconv.Itoa(len(body)) {
		t.Errorf("Content-Length = %q for a body of %d bytes", cl, len(body))
	}
	var e struct{ Error string }
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("error body %q is not JSON: %v", body, err)
	}
	return e.Error
}

func newBenchBackend(tb testing.TB) *Backend {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = w.Write([]byte(`{"result":"ok"}`))
	}))
	tb.Cleanup(srv.Close)
	return NewBackend(1, "replica-1", srv.Listener.Addr().String())
}

func newBenchServer(tb testing.TB, h http.Handler) string {
	srv := httptest.NewServer(h)
	tb.Cleanup(srv.Close)
	return srv.URL
}

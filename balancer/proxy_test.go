package balancer

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/testutil"
)

func TestForwardsRequestUnchanged(t *testing.T) {
	be := newTestBackend(t, 1, echo)
	_, srv := newTestBalancer(t, testOptions(nil), be.Backend)
	binary := string([]byte{0, 1, 2, 0xff, '\n', 0})

	tests := []struct {
		method string
		uri    string // path and query
		body   string
	}{
		{http.MethodGet, "/v1/models", ""},
		{http.MethodGet, "/v1/models?x=1&y=a+b&y=2&z=%20%26", ""},
		{http.MethodPost, "/predict", `{"image":"aGVsbG8="}`},
		{http.MethodPut, "/a%2Fb/c%20d?q=1", "put body"},
		{http.MethodPatch, "/items/7", binary},
		{http.MethodDelete, "/items/7?force=true", ""},
		{"PROPFIND", "/dav/", "<propfind/>"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.uri, func(t *testing.T) {
			var body io.Reader
			if tt.body != "" {
				body = strings.NewReader(tt.body)
			}
			req, err := http.NewRequest(tt.method, srv.URL+tt.uri, body)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("X-Custom", "kept")
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			var got echoed
			if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
				t.Fatal(err)
			}
			if got.Method != tt.method || got.RequestURI != tt.uri || string(got.Body) != tt.body {
				t.Errorf("backend saw %s %s body %q, want %s %s body %q", got.Method, got.RequestURI, got.Body, tt.method, tt.uri, tt.body)
			}
			if got.ContentLength != int64(len(tt.body)) {
				t.Errorf("backend saw Content-Length %d, want %d", got.ContentLength, len(tt.body))
			}
			if h := got.Header.Get("X-Custom"); h != "kept" {
				t.Errorf("X-Custom = %q, want kept", h)
			}
		})
	}
	testutil.WaitFor(t, settle, fmt.Sprintf("Requests() = %d", len(tests)), func() bool { return be.Requests() == uint64(len(tests)) })
	if n := be.Errors(); n != 0 {
		t.Errorf("Errors() = %d, want 0", n)
	}
}

func TestXForwardedFor(t *testing.T) {
	be := newTestBackend(t, 1, echo)
	_, srv := newTestBalancer(t, testOptions(nil), be.Backend)
	tests := []struct {
		name     string
		incoming []string
		want     string
	}{
		{"none", nil, "127.0.0.1"},
		{"one", []string{"10.0.0.1"}, "10.0.0.1, 127.0.0.1"},
		{"list", []string{"10.0.0.1, 10.0.0.2"}, "10.0.0.1, 10.0.0.2, 127.0.0.1"},
		{"two headers", []string{"10.0.0.1", "10.0.0.2"}, "10.0.0.1, 10.0.0.2, 127.0.0.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, srv.URL+"/", nil)
			req.Header["X-Forwarded-For"] = tt.incoming
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var got echoed
			if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
				t.Fatal(err)
			}
			if xff := got.Header["X-Forwarded-For"]; len(xff) != 1 || xff[0] != tt.want {
				t.Errorf("backend saw X-Forwarded-For %q, want [%q]", xff, tt.want)
			}
			if p := got.Header.Get("X-Forwarded-Proto"); p != "http" {
				t.Errorf("X-Forwarded-Proto = %q, want http", p)
			}
			if h, want := got.Header.Get("X-Forwarded-Host"), strings.TrimPrefix(srv.URL, "http://"); h != want {
				t.Errorf("X-Forwarded-Host = %q, want %q", h, want)
			}
		})
	}
}

// chunked hides a reader's length so the client sends it chunked.
type chunked struct{ io.Reader }

func TestMaxBody(t *testing.T) {
	const limit = 1000
	be := newTestBackend(t, 1, echo)
	bal := New(testOptions(func(o *Options) { o.MaxBody = limit }))
	bal.Add(be.Backend)
	// Record how the body reached the proxy, to be sure chunked was chunked.
	var incomingTE atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		incomingTE.Store(r.TransferEncoding)
		bal.ServeHTTP(w, r)
	}))
	t.Cleanup(func() { srv.Close(); bal.transport.CloseIdleConnections() })
	tests := []struct {
		name       string
		size       int
		chunked    bool
		wantStatus int
		wantError  string
	}{
		{"empty", 0, false, http.StatusOK, ""},
		{"under", limit - 1, false, http.StatusOK, ""},
		{"exactly at limit", limit, false, http.StatusOK, ""},
		{"chunked exactly at limit", limit, true, http.StatusOK, ""},
		{"chunked small", 10, true, http.StatusOK, ""},
		{"one over, declared", limit + 1, false, http.StatusRequestEntityTooLarge, "request body of 1001 bytes is over the limit of 1000 bytes"},
		{"far over, declared", 50 * limit, false, http.StatusRequestEntityTooLarge, "request body of 50000 bytes is over the limit of 1000 bytes"},
		{"one over, chunked", limit + 1, true, http.StatusRequestEntityTooLarge, "request body is over the limit of 1000 bytes"},
		{"over, chunked", 1500, true, http.StatusRequestEntityTooLarge, "request body is over the limit of 1000 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hits := be.hits.Load()
			payload := bytes.Repeat([]byte("0123456789"), tt.size/10+1)[:tt.size]
			var body io.Reader = bytes.NewReader(payload)
			if tt.chunked {
				body = chunked{body}
			}
			req, _ := http.NewRequest(http.MethodPost, srv.URL+"/upload", body)
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if te := incomingTE.Load().([]string); tt.chunked != slices.Equal(te, []string{"chunked"}) {
				t.Fatalf("the proxy received Transfer-Encoding %q; chunked: %v", te, tt.chunked)
			}
			got, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status %d, want %d (body %q)", resp.StatusCode, tt.wantStatus, got)
			}
			if tt.wantError != "" {
				if msg := errorBody(t, resp, got); msg != tt.wantError {
					t.Errorf("error %q, want %q", msg, tt.wantError)
				}
				if n := be.hits.Load() - hits; n != 0 {
					t.Errorf("the backend saw %d requests; an oversized one must not reach it", n)
				}
				return
			}
			var e echoed
			if err := json.Unmarshal(got, &e); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(e.Body, payload) {
				t.Errorf("backend got %d body bytes, want the %d sent", len(e.Body), len(payload))
			}
			// The proxy buffers the body, so the backend always sees its length.
			if e.ContentLength != int64(tt.size) || len(e.TransferEncoding) != 0 {
				t.Errorf("backend saw Content-Length %d, Transfer-Encoding %q; want %d and none", e.ContentLength, e.TransferEncoding, tt.size)
			}
		})
	}
}

func TestClientTimeout(t *testing.T) {
	t.Run("silent client gets 408", func(t *testing.T) {
		t.Parallel()
		be := newTestBackend(t, 1, echo)
		_, srv := newTestBalancer(t, testOptions(func(o *Options) { o.ClientTimeout = 300 * time.Millisecond }), be.Backend)
		conn, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(15 * time.Second))
		if _, err := io.WriteString(conn, "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("reading the response: %v", err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestTimeout {
			t.Fatalf("status %d, want 408 (body %q)", resp.StatusCode, body)
		}
		if msg, want := errorBody(t, resp, body), "client sent no body data for 300ms"; msg != want {
			t.Errorf("error %q, want %q", msg, want)
		}
		if n := be.hits.Load(); n != 0 {
			t.Errorf("the backend saw %d requests, want 0", n)
		}
	})

	// The timeout bounds each pause in an upload, not the whole upload: a
	// body trickling in for longer than the timeout, with short pauses,
	// must get through.
	t.Run("slow steady upload passes", func(t *testing.T) {
		t.Parallel()
		const timeout = 600 * time.Millisecond
		be := newTestBackend(t, 1, echo)
		_, srv := newTestBalancer(t, testOptions(func(o *Options) { o.ClientTimeout = timeout }), be.Backend)
		const pieces, every = 30, 40 * time.Millisecond
		piece := strings.Repeat("p", 100)
		pr, pw := io.Pipe()
		go func() {
			tick := time.NewTicker(every)
			defer tick.Stop()
			for range pieces {
				<-tick.C
				if _, err := io.WriteString(pw, piece); err != nil {
					return
				}
			}
			pw.Close()
		}()
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/upload", pr)
		req.ContentLength = int64(pieces * len(piece))
		start := time.Now()
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d after %s, want 200 (body %q)", resp.StatusCode, time.Since(start).Round(time.Millisecond), body)
		}
		var e echoed
		if err := json.Unmarshal(body, &e); err != nil {
			t.Fatal(err)
		}
		if len(e.Body) != pieces*len(piece) {
			t.Errorf("backend got %d bytes, want %d", len(e.Body), pieces*len(piece))
		}
		if d := time.Since(start); d < timeout {
			t.Errorf("upload took %s, under the timeout of %s: the test proves nothing", d, timeout)
		}
	})
}

func TestNoBackend(t *testing.T) {
	const wantMsg = "no ready replica: all replicas are starting, restarting or stopped"
	be := newTestBackend(t, 1, nil)
	bal, srv := newTestBalancer(t, testOptions(nil))

	check := func(t *testing.T, method string, body io.Reader) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+"/predict", body)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		got, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("status %d, want 503 (body %q)", resp.StatusCode, got)
		}
		if ra := resp.Header.Get("Retry-After"); ra != "1" {
			t.Errorf("Retry-After = %q, want 1", ra)
		}
		if msg := errorBody(t, resp, got); msg != wantMsg {
			t.Errorf("error %q, want %q", msg, wantMsg)
		}
	}
	t.Run("never added", func(t *testing.T) { check(t, http.MethodGet, nil) })
	t.Run("with a body", func(t *testing.T) { check(t, http.MethodPost, strings.NewReader("payload")) })
	t.Run("all removed", func(t *testing.T) {
		bal.Add(be.Backend)
		if code, _, _ := get(t, srv.Client(), srv.URL); code != http.StatusOK {
			t.Fatalf("status %d with a backend in rotation", code)
		}
		<-bal.Remove(be.Backend)
		check(t, http.MethodGet, nil)
	})
	if n := be.hits.Load(); n != 1 {
		t.Errorf("the backend saw %d requests, want 1", n)
	}
}

func TestBackendDown(t *testing.T) {
	be := NewBackend(3, "replica-3", closedAddr(t))
	_, srv := newTestBalancer(t, testOptions(nil), be)

	for i := range 2 {
		if i > 0 {
			// The only backend stays in rotation, unreported: ejecting it
			// would leave none (the panic threshold).
			select {
			case <-be.Failed():
				t.Fatal("the only backend was ejected")
			default:
			}
		}
		resp, err := srv.Client().Get(srv.URL + "/predict")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadGateway {
			t.Fatalf("status %d, want 502 (body %q)", resp.StatusCode, body)
		}
		msg := errorBody(t, resp, body)
		if !strings.HasPrefix(msg, "replica-3 did not answer: ") || !strings.Contains(msg, "connection refused") {
			t.Errorf("error %q, want it to name replica-3 and the refused connection", msg)
		}
		if n := be.Errors(); n != uint64(i+1) {
			t.Errorf("Errors() = %d after %d failed requests", n, i+1)
		}
	}
	testutil.WaitFor(t, settle, "Requests() = 2 and InFlight() = 0", func() bool { return be.Requests() == 2 && be.InFlight() == 0 })
}

func TestUpstreamTimeout(t *testing.T) {
	g := newGate()
	defer g.open()
	be := newTestBackend(t, 2, g.handler)
	_, srv := newTestBalancer(t, testOptions(func(o *Options) { o.UpstreamTimeout = 300 * time.Millisecond }), be.Backend)
	start := time.Now()
	resp, err := srv.Client().Get(srv.URL + "/slow")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusGatewayTimeout {
		t.Fatalf("status %d after %s, want 504 (body %q)", resp.StatusCode, time.Since(start), body)
	}
	if msg := errorBody(t, resp, body); !strings.HasPrefix(msg, "replica-2 did not answer: ") {
		t.Errorf("error %q, want it to name replica-2", msg)
	}
	if be.Errors() != 1 {
		t.Errorf("Errors() = %d, want 1", be.Errors())
	}
	testutil.WaitFor(t, settle, "InFlight() = 0", func() bool { return be.InFlight() == 0 })
}

func TestBackendStatusCounted(t *testing.T) {
	tests := []struct {
		status     int
		wantErrors uint64
	}{
		{http.StatusOK, 0},
		{http.StatusNoContent, 0},
		{http.StatusBadRequest, 0},
		{http.StatusNotFound, 0},
		{http.StatusTooManyRequests, 0},
		{http.StatusInternalServerError, 1},
		{http.StatusBadGateway, 1},
		{http.StatusServiceUnavailable, 1},
	}
	for _, tt := range tests {
		t.Run(http.StatusText(tt.status), func(t *testing.T) {
			be := newTestBackend(t, 1, func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tt.status)
				if tt.status != http.StatusNoContent {
					fmt.Fprintf(w, "backend says %d", tt.status)
				}
			})
			_, srv := newTestBalancer(t, testOptions(nil), be.Backend)
			code, name, body := get(t, srv.Client(), srv.URL+"/x")
			if code != tt.status || name != "replica-1" {
				t.Fatalf("status %d from %q, want %d from replica-1", code, name, tt.status)
			}
			if want := fmt.Sprintf("backend says %d", tt.status); tt.status != http.StatusNoContent && body != want {
				t.Errorf("body %q, want the backend's %q", body, want)
			}
			// Errors is counted before the response is sent; Requests after.
			if be.Errors() != tt.wantErrors {
				t.Errorf("Errors() = %d, want %d", be.Errors(), tt.wantErrors)
			}
			testutil.WaitFor(t, settle, "Requests() = 1", func() bool { return be.Requests() == 1 })
		})
	}
}

func TestStreaming(t *testing.T) {
	tests := []struct {
		name          string
		contentLength bool // declared up front, so nothing forces a flush but the proxy's own setting
	}{
		{"chunked", false},
		{"with Content-Length", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const first, second = "first chunk\n", "second chunk\n"
			release := make(chan struct{})
			unblock := sync.OnceFunc(func() { close(release) })
			defer unblock()
			be := newTestBackend(t, 1, func(w http.ResponseWriter, r *http.Request) {
				if tt.contentLength {
					w.Header().Set("Content-Length", fmt.Sprint(len(first)+len(second)))
				}
				fmt.Fprint(w, first)
				w.(http.Flusher).Flush()
				select {
				case <-release:
				case <-r.Context().Done():
					return
				}
				fmt.Fprint(w, second)
			})
			_, srv := newTestBalancer(t, testOptions(nil), be.Backend)

			type result struct {
				resp *http.Response
				line string
				err  error
			}
			got := make(chan result, 1)
			go func() {
				resp, err := srv.Client().Get(srv.URL + "/stream")
				if err != nil {
					got <- result{err: err}
					return
				}
				line, err := bufio.NewReader(resp.Body).ReadString('\n')
				got <- result{resp, line, err}
			}()
			var r result
			select {
			case r = <-got:
			case <-time.After(15 * time.Second):
				t.Fatal("the first chunk did not reach the client while the backend held the rest")
			}
			if r.err != nil {
				t.Fatal(r.err)
			}
			defer r.resp.Body.Close()
			if r.line != first {
				t.Fatalf("first line %q, want %q", r.line, first)
			}
			unblock()
			// ReadString used its own buffer; read the rest directly.
			rest, err := io.ReadAll(r.resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasSuffix(string(rest), second) {
				t.Errorf("rest %q, want it to end with %q", rest, second)
			}
		})
	}
}

func TestErrorBodyFormat(t *testing.T) {
	tests := []struct {
		status int
		msg    string
		want   string
	}{
		{http.StatusBadGateway, "replica-1 did not answer", `{"error":"replica-1 did not answer"}` + "\n"},
		{http.StatusRequestEntityTooLarge, `quote " and <tag>`, `{"error":"quote \" and \u003ctag\u003e"}` + "\n"},
	}
	for _, tt := range tests {
		rec := httptest.NewRecorder()
		writeError(rec, tt.status, tt.msg)
		if rec.Code != tt.status || rec.Body.String() != tt.want {
			t.Errorf("writeError(%d, %q) wrote %d %q, want %d %q", tt.status, tt.msg, rec.Code, rec.Body.String(), tt.status, tt.want)
		}
		h := rec.Result().Header
		if cl := h.Get("Content-Length"); cl != fmt.Sprint(len(tt.want)) {
			t.Errorf("Content-Length %s for %d bytes", cl, len(tt.want))
		}
		if !slices.Equal(h["Content-Type"], []string{"application/json"}) {
			t.Errorf("Content-Type %q", h["Content-Type"])
		}
	}
}

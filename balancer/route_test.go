package balancer

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestRouter: each request reaches the balancer of its route, the longest
// prefix first and a host before any prefix, with the prefix stripped
// where the route says so; one that matches none gets 404 listing the
// routes.
func TestRouter(t *testing.T) {
	path := func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte(r.URL.RequestURI())) }
	a, b, c := newTestBackend(t, 1, path), newTestBackend(t, 2, path), newTestBackend(t, 3, path)
	balA, balB, balC := New(testOptions(nil)), New(testOptions(nil)), New(testOptions(nil))
	balA.Add(a.Backend)
	balB.Add(b.Backend)
	balC.Add(c.Backend)
	routes := []Route{
		{Name: "matting", Prefix: "/matting/", StripPrefix: true, To: balA},
		{Name: "deep", Prefix: "/matting/v2/", To: balB},
		{Name: "ocr", Host: "ocr.example", To: balC},
	}
	if err := CheckRoutes(routes); err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	front, srv := newTestBalancer(t, testOptions(func(o *Options) { o.Observer = rec }))
	front.SetRouter(NewRouter(routes))
	t.Cleanup(func() {
		for _, bal := range []*Balancer{balA, balB, balC} {
			bal.transport.CloseIdleConnections()
		}
	})

	for _, tc := range []struct{ host, path, backend, seen string }{
		{"", "/matting/api/x?q=1", "replica-1", "/api/x?q=1"},
		{"", "/matting/a%2Fb", "replica-1", "/a%2Fb"},
		{"", "/matting", "replica-1", "/"},
		{"", "/matting/v2/run", "replica-2", "/matting/v2/run"},
		{"ocr.example:80", "/matting/api", "replica-3", "/matting/api"},
		{"OCR.example", "/", "replica-3", "/"},
		{"ocr.example.", "/x", "replica-3", "/x"},
	} {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+tc.path, nil)
		if tc.host != "" {
			req.Host = tc.host
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body := make([]byte, 256)
		n, _ := resp.Body.Read(body)
		resp.Body.Close()
		if got := resp.Header.Get("X-Backend"); got != tc.backend || string(body[:n]) != tc.seen {
			t.Errorf("Host %q %s reached %s as %q; want %s as %q", tc.host, tc.path, got, body[:n], tc.backend, tc.seen)
		}
	}

	code, _, body := get(t, srv.Client(), srv.URL+"/nope")
	if code != http.StatusNotFound || !strings.Contains(body, "no route for /nope") ||
		!strings.Contains(body, "/matting/ (matting), /matting/v2/ (deep), host:ocr.example (ocr)") {
		t.Errorf("unrouted: %d %s; want 404 listing the routes", code, body)
	}
	// Whole segments, as the client encoded them; no dot segment.
	for _, p := range []string{"/mattingx", "/m%61tting/x", "/matting%2Fx"} {
		if code, _, body := get(t, srv.Client(), srv.URL+p); code != http.StatusNotFound {
			t.Errorf("%s: %d %s; want 404", p, code, body)
		}
	}
	for _, p := range []string{"/matting/../v2/run", "/matting/%2e%2e/x"} {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/", nil)
		req.URL.Opaque = p // sent as it is, not cleaned
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: %d; want 400", p, resp.StatusCode)
		}
	}
	// The proxy's own answers are counted by the balancer that serves
	// the port: the unknown route, the three not under a prefix, and
	// the two with dot segments.
	// Observed after the answer is written: the last may still be on its way.
	codes := map[int]int{}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		clear(codes)
		for _, r := range rec.list() {
			codes[r.code]++
		}
		if codes[http.StatusNotFound] == 4 && codes[http.StatusBadRequest] == 2 || time.Now().After(deadline) {
			break
		}
	}
	if codes[http.StatusNotFound] != 4 || codes[http.StatusBadRequest] != 2 {
		t.Errorf("the front balancer observed %v; want 4 404s and 2 400s", codes)
	}
	if a.hits.Load()+b.hits.Load()+c.hits.Load() != 7 {
		t.Errorf("backends saw %d, %d, %d requests; want 7 in all", a.hits.Load(), b.hits.Load(), c.hits.Load())
	}
}

func TestCheckRoutes(t *testing.T) {
	for _, tc := range []struct {
		routes []Route
		want   string
	}{
		{[]Route{{Name: "a", Prefix: "a/"}}, `route "a/": want a path prefix starting with /`},
		{[]Route{{Name: "a", Prefix: "/x/"}, {Name: "b", Prefix: "/x/"}}, "services a and b have the same route /x/"},
		{[]Route{{Name: "a", Host: "h"}, {Name: "b", Host: "H"}}, "same route host:h"},
		{[]Route{{Name: "a", Host: "h:80"}}, "want a host name, without a port"},
		{[]Route{{Name: "a", Prefix: "/x"}, {Name: "b", Prefix: "/x/"}}, "services a and b have the same route /x/"},
		{[]Route{{Name: "a", Prefix: "/x%2F/"}}, "want a plain path prefix"},
		{[]Route{{Name: "a", Prefix: "/x/../y/"}}, "want a plain path prefix"},
		{[]Route{{Name: "a", Host: "h", StripPrefix: true}}, "strip_prefix needs a path prefix route"},
	} {
		err := CheckRoutes(tc.routes)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("CheckRoutes(%+v) = %v; want %q", tc.routes, err, tc.want)
		}
	}
}

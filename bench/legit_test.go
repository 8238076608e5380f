package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

func TestLegitLoadCountsAnswersFromItsOwnAddress(t *testing.T) {
	var n, wrongFrom, wrongBody atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if host, _, _ := net.SplitHostPort(r.RemoteAddr); host != legitFrom {
			wrongFrom.Add(1)
		}
		if b, _ := io.ReadAll(r.Body); len(b) != len(legitBody) {
			wrongBody.Add(1)
		}
		if n.Add(1)%4 == 0 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	l := startLegit(context.Background(), srv.URL+"/legit")
	time.Sleep(300 * time.Millisecond)
	r := l.finish()
	if again := l.finish(); again.sent != r.sent {
		t.Errorf("a second finish gave %d sent, the first %d", again.sent, r.sent)
	}
	if r.sent < 8 || r.failures["503"] == 0 || r.ok+int64(r.failures["503"]) != r.sent {
		t.Errorf("sent %d, ok %d, failures %v; want every request counted, a quarter of them 503", r.sent, r.ok, r.failures)
	}
	if p := r.percent(); p < 60 || p > 90 {
		t.Errorf("percent() = %.1f with a quarter answered 503", p)
	}
	if len(r.latencies) != int(r.ok) || r.percentile(50) <= 0 || r.percentile(50) > r.percentile(99) {
		t.Errorf("%d latencies for %d answered; p50 %s, p99 %s", len(r.latencies), r.ok, r.percentile(50), r.percentile(99))
	}
	if wrongFrom.Load() != 0 || wrongBody.Load() != 0 {
		t.Errorf("%d requests not from %s, %d without the 1 KB body", wrongFrom.Load(), legitFrom, wrongBody.Load())
	}
}

func TestByKind(t *testing.T) {
	for _, c := range []struct {
		in   map[string]int
		want string
	}{
		{nil, "none"},
		{map[string]int{"429": 125656, "408": 128}, "408: 128, 429: 125656"},
	} {
		if got := byKind(c.in); got != c.want {
			t.Errorf("byKind(%v) = %q, want %q", c.in, got, c.want)
		}
	}
}

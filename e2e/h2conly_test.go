package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestHTTP1ToH2COnlyReplica: a replica that speaks only h2c (a gRPC
// server), run without --upstream-protocol h2c and without --health (its
// port accepting TCP makes it ready), resets every HTTP/1.1 request. Each
// is answered 502 naming --upstream-protocol within a second. Before, each
// hung for the queue timeout, re-sent every 50 ms (603 times in 20 s).
func TestHTTP1ToH2COnlyReplica(t *testing.T) {
	in := start(t, 2, "--", fakemodel, "-h2c-only")
	in.waitReady(2)
	for i := range 3 {
		start := time.Now()
		code, body, err := postBody(t.Context(), in.url("/predict"), "{}")
		took := time.Since(start)
		if err != nil || code != http.StatusBadGateway || !strings.Contains(body, "--upstream-protocol h2c") {
			t.Errorf("request %d: %d %s (%v); want 502 naming --upstream-protocol", i+1, code, body, err)
		}
		if took > time.Second {
			t.Errorf("request %d answered after %s", i+1, took)
		}
	}
	if st := in.status(); st.Retried != 0 {
		t.Errorf("%d retries of requests the replicas cannot understand", st.Retried)
	}
}

package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestBatching: with --batch-path, 16 requests at once to 2 replicas of a
// GPU-like fakemodel reach them in batches, and each client gets the
// answer to its own input; one input that crashes the model's pass fails
// its batch, and alone it gets 502 while its neighbours get 200, within
// the poison budget.
func TestBatching(t *testing.T) {
	t.Parallel()
	in := start(t, 2, "--max-inflight", "8", "--retries", "2", "--batch-path", "/predict", "--batch-endpoint", "/batch",
		"--batch-wait", "100ms", "--", fakemodel, "-batch-cost", "20ms,2ms", "-poison", "POISON")
	in.waitReady(2)

	type reply struct {
		code int
		id   string
		size int
		body string
	}
	send := func(bodies []string) []reply {
		out := make([]reply, len(bodies))
		var wg sync.WaitGroup
		for i, body := range bodies {
			wg.Go(func() {
				code, answer, err := postBody(t.Context(), in.url("/predict"), body)
				if err != nil {
					out[i] = reply{body: err.Error()}
					return
				}
				var a struct {
					ID    string `json:"id"`
					Batch int    `json:"batch"`
				}
				_ = json.Unmarshal([]byte(answer), &a)
				out[i] = reply{code: code, id: a.ID, size: a.Batch, body: answer}
			})
		}
		wg.Wait()
		return out
	}

	var bodies []string
	for i := range 16 {
		bodies = append(bodies, fmt.Sprintf(`{"id":"r%d"}`, i))
	}
	batched := 0
	for i, r := range send(bodies) {
		if r.code != http.StatusOK || r.id != fmt.Sprintf("r%d", i) {
			t.Errorf("request %d: %d %s; want 200 with its own id", i, r.code, r.body)
		}
		if r.size > 1 {
			batched++
		}
	}
	if batched == 0 {
		t.Error("no request was answered from a batch of more than one")
	}

	bodies = bodies[:4]
	bodies[2] = `{"id":"bad","image":"POISON"}`
	for i, r := range send(bodies) {
		switch {
		case i == 2 && (r.code != http.StatusBadGateway || !strings.Contains(r.body, "reset by replica")):
			t.Errorf("the poison request: %d %s; want 502 naming the resets", r.code, r.body)
		case i != 2 && (r.code != http.StatusOK || r.id != fmt.Sprintf("r%d", i)):
			t.Errorf("request %d beside the poison: %d %s; want 200 with its own id", i, r.code, r.body)
		}
	}
	time.Sleep(500 * time.Millisecond) // any late delivery would show by now
	if n := strings.Count(in.stdout.String()+in.stderr.String(), poisonLine); n < 1 || n > 3 {
		t.Errorf("the poison input was delivered %d times; want at most --retries+1 = 3", n)
	}
}

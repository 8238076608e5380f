package balancer

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/testutil"
)

// batchServer is a model server with a batch endpoint, /batch, beside its
// single one, /predict. Each input is {"id": N}; each answer {"id": N,
// "batch": size of the call}. An input with "fail" set is answered
// {"error": ..., "status": 422}; one with "poison" set resets the
// connection, batched or alone, counted in poisoned.
type batchServer struct {
	*testBackend
	mu       sync.Mutex
	batches  []int // sizes of the batch calls, in order
	singles  atomic.Int32
	poisoned atomic.Int32
	noBatch  bool // /batch answers 404, as a server without it
}

type batchInput struct {
	ID     int  `json:"id"`
	Fail   bool `json:"fail,omitempty"`
	Poison bool `json:"poison,omitempty"`
}

func newBatchServer(t *testing.T, id int) *batchServer {
	s := &batchServer{}
	s.testBackend = newTestBackend(t, id, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		answer := func(in batchInput, size int) any {
			if in.Fail {
				return map[string]any{"error": fmt.Sprintf("input %d failed", in.ID), "status": 422}
			}
			return map[string]any{"id": in.ID, "batch": size}
		}
		switch r.URL.Path {
		case "/batch":
			if s.noBatch {
				http.NotFound(w, r)
				return
			}
			var ins []batchInput
			if err := json.Unmarshal(body, &ins); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			s.mu.Lock()
			s.batches = append(s.batches, len(ins))
			s.mu.Unlock()
			out := make([]any, len(ins))
			for i, in := range ins {
				if in.Poison {
					s.poisoned.Add(1)
					resetConn(w)
					return
				}
				out[i] = answer(in, len(ins))
			}
			_ = json.NewEncoder(w).Encode(out)
		default:
			s.singles.Add(1)
			var in batchInput
			if err := json.Unmarshal(body, &in); err != nil {
				http.Error(w, "not JSON", http.StatusBadRequest)
				return
			}
			if in.Poison {
				s.poisoned.Add(1)
				resetConn(w)
				return
			}
			a := answer(in, 1)
			if in.Fail {
				w.WriteHeader(422)
			}
			_ = json.NewEncoder(w).Encode(a)
		}
	})
	s.Alive = func() bool { return true }
	return s
}

func (s *batchServer) sizes() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int(nil), s.batches...)
}

func batchOptions(max int, wait time.Duration, set func(*Options)) Options {
	return testOptions(func(o *Options) {
		o.Batch = Batch{Path: "/predict", Endpoint: "/batch", Max: max, Wait: wait}
		o.MaxInflight, o.Queue = 16, 64
		if set != nil {
			set(o)
		}
	})
}

type batchReply struct {
	code int
	body string
	took time.Duration
}

// postAll posts bodies at once and returns the replies in their order.
func postAll(t *testing.T, c *http.Client, url string, bodies []string) []batchReply {
	t.Helper()
	out := make([]batchReply, len(bodies))
	var wg sync.WaitGroup
	for i, body := range bodies {
		wg.Go(func() {
			start := time.Now()
			resp, err := c.Post(url, "application/json", strings.NewReader(body))
			if err != nil {
				out[i] = batchReply{body: err.Error()}
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			out[i] = batchReply{code: resp.StatusCode, body: string(b), took: time.Since(start)}
		})
	}
	wg.Wait()
	return out
}

func ids(n int, set func(i int, in *batchInput)) []string {
	var out []string
	for i := range n {
		in := batchInput{ID: i}
		if set != nil {
			set(i, &in)
		}
		b, _ := json.Marshal(in)
		out = append(out, string(b))
	}
	return out
}

// TestBatchAnswersEachItsOwn: 8 requests at once, Max 8, go in one call
// to the batch endpoint, and each client gets its own input's answer;
// the one the model failed gets its own status, the others 200.
func TestBatchAnswersEachItsOwn(t *testing.T) {
	s := newBatchServer(t, 1)
	bal, srv := newTestBalancer(t, batchOptions(8, 2*time.Second, nil), s.Backend)
	replies := postAll(t, srv.Client(), srv.URL+"/predict", ids(8, func(i int, in *batchInput) { in.Fail = i == 3 }))
	for i, r := range replies {
		var got struct{ ID, Batch int }
		_ = json.Unmarshal([]byte(r.body), &got)
		switch {
		case i == 3 && (r.code != 422 || !strings.Contains(r.body, "input 3 failed")):
			t.Errorf("request 3: %d %s; want its own 422", r.code, r.body)
		case i != 3 && (r.code != 200 || got.ID != i || got.Batch != 8):
			t.Errorf("request %d: %d %s; want 200 with its id in a batch of 8", i, r.code, r.body)
		}
		if r.took > time.Second {
			t.Errorf("request %d took %s: the full batch waited for Wait", i, r.took)
		}
	}
	if got := s.sizes(); len(got) != 1 || got[0] != 8 || s.singles.Load() != 0 {
		t.Errorf("batch calls %v, single calls %d; want one of 8", got, s.singles.Load())
	}
	if st := bal.Stats(); st.Batches != 1 || st.Batched != 8 {
		t.Errorf("stats: %d batches of %d requests; want 1 of 8", st.Batches, st.Batched)
	}
}

// TestBatchWaitsAtMostWait: one request alone is sent, as a batch of 1,
// Wait after it arrived.
func TestBatchWaitsAtMostWait(t *testing.T) {
	s := newBatchServer(t, 1)
	_, srv := newTestBalancer(t, batchOptions(8, 100*time.Millisecond, nil), s.Backend)
	r := postAll(t, srv.Client(), srv.URL+"/predict", ids(1, nil))[0]
	if r.code != 200 || !strings.Contains(r.body, `"batch":1`) {
		t.Errorf("%d %s; want 200 from a batch of 1", r.code, r.body)
	}
	if r.took < 100*time.Millisecond || r.took > 2*time.Second {
		t.Errorf("took %s; want Wait, 100ms, and not much more", r.took)
	}
}

// TestBatchOtherRequestsGoAlone: a GET, another path and a body that is
// not JSON are not batched.
func TestBatchOtherRequestsGoAlone(t *testing.T) {
	s := newBatchServer(t, 1)
	_, srv := newTestBalancer(t, batchOptions(8, 2*time.Second, nil), s.Backend)
	start := time.Now()
	if code, body := post(t, srv.Client(), srv.URL+"/predict", "not json"); code != http.StatusBadRequest || !strings.Contains(body, "not JSON") {
		t.Errorf("a body that is not JSON: %d %s; want the replica's own 400", code, body)
	}
	if code, _ := post(t, srv.Client(), srv.URL+"/other", `{"id":1}`); code != 200 {
		t.Errorf("another path: %d", code)
	}
	resp, err := srv.Client().Get(srv.URL + "/predict")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if took := time.Since(start); took > time.Second {
		t.Errorf("took %s: a request that is not batched waited for a batch", took)
	}
	if got := s.sizes(); len(got) != 0 || s.singles.Load() != 3 {
		t.Errorf("batch calls %v, single calls %d; want none and 3", got, s.singles.Load())
	}
}

// TestBatchAnsweredNotAsBatch: a replica without the batch endpoint
// (404) has every request of the batch sent alone to its own path, and
// each is answered by it.
func TestBatchAnsweredNotAsBatch(t *testing.T) {
	s := newBatchServer(t, 1)
	s.noBatch = true
	bal, srv := newTestBalancer(t, batchOptions(4, 2*time.Second, nil), s.Backend)
	for i, r := range postAll(t, srv.Client(), srv.URL+"/predict", ids(4, nil)) {
		var got struct{ ID, Batch int }
		if err := json.Unmarshal([]byte(r.body), &got); r.code != 200 || err != nil || got.ID != i || got.Batch != 1 {
			t.Errorf("request %d: %d %s; want 200 with its id, answered alone", i, r.code, r.body)
		}
	}
	if n := s.singles.Load(); n != 4 {
		t.Errorf("%d single calls, want 4", n)
	}
	if st := bal.Stats(); st.BatchesSplit != 1 {
		t.Errorf("%d batches split, want 1", st.BatchesSplit)
	}
}

// TestBatchPoisonSplits: a batch with one input that resets the replica
// fails whole; its requests go again alone, the good ones are answered
// 200 and the poison one 502, delivered within the poison budget.
func TestBatchPoisonSplits(t *testing.T) {
	s := newBatchServer(t, 1)
	_, srv := newTestBalancer(t, batchOptions(4, 2*time.Second, func(o *Options) { o.Retries = 2 }), s.Backend)
	replies := postAll(t, srv.Client(), srv.URL+"/predict", ids(4, func(i int, in *batchInput) { in.Poison = i == 2 }))
	for i, r := range replies {
		switch {
		case i == 2 && r.code != http.StatusBadGateway:
			t.Errorf("the poison request: %d %s; want 502", r.code, r.body)
		case i != 2 && (r.code != 200 || !strings.Contains(r.body, `"batch":1`)):
			t.Errorf("request %d: %d %s; want 200, answered alone", i, r.code, r.body)
		}
	}
	if n := s.poisoned.Load(); n > 3 {
		t.Errorf("the poison input was delivered %d times; want at most --retries+1 = 3", n)
	}
	if got := s.sizes(); len(got) != 1 || got[0] != 4 {
		t.Errorf("batch calls %v; want one of 4, then none", got)
	}
}

// TestBatchDropsClientThatLeft: a request whose client goes away before
// its batch is sent is taken out of it.
func TestBatchDropsClientThatLeft(t *testing.T) {
	s := newBatchServer(t, 1)
	_, srv := newTestBalancer(t, batchOptions(8, 500*time.Millisecond, nil), s.Backend)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/predict", strings.NewReader(`{"id":7}`))
	left := make(chan error, 1)
	go func() {
		resp, err := srv.Client().Do(req)
		if err == nil {
			resp.Body.Close()
		}
		left <- err
	}()
	testutil.WaitFor(t, 5*time.Second, "1 in flight", func() bool { return s.inflight.Load() == 1 })
	stays := make(chan batchReply, 1)
	go func() { stays <- postAll(t, srv.Client(), srv.URL+"/predict", ids(1, nil))[0] }()
	testutil.WaitFor(t, 5*time.Second, "2 in flight", func() bool { return s.inflight.Load() == 2 })
	cancel()
	if err := <-left; err == nil {
		t.Error("the cancelled request was answered")
	}
	r := <-stays
	if r.code != 200 || !strings.Contains(r.body, `"batch":1`) {
		t.Errorf("the one that stayed: %d %s; want 200 from a batch of 1", r.code, r.body)
	}
	if got := s.sizes(); len(got) != 1 || got[0] != 1 {
		t.Errorf("batch calls %v; want one of 1", got)
	}
	testutil.WaitFor(t, 5*time.Second, "0 in flight", func() bool { return s.inflight.Load() == 0 })
}

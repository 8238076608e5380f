package balancer

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
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

// TestBatchOtherRequestsGoAlone: a body that is not JSON, another path, a
// GET, and a request with a query string or credentials (which a batch
// carries none of) are not batched, nor kept waiting for a batch.
func TestBatchOtherRequestsGoAlone(t *testing.T) {
	s := newBatchServer(t, 1)
	_, srv := newTestBalancer(t, batchOptions(8, 2*time.Second, nil), s.Backend)
	start := time.Now()
	for _, c := range []struct {
		name, method, path, body, header, value string
		want                                    int
	}{
		{"not JSON", http.MethodPost, "/predict", "not json", "", "", http.StatusBadRequest},
		{"another path", http.MethodPost, "/other", `{"id":1}`, "", "", http.StatusOK},
		{"a GET", http.MethodGet, "/predict", "", "", "", http.StatusBadRequest},
		{"a query", http.MethodPost, "/predict?model=a", `{"id":1}`, "", "", http.StatusOK},
		{"Authorization", http.MethodPost, "/predict", `{"id":1}`, "Authorization", "Bearer x", http.StatusOK},
		{"a cookie", http.MethodPost, "/predict", `{"id":1}`, "Cookie", "s=1", http.StatusOK},
	} {
		req, _ := http.NewRequest(c.method, srv.URL+c.path, strings.NewReader(c.body))
		if c.header != "" {
			req.Header.Set(c.header, c.value)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s: %d %s; want the replica's own %d", c.name, resp.StatusCode, body, c.want)
		}
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("took %s: a request that is not batched waited for a batch", took)
	}
	if got := s.sizes(); len(got) != 0 || s.singles.Load() != 6 {
		t.Errorf("batch calls %v, single calls %d; want none and 6", got, s.singles.Load())
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
	// A wait long beside a busy machine's scheduling: the second request
	// must join before the batch goes.
	_, srv := newTestBalancer(t, batchOptions(8, 1500*time.Millisecond, nil), s.Backend)
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

// TestBatchRaisesLearnedCap: under --max-inflight auto a replica's cap
// starts at, and is learned from, --batch-max while batching is on (within
// auto's upper bound), and from auto's lower bound again once it is off.
func TestBatchRaisesLearnedCap(t *testing.T) {
	s := newBatchServer(t, 1)
	bal, _ := newTestBalancer(t, batchOptions(8, 10*time.Millisecond, func(o *Options) {
		o.MaxInflight, o.AdaptiveInflight = 0, InflightBounds{Min: 1, Max: 64}
	}), s.Backend)
	if got := s.limit.Load(); got != 8 {
		t.Errorf("cap with batching on: %d, want 8 (--batch-max)", got)
	}
	off := bal.cfg().Limits
	off.Batch = Batch{Max: 8, Wait: 10 * time.Millisecond}
	if err := bal.Reconfigure(off, bal.cfg().Policy); err != nil {
		t.Fatal(err)
	}
	if got := s.limit.Load(); got != 1 {
		t.Errorf("cap with batching off again: %d, want 1 (auto's lower bound)", got)
	}
	small := off
	small.Batch = Batch{Path: "/predict", Endpoint: "/batch", Max: 8, Wait: 10 * time.Millisecond}
	small.AdaptiveInflight = InflightBounds{Min: 1, Max: 4}
	if err := bal.Reconfigure(small, bal.cfg().Policy); err != nil {
		t.Fatal(err)
	}
	if got := s.limit.Load(); got != 4 {
		t.Errorf("cap with batching on under auto:1-4: %d, want 4 (auto's upper bound)", got)
	}
}

// TestBatchNeverOverMax: many requests at once never make a batch larger
// than Max.
func TestBatchNeverOverMax(t *testing.T) {
	s := newBatchServer(t, 1)
	_, srv := newTestBalancer(t, batchOptions(2, 50*time.Millisecond, func(o *Options) { o.MaxInflight, o.Queue = 64, 1024 }), s.Backend)
	for range 5 {
		postAll(t, srv.Client(), srv.URL+"/predict", ids(64, nil))
	}
	for _, n := range s.sizes() {
		if n > 2 {
			t.Fatalf("a batch of %d with Max 2 (sizes %v)", n, s.sizes())
		}
	}
}

// hangBackend's /batch hangs, before its headers or after the first byte
// of its body, when an input has "hang"; its single path hangs for that
// input alone and answers the others.
func hangBackend(t *testing.T, afterHeaders bool) *testBackend {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	tb := newTestBackend(t, 1, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if strings.Contains(string(body), `"hang"`) {
			if afterHeaders && r.URL.Path == "/batch" {
				w.WriteHeader(http.StatusOK)
				fmt.Fprint(w, "[")
				w.(http.Flusher).Flush()
			}
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		if r.URL.Path == "/batch" {
			var ins []json.RawMessage
			_ = json.Unmarshal(body, &ins)
			out := make([]string, len(ins))
			for i := range ins {
				out[i] = `{"batch":true}`
			}
			fmt.Fprint(w, "["+strings.Join(out, ",")+"]")
			return
		}
		fmt.Fprint(w, `{"alone":true}`)
	})
	tb.Alive = func() bool { return true }
	return tb
}

// TestBatchHungInputLeavesNeighbours: an input that hangs the model, before
// its batch's answer or in the middle of it, times its batch out; its
// neighbours then go alone and are answered, and it gets 504 alone.
func TestBatchHungInputLeavesNeighbours(t *testing.T) {
	for _, after := range []bool{false, true} {
		tb := hangBackend(t, after)
		_, srv := newTestBalancer(t, batchOptions(4, time.Second, func(o *Options) {
			o.Retries, o.UpstreamTimeout = 2, time.Second // long beside a busy machine's answer from the quick path
		}), tb.Backend)
		bodies := []string{`{"id":0}`, `{"id":1}`, `{"id":2,"hang":1}`, `{"id":3}`}
		for i, r := range postAll(t, srv.Client(), srv.URL+"/predict", bodies) {
			switch {
			case i == 2 && r.code != http.StatusGatewayTimeout:
				t.Errorf("after headers %v: the hung input: %d %s; want 504", after, r.code, r.body)
			case i != 2 && (r.code != http.StatusOK || !strings.Contains(r.body, "alone")):
				t.Errorf("after headers %v: neighbour %d: %d %s; want 200, answered alone", after, i, r.code, r.body)
			}
		}
	}
}

// TestBatchPoisonWithoutRetries: at --retries 0 a batch that a poison
// input failed still sends each of its requests again alone, once: the
// neighbours are answered.
func TestBatchPoisonWithoutRetries(t *testing.T) {
	s := newBatchServer(t, 1)
	_, srv := newTestBalancer(t, batchOptions(4, 2*time.Second, func(o *Options) { o.Retries = 0 }), s.Backend)
	for i, r := range postAll(t, srv.Client(), srv.URL+"/predict", ids(4, func(i int, in *batchInput) { in.Poison = i == 2 })) {
		switch {
		case i == 2 && r.code != http.StatusBadGateway:
			t.Errorf("the poison input: %d %s; want 502", r.code, r.body)
		case i != 2 && r.code != http.StatusOK:
			t.Errorf("neighbour %d: %d %s; want 200", i, r.code, r.body)
		}
	}
	if n := s.poisoned.Load(); n != 2 {
		t.Errorf("the poison input was delivered %d times; want 2, its batch and once alone", n)
	}
}

// TestBatchPoisonQuarantined: a poison input that failed its batch is
// judged alone afterwards, so it is quarantined as it would be unbatched,
// and a repeat reaches no replica.
func TestBatchPoisonQuarantined(t *testing.T) {
	s := newBatchServer(t, 1)
	bal, srv := newTestBalancer(t, batchOptions(4, 2*time.Second, func(o *Options) {
		o.Retries, o.Quarantine = 2, time.Minute
	}), s.Backend)
	bodies := ids(4, func(i int, in *batchInput) { in.Poison = i == 2 })
	postAll(t, srv.Client(), srv.URL+"/predict", bodies)
	if n := s.poisoned.Load(); n != 3 {
		t.Errorf("the poison input was delivered %d times; want 3: its batch, then twice alone", n)
	}
	if q := bal.Stats().Quarantined; q != 1 {
		t.Errorf("quarantined %d, want 1", q)
	}
	r := postAll(t, srv.Client(), srv.URL+"/predict", bodies[2:3])[0]
	if r.code != http.StatusBadGateway || s.poisoned.Load() != 3 {
		t.Errorf("the repeat: %d, %d deliveries in all; want 502 from the quarantine and still 3", r.code, s.poisoned.Load())
	}
}

// TestBatchErrorWithoutStatusSplits: an error element without a status
// from 400 to 599 breaks the contract; its batch's requests go alone.
func TestBatchErrorWithoutStatusSplits(t *testing.T) {
	tb := newTestBackend(t, 1, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if r.URL.Path == "/batch" {
			fmt.Fprint(w, `[{"error":"CUDA out of memory"},{"error":"x","status":"500"},{"error":"y","status":503}]`)
			return
		}
		fmt.Fprint(w, `{"alone":true}`)
	})
	bal, srv := newTestBalancer(t, batchOptions(3, 2*time.Second, nil), tb.Backend)
	for i, r := range postAll(t, srv.Client(), srv.URL+"/predict", ids(3, nil)) {
		if r.code != http.StatusOK || !strings.Contains(r.body, "alone") {
			t.Errorf("request %d: %d %s; want 200, answered alone", i, r.code, r.body)
		}
	}
	if st := bal.Stats(); st.BatchesSplit != 1 {
		t.Errorf("%d batches split, want 1", st.BatchesSplit)
	}
}

// TestBatchCancelStress: clients that leave at random moments, batches
// answered at random speeds, sometimes reset or of the wrong length: every
// backend slot comes back.
func TestBatchCancelStress(t *testing.T) {
	var calls atomic.Int32
	tb := newTestBackend(t, 1, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		time.Sleep(time.Duration(rand.IntN(20)) * time.Millisecond)
		n := calls.Add(1)
		if r.URL.Path == "/batch" {
			var ins []json.RawMessage
			_ = json.Unmarshal(b, &ins)
			switch n % 7 {
			case 3:
				resetConn(w)
				return
			case 5:
				fmt.Fprint(w, "[1]")
				return
			}
			fmt.Fprint(w, "["+strings.Repeat("1,", len(ins)-1)+"1]")
			return
		}
		fmt.Fprint(w, "1")
	})
	tb.Alive = func() bool { return true }
	_, srv := newTestBalancer(t, batchOptions(4, 5*time.Millisecond, func(o *Options) {
		o.Retries, o.MaxInflight, o.Queue = 2, 6, 1024
	}), tb.Backend)
	var wg sync.WaitGroup
	for i := range 300 {
		wg.Go(func() {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if i%2 == 0 {
				time.AfterFunc(time.Duration(rand.IntN(30))*time.Millisecond, cancel)
			}
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/predict", strings.NewReader(fmt.Sprintf(`{"id":%d}`, i)))
			if resp, err := srv.Client().Do(req); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	testutil.WaitFor(t, 10*time.Second, "no slot held", func() bool { return tb.inflight.Load() == 0 })
}

// TestBatchBounds: a body over batchMaxItem goes alone, and an answer over
// batchMaxAnswer per request is not taken as a batch's: its requests go
// alone.
func TestBatchBounds(t *testing.T) {
	huge := `{"id":1,"pad":"` + strings.Repeat("x", batchMaxItem) + `"}`
	big := strings.Repeat("y", batchMaxAnswer)
	tb := newTestBackend(t, 1, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if r.URL.Path == "/batch" {
			fmt.Fprint(w, `["`+big+`"]`)
			return
		}
		fmt.Fprint(w, `{"alone":true}`)
	})
	bal, srv := newTestBalancer(t, batchOptions(8, 10*time.Millisecond, func(o *Options) { o.MaxBody = 64 << 20 }), tb.Backend)
	if code, body := post(t, srv.Client(), srv.URL+"/predict", huge); code != http.StatusOK || !strings.Contains(body, "alone") {
		t.Errorf("a body over %d bytes: %d %.80s; want 200, answered alone", batchMaxItem, code, body)
	}
	if st := bal.Stats(); st.Batches != 0 {
		t.Errorf("%d batches sent for a body over the bound", st.Batches)
	}
	if code, body := post(t, srv.Client(), srv.URL+"/predict", `{"id":2}`); code != http.StatusOK || !strings.Contains(body, "alone") {
		t.Errorf("an answer over %d bytes: %d %.80s; want 200, answered alone", batchMaxAnswer, code, body)
	}
	if st := bal.Stats(); st.Batches != 1 || st.BatchesSplit != 1 {
		t.Errorf("%d batches, %d split; want 1 and 1", st.Batches, st.BatchesSplit)
	}
}

// TestBatchHeldWhileOneInFlight: a batch whose wait is over while another
// of its replica's is in flight is held until that one ends, and the
// requests given the slots it frees join it. 8 clients arrive as 5, sent
// as a batch, and 3, held; when the 5 are answered and send their second
// requests, those join the 3 into a batch of 8; the 3's second ones then
// go as a batch of 3 (without the hold: 5, 3, 5, 3).
func TestBatchHeldWhileOneInFlight(t *testing.T) {
	s := newBatchServer(t, 1)
	arrived, slow := make(chan struct{}), make(chan struct{})
	var first sync.Once
	inner := s.srv.Config.Handler
	s.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/batch" {
			first.Do(func() { close(arrived); <-slow }) // the first batch stays in flight until the rest have come
		}
		inner.ServeHTTP(w, r)
	})
	// A wait long beside a busy machine's scheduling: the 5 second requests
	// must join the held batch within it.
	const wait = 300 * time.Millisecond
	_, srv := newTestBalancer(t, batchOptions(8, wait, func(o *Options) { o.MaxInflight = 8 }), s.Backend)
	var wg sync.WaitGroup
	loop := func(ids []int) {
		for _, id := range ids {
			wg.Go(func() {
				for round := range 2 {
					body := fmt.Sprintf(`{"id":%d}`, 10*round+id)
					if code, answer := post(t, srv.Client(), srv.URL+"/predict", body); code != 200 || !strings.Contains(answer, fmt.Sprintf(`"id":%d`, 10*round+id)) {
						t.Errorf("request %s: %d %s", body, code, answer)
					}
				}
			})
		}
	}
	loop([]int{0, 1, 2, 3, 4})
	select {
	case <-arrived: // the batch of 5 is at the replica
	case <-time.After(10 * time.Second):
		t.Fatal("no batch reached the replica in 10s")
	}
	loop([]int{5, 6, 7})
	testutil.WaitFor(t, 5*time.Second, "8 in flight", func() bool { return s.inflight.Load() == 8 })
	time.Sleep(wait + 200*time.Millisecond) // past the second batch's wait: it is held
	close(slow)
	wg.Wait()
	if got := fmt.Sprint(s.sizes()); got != "[5 8 3]" {
		t.Errorf("batch sizes %s; want [5 8 3]", got)
	}
}

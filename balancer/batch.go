package balancer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Dynamic batching (Limits.Batch, `up --batch-path`): a model server that
// offers a batch endpoint computes N inputs in one forward pass for little
// more than one costs. POSTs to the batch path are grouped, per backend,
// and sent as one request to the backend's batch endpoint.
//
// Each request first takes a slot on its backend as any request does
// (queue.go), so that a batch counts as its number of requests against the
// backend's cap, the admission estimate and the learned limit: the limit
// learns the level that batching makes worth it. The requests that hold
// slots on one backend then wait, for at most Batch.Wait from the first,
// to be sent together; Batch.Max of them go at once. A backend computes one
// batch at a time, as a model instance does under Triton's dynamic
// batcher: a batch whose wait is over while another of its backend's is in
// flight is held until that one has ended and its requests' slots have
// gone to the next ones, which join it, for Batch.Wait more (or until it
// is full). Sent at once instead, a batch of the few that had slots would
// go on alternating with the rest, each half the size it could be
// (measured: a mean batch of 4.3 out of 8). A request whose client leaves
// before its batch goes is taken out of it, its slot given back.
//
// The contract with the backend: the batch request is a JSON array of the
// requests' JSON bodies, in some order; the answer is a JSON array of the
// same length, in the same order, each element either the body to answer
// its request with, 200, or {"error": "...", "status": 4xx or 5xx} to
// answer that request alone with that status.
//
// A batch of several that fails as a whole (the backend died, reset the
// connection or timed out) is no failure of any one of its requests: none
// is blamed (poison.go), and each goes again once, alone, to the batch
// path itself, whatever Options.Retries, that delivery counted against
// them. Alone, an input that kills or resets backends then meets the
// retry and poison rules by itself, and is quarantined as it would be
// unbatched; its neighbours are answered. A backend that answers a batch,
// but not as the contract says (a 404 from a server without the endpoint,
// an array of the wrong length), has its requests sent alone too, not
// counted; the log says why.

// Batch is what Limits.Batch groups, and how.
type Batch struct {
	// Path is the request path whose POSTs are batched, exactly as the
	// client sends it, query aside. Empty means no batching.
	Path string
	// Endpoint is the backend's batch path that a batch is POSTed to.
	Endpoint string
	// Max is the most requests in a batch, at least 2.
	Max int
	// Wait is the longest a request waits for others to join its batch,
	// from the first's arrival; more than zero.
	Wait time.Duration
}

// The defaults of Batch's Max and Wait, and their bounds (`up --help`).
const (
	DefaultBatchMax  = 8
	DefaultBatchWait = 10 * time.Millisecond
	MaxBatchMax      = 256
	MaxBatchWait     = 10 * time.Second
)

// batchMaxItem is the largest request body that is batched; a larger one
// goes alone. A batch is built in memory, from copies of its bodies.
// batchMaxAnswer is the most of a batch's answer read for each of its
// requests: an answer past it is not taken as a batch's, and its requests
// go alone, where their answers stream.
const (
	batchMaxItem   = 16 << 20
	batchMaxAnswer = 16 << 20
)

// errBatchPaused is a batch's answer that paused longer than the upstream
// timeout: a timeout, as the transport's for its headers (retry.go's
// slow).
var errBatchPaused = &batchPauseError{}

type batchPauseError struct{}

func (*batchPauseError) Error() string {
	return "batch answer paused longer than the upstream timeout"
}
func (*batchPauseError) Timeout() bool   { return true }
func (*batchPauseError) Temporary() bool { return false }

// errBatchAnswer is a batch's answer that is not what the contract says.
type errBatchAnswer struct{ why string }

func (e *errBatchAnswer) Error() string { return e.why }

// batcher holds the batches being formed, one per backend at most.
type batcher struct {
	mu      sync.Mutex
	forming map[*Backend]*batch
	busy    map[*Backend]int // batches in flight, by backend
	// Counters for Stats: batches sent, requests sent in them, batches
	// answered not as a batch (split).
	sent, items, split atomic.Uint64
	// warned is when a split batch was last logged (UnixNano), so that a
	// replica without the endpoint logs once per batchWarnEvery, not once
	// per batch.
	warned atomic.Int64
}

// batchWarnEvery is how often a batch answered not as a batch is logged at
// most; mattingctl_batches_split_total counts them all.
const batchWarnEvery = 10 * time.Second

// batch is the requests going to one backend together.
type batch struct {
	be    *Backend
	c     Batch // the configuration it was formed under
	items []*batchItem
	timer *time.Timer
	gone  bool // taken out of forming: sent, or empty
	held  bool // its wait is over, and another batch of its backend's is in flight
}

// batchItem is one request in a batch, and its answer once the batch was
// answered. The batch's sender writes ans and the attempt's fields, ends
// the attempt, and closes done; the request's handler reads them after.
type batchItem struct {
	x    *exchange
	a    *attempt
	body []byte
	done chan struct{}
	ans  itemAnswer
}

type itemAnswer struct {
	status      int
	contentType string
	body        []byte
	// resend: the request goes again alone, the batch having failed as
	// a whole (counted as a delivery) or been answered not as a batch
	// (not counted).
	resend  error
	counted bool
}

// batched returns x's body, and true, when x is to be sent in a batch:
// batching is on, x is a POST to its path with no query and no
// credentials (a batch carries neither, and one replica call must not mix
// two users'), not sent alone already, and its body is JSON of at most
// batchMaxItem bytes.
func (b *Balancer) batched(x *exchange, c Batch) ([]byte, bool) {
	if c.Path == "" || x.alone || x.r.Method != http.MethodPost || x.r.URL.Path != c.Path || x.r.URL.RawQuery != "" ||
		isUpgrade(x.r) || x.r.Header.Get("Authorization") != "" || x.r.Header.Get("Cookie") != "" ||
		x.body.Len() == 0 || x.body.Len() > batchMaxItem {
		return nil, false
	}
	if x.batchBody == nil {
		body, err := x.body.bytes()
		if err != nil || !json.Valid(body) {
			x.alone = true // not JSON: the backend's own path answers it
			return nil, false
		}
		x.batchBody = body
	}
	return x.batchBody, true
}

// forwardBatched sends attempt a of x, with body, in a batch on a's
// backend, and answers x from the batch's answer. a.err is set as
// forward sets it when x's batch, of x alone, failed with no answer. It
// returns false, x unanswered, when x is to go again alone (resend).
func (b *Balancer) forwardBatched(x *exchange, a *attempt, body []byte, c Batch) bool {
	it := &batchItem{x: x, a: a, body: body, done: make(chan struct{})}
	bt, full := b.batches.join(it, c, b.sendBatch)
	if full != nil {
		b.dispatch(bt, full)
	}
	select {
	case <-it.done:
	case <-x.ctx.Done():
		if b.batches.leave(bt, it) {
			a.err = x.ctx.Err()
			a.done()
		}
		x.checkClient()
	}
	if err := it.ans.resend; err != nil {
		b.resendAlone(x, a, err, it.ans.counted)
		return false
	}
	if a.err != nil {
		return true
	}
	h := x.w.Header()
	h.Set("Content-Type", it.ans.contentType)
	h.Set("Content-Length", strconv.Itoa(len(it.ans.body)))
	x.w.WriteHeader(it.ans.status)
	if _, err := x.w.Write(it.ans.body); err != nil {
		abort()
	}
	return true
}

// join adds it to the batch forming on its backend, or starts one there
// whose timer calls send after c.Wait. It returns the batch, and its
// requests when it is now full, taken out of forming: the caller sends
// them.
func (q *batcher) join(it *batchItem, c Batch, send func(*batch)) (*batch, []*batchItem) {
	q.mu.Lock()
	defer q.mu.Unlock()
	be := it.a.be
	bt := q.forming[be]
	if bt == nil {
		if q.forming == nil {
			q.forming = map[*Backend]*batch{}
		}
		bt = &batch{be: be, c: c}
		q.forming[be] = bt
		bt.timer = time.AfterFunc(c.Wait, func() { send(bt) })
	}
	bt.items = append(bt.items, it)
	if len(bt.items) < max(bt.c.Max, 1) {
		return bt, nil
	}
	return bt, q.takeLocked(bt)
}

// due is bt's wait being over: it returns bt's requests, taken out of
// forming, for the caller to send; nil when bt was sent already or is
// empty, or, holding it, while another batch of its backend's is in
// flight.
func (q *batcher) due(bt *batch) []*batchItem {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !bt.gone && q.busy[bt.be] > 0 {
		bt.held = true
		return nil
	}
	return q.takeLocked(bt)
}

// takeLocked takes bt out of forming, once, and returns its requests,
// counted in flight on its backend; nil when it was taken already or has
// none.
func (q *batcher) takeLocked(bt *batch) []*batchItem {
	if bt.gone {
		return nil
	}
	bt.gone = true
	bt.timer.Stop()
	if q.forming[bt.be] == bt {
		delete(q.forming, bt.be)
	}
	if len(bt.items) > 0 {
		if q.busy == nil {
			q.busy = map[*Backend]int{}
		}
		q.busy[bt.be]++
	}
	return bt.items
}

// ended is a batch of be's having ended, its requests' slots given back:
// a batch held for it gets its wait again, from now, so that the requests
// given those slots join it.
func (q *batcher) ended(be *Backend) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.busy[be]--; q.busy[be] <= 0 {
		delete(q.busy, be)
		if bt := q.forming[be]; bt != nil && bt.held {
			bt.held = false
			bt.timer.Reset(bt.c.Wait)
		}
	}
}

// leave takes it out of bt if bt has not been sent, and reports whether it
// did; an emptied batch is dropped.
func (q *batcher) leave(bt *batch, it *batchItem) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if bt.gone {
		return false
	}
	for i, o := range bt.items {
		if o == it {
			bt.items = append(bt.items[:i], bt.items[i+1:]...)
			break
		}
	}
	if len(bt.items) == 0 {
		bt.gone = true
		bt.timer.Stop()
		delete(q.forming, bt.be)
	}
	return true
}

// sendBatch sends bt when its timer fires, unless it was sent already or
// is held (due).
func (b *Balancer) sendBatch(bt *batch) { b.dispatch(bt, b.batches.due(bt)) }

// dispatch sends items, bt's requests taken out of forming, to bt's
// backend's batch endpoint, and hands each its answer, ends its attempt
// and wakes its handler: on the goroutine of the request that filled bt,
// or of its timer.
func (b *Balancer) dispatch(bt *batch, items []*batchItem) {
	if len(items) == 0 {
		return
	}
	c := b.cfg()
	b.batches.sent.Add(1)
	b.batches.items.Add(uint64(len(items)))
	answers, err := b.roundTripBatch(bt.be, bt.c, items, c)
	var bad *errBatchAnswer
	if errors.As(err, &bad) {
		n := b.batches.split.Add(1)
		now, last := time.Now().UnixNano(), b.batches.warned.Load()
		if (last == 0 || now-last >= int64(batchWarnEvery)) && b.batches.warned.CompareAndSwap(last, now) {
			c.Logger.Warn("replica did not answer a batch as a batch; its requests go alone", "replica", bt.be.Name,
				"endpoint", bt.c.Endpoint, "requests", len(items), "error", err, "split_so_far", n)
		}
	}
	for i, it := range items {
		a := it.a
		switch {
		case bad != nil:
			// Answered, but not as a batch: no service time to learn.
			it.ans.resend, a.err = bad, bad
			a.done()
		case err != nil && len(items) > 1:
			it.ans.resend, it.ans.counted, a.err = err, true, err
			a.done()
		case err != nil:
			a.err = err // a batch of one: its request's own failure
			a.done()
		default:
			it.ans = answers[i]
			a.code, a.responded = answers[i].status, true
			if a.code >= 500 {
				a.be.errors.Add(1)
			}
			a.end(true)
		}
		close(it.done)
	}
	b.batches.ended(bt.be)
}

// resendAlone readies x to go again, alone, after attempt a's batch
// failed as a whole with err (counted: a delivery of x's, and a backend
// that died is taken out of rotation) or was answered not as a batch.
func (b *Balancer) resendAlone(x *exchange, a *attempt, err error, counted bool) {
	x.alone, x.batchBody = true, nil
	if !counted {
		return
	}
	be := a.be
	x.checkClient()
	be.errors.Add(1)
	f := b.judge(x, be, err, false)
	x.retry.retries++
	x.avoid = be
	b.cfg().Logger.Debug("batch failed as a whole; its requests go again alone", "replica", be.Name,
		"method", x.r.Method, "path", x.r.URL.Path, "error", err, "failure", f)
}

// roundTripBatch POSTs items' bodies, as a JSON array, to be's batch
// endpoint and reads the answer: one itemAnswer per item, or an error,
// an *errBatchAnswer when be answered but not as a batch. The request is
// cancelled when every item's client has gone, and when be pauses longer
// than the upstream timeout in its answer's body (its headers are bounded
// by the transport).
func (b *Balancer) roundTripBatch(be *Backend, bc Batch, items []*batchItem, c *Options) ([]itemAnswer, error) {
	size := 1 + len(items)
	for _, it := range items {
		size += len(it.body) + 1
	}
	body := make([]byte, 0, size)
	body = append(body, '[')
	for i, it := range items {
		if i > 0 {
			body = append(body, ',')
		}
		body = append(body, it.body...)
	}
	body = append(body, ']')

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	left := atomic.Int32{}
	left.Store(int32(len(items)))
	for _, it := range items {
		stop := context.AfterFunc(it.x.ctx, func() {
			if left.Add(-1) == 0 {
				cancel()
			}
		})
		defer stop()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+be.Addr+bc.Endpoint, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := b.transport.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var paused atomic.Bool
	pause := time.AfterFunc(c.UpstreamTimeout, func() { paused.Store(true); cancel() })
	defer pause.Stop()
	limit := int64(len(items)) * batchMaxAnswer
	data, err := readPaused(resp.Body, limit, func() { pause.Reset(c.UpstreamTimeout) })
	if err != nil {
		if paused.Load() {
			return nil, errBatchPaused
		}
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &errBatchAnswer{fmt.Sprintf("batch answered %s", resp.Status)}
	}
	return splitAnswer(data, len(items), resp.Header.Get("Content-Type"))
}

// readPaused reads r to its end, at most limit bytes, calling read after
// each read that returned data.
func readPaused(r io.Reader, limit int64, read func()) ([]byte, error) {
	var buf bytes.Buffer
	p := make([]byte, 32<<10)
	for {
		n, err := r.Read(p)
		if n > 0 {
			if int64(buf.Len()+n) > limit {
				return nil, &errBatchAnswer{fmt.Sprintf("batch answer over %d bytes", limit)}
			}
			buf.Write(p[:n])
			read()
		}
		if err == io.EOF {
			return buf.Bytes(), nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// splitAnswer splits a batch's answer, data, into its n requests'
// answers, or returns an *errBatchAnswer when it is not a JSON array of n.
// An element that is an object with a string "error" and a "status" from
// 400 to 599 answers its request with that status; one with a string
// "error" and no such status breaks the contract (an error must say its
// status: answering it 200 would be a lie); any other answers 200.
func splitAnswer(data []byte, n int, contentType string) ([]itemAnswer, error) {
	var elems []json.RawMessage
	if err := json.Unmarshal(data, &elems); err != nil {
		return nil, &errBatchAnswer{"batch answer is not a JSON array: " + err.Error()}
	}
	if len(elems) != n {
		return nil, &errBatchAnswer{fmt.Sprintf("batch answer has %d elements for %d requests", len(elems), n)}
	}
	if contentType == "" {
		contentType = "application/json"
	}
	out := make([]itemAnswer, n)
	for i, e := range elems {
		out[i] = itemAnswer{status: http.StatusOK, contentType: contentType, body: e}
		if len(e) > 0 && e[0] == '{' {
			var f struct {
				Error  *string          `json:"error"`
				Status *json.RawMessage `json:"status"`
			}
			if json.Unmarshal(e, &f) != nil || f.Error == nil {
				continue
			}
			status := 0
			if f.Status != nil {
				status, _ = strconv.Atoi(string(*f.Status))
			}
			if status < 400 || status > 599 {
				return nil, &errBatchAnswer{fmt.Sprintf("batch answer's element %d has an \"error\" and no status from 400 to 599", i)}
			}
			out[i].status = status
		}
	}
	return out, nil
}

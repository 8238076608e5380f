package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

// device is a GPU-like model (-batch-cost A,B): one forward pass at a
// time, a pass over n inputs taking A + n·B, so that a batch of 8 costs
// little more than one input. Its single path computes one input, /batch
// a JSON array of them; each answer carries its input's "id".
type device struct {
	mu          sync.Mutex // one pass at a time
	fixed, each time.Duration
	replica     int
	poison      string
}

// parseBatchCost parses -batch-cost: "A,B", two durations.
func parseBatchCost(s string) (fixed, each time.Duration, err error) {
	a, b, ok := strings.Cut(s, ",")
	if !ok {
		return 0, 0, fmt.Errorf("%q is not A,B (two durations, e.g. 50ms,5ms)", s)
	}
	if fixed, err = time.ParseDuration(strings.TrimSpace(a)); err != nil {
		return 0, 0, err
	}
	if each, err = time.ParseDuration(strings.TrimSpace(b)); err != nil {
		return 0, 0, err
	}
	if fixed < 0 || each < 0 {
		return 0, 0, fmt.Errorf("%q: negative", s)
	}
	return fixed, each, nil
}

// pass computes n inputs: A + n·B, one pass at a time.
func (d *device) pass(n int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	time.Sleep(d.fixed + time.Duration(n)*d.each)
}

// poisoned resets w's connection for a poison input, saying so on stderr
// as the single path's poison does.
func (d *device) poisoned(w http.ResponseWriter) {
	fmt.Fprintf(os.Stderr, "fakemodel replica %d: poison request, resetting\n", d.replica)
	drop(w)
}

// input is what the device reads of a request body: its id.
type input struct {
	ID json.RawMessage `json:"id"`
}

func (d *device) answer(in input, n int) map[string]any {
	return map[string]any{"id": in.ID, "batch": n, "replica": d.replica}
}

// serveOne computes one request's body alone.
func (d *device) serveOne(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	var in input
	if err := json.Unmarshal(body, &in); err != nil {
		http.Error(w, "body is not a JSON object: "+err.Error(), http.StatusBadRequest)
		return
	}
	if d.poison != "" && strings.Contains(string(body), d.poison) {
		d.pass(1)
		d.poisoned(w)
		return
	}
	d.pass(1)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(d.answer(in, 1))
}

// serveBatch computes a JSON array of request bodies in one pass and
// answers the array of their answers; an element that is no JSON object
// gets {"error": ..., "status": 400}; one with the poison resets the
// connection, failing the whole batch, as a model that crashes on it.
func (d *device) serveBatch(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	var elems []json.RawMessage
	if err := json.Unmarshal(body, &elems); err != nil {
		http.Error(w, "body is not a JSON array: "+err.Error(), http.StatusBadRequest)
		return
	}
	d.pass(len(elems))
	out := make([]any, len(elems))
	for i, e := range elems {
		if d.poison != "" && strings.Contains(string(e), d.poison) {
			d.poisoned(w)
			return
		}
		var in input
		if err := json.Unmarshal(e, &in); err != nil {
			out[i] = map[string]any{"error": "not a JSON object: " + err.Error(), "status": http.StatusBadRequest}
			continue
		}
		out[i] = d.answer(in, len(elems))
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

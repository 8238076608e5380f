package main

import (
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/mattingctl/mattingctl/internal/control"
)

// rateHistory is how many per-poll rates top keeps per replica: a minute
// at one poll a second, as wide as the sparkline can be.
const rateHistory = 60

// rateTracker turns the request counts of successive statuses into each
// replica's requests per second. It keeps the last rateHistory rates of
// every replica in the latest status and forgets the others.
type rateTracker struct {
	last map[string]countSample // the previous poll's count, by replica key
	hist map[string][]float64   // oldest first, at most rateHistory
}

// countSample is a replica's request count and when it was read.
type countSample struct {
	requests uint64
	at       time.Time
}

func newRateTracker() *rateTracker {
	return &rateTracker{last: map[string]countSample{}, hist: map[string][]float64{}}
}

// observe records st, read at at. A replica's rate is its count's change
// over the time since the previous poll. A count that went down (the
// replica was removed and another took its id) yields no rate for that
// poll, only a new base.
func (t *rateTracker) observe(st control.Status, at time.Time) {
	keys := replicaKeys(st.Replicas)
	seen := make(map[string]bool, len(keys))
	for i, r := range st.Replicas {
		k := keys[i]
		seen[k] = true
		prev, ok := t.last[k]
		t.last[k] = countSample{requests: r.Requests, at: at}
		dt := at.Sub(prev.at).Seconds()
		if !ok || dt <= 0 || r.Requests < prev.requests {
			continue
		}
		h := append(t.hist[k], float64(r.Requests-prev.requests)/dt)
		if len(h) > rateHistory {
			h = h[len(h)-rateHistory:]
		}
		t.hist[k] = h
	}
	for k := range t.last {
		if !seen[k] {
			delete(t.last, k)
			delete(t.hist, k)
		}
	}
}

// rate returns the latest requests per second of the replica with key k,
// and false before two polls have seen it.
func (t *rateTracker) rate(k string) (float64, bool) {
	h := t.hist[k]
	if len(h) == 0 {
		return 0, false
	}
	return h[len(h)-1], true
}

// history returns the replica's rates, oldest first.
func (t *rateTracker) history(k string) []float64 { return t.hist[k] }

// replicaKeys names each replica of a status for rateTracker: its id,
// which keeps its count across restarts and rolling restarts. A replica
// removed by a scale-down stays listed, draining, next to a new one with
// the same id; the second of them is told apart by a suffix.
func replicaKeys(rs []control.ReplicaStatus) []string {
	keys := make([]string, len(rs))
	n := map[int]int{}
	for i, r := range rs {
		keys[i] = strconv.Itoa(r.ID)
		if n[r.ID] > 0 {
			keys[i] += "#" + strconv.Itoa(n[r.ID])
		}
		n[r.ID]++
	}
	return keys
}

// sparkBlocks are the sparkline's eight levels, lowest first.
var sparkBlocks = []rune("▁▂▃▄▅▆▇█")

// sparkline draws the last width values, oldest first, one block each,
// scaled from zero (▁) to the largest of them (█); an all-zero window is
// flat at ▁. It returns the line and the largest value. Fewer values than
// width make a shorter line.
func sparkline(values []float64, width int) (string, float64) {
	if width <= 0 {
		return "", 0
	}
	if len(values) > width {
		values = values[len(values)-width:]
	}
	peak := 0.0
	for _, v := range values {
		if v > peak {
			peak = v
		}
	}
	var b strings.Builder
	for _, v := range values {
		level := 0
		if peak > 0 && v > 0 {
			level = int(math.Round(v / peak * float64(len(sparkBlocks)-1)))
		}
		b.WriteRune(sparkBlocks[min(max(level, 0), len(sparkBlocks)-1)])
	}
	return b.String(), peak
}

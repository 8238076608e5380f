package admin

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"
)

func TestHistoryRecordsRatesAndQuantiles(t *testing.T) {
	m := NewMetrics(&fakeSource{})
	h := NewHistory(m)
	t0 := time.Unix(1_800_000_000, 0)
	h.Record(t0, Sample{Rejected: 100}) // sets the start only
	if s := h.since(0); len(s.T) != 0 {
		t.Fatalf("the first Record made a point: %v", s.T)
	}
	for range 90 {
		m.Observe("replica-1", 200, 10*time.Millisecond)
	}
	for range 10 {
		m.Observe("replica-1", 404, 2*time.Second)
	}
	for range 5 {
		m.Observe("replica-2", 500, time.Millisecond)
	}
	for range 7 {
		m.Observe("", 503, time.Millisecond)
	}
	h.Record(t0.Add(2*time.Second), Sample{Queued: 3, Inflight: 5, Capacity: 16, Rejected: 107,
		Replicas: []ReplicaSample{{Name: "replica-1", Count: 4, Mean: 25 * time.Millisecond}, {Name: "replica-2"}}})
	s := h.since(0)
	if len(s.T) != 1 || s.T[0] != t0.Unix()+2 {
		t.Fatalf("points at %v, want one at %d", s.T, t0.Unix()+2)
	}
	// Over 2 seconds: 90 ok, 10 4xx, 5 5xx from a replica, 7 rejected.
	for _, c := range []struct {
		name      string
		got, want float32
	}{{"2xx", s.OK[0], 45}, {"4xx", s.C4xx[0], 5}, {"5xx", s.C5xx[0], 2.5}, {"rejected", s.Rejected[0], 3.5},
		{"queued", s.Queued[0], 3}, {"inflight", s.Inflight[0], 5}, {"capacity", s.Capacity[0], 16}} {
		if c.got != c.want {
			t.Errorf("%s: %v, want %v", c.name, c.got, c.want)
		}
	}
	// 112 responses: the median is 10ms, the p95 and p99 2s, each within 5%.
	if s.P50[0] < 9.5 || s.P50[0] > 10.5 || s.P95[0] < 1900 || s.P95[0] > 2100 || s.P99[0] < 1900 || s.P99[0] > 2100 {
		t.Errorf("p50 %v, p95 %v, p99 %v ms; want 10, 2000, 2000 within 5%%", s.P50[0], s.P95[0], s.P99[0])
	}
	if got := s.Latency["replica-1"]; len(got) != 1 || got[0] != 25 {
		t.Errorf("replica-1's sparkline %v, want [25]", got)
	}
	if got := s.Latency["replica-2"]; len(got) != 1 || !math.IsNaN(float64(got[0])) {
		t.Errorf("replica-2 answered nothing: sparkline %v, want [NaN]", got)
	}

	// A quiet second with no cap: no quantiles, no capacity, as null.
	h.Record(t0.Add(3*time.Second), Sample{Rejected: 107})
	b, err := json.Marshal(h.since(t0.Unix() + 2))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"t":[1800000003]`, `"rps_2xx":[0]`, `"p50_ms":[null]`, `"capacity":[null]`, `"replica-1":[null]`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("a quiet second: %s lacks %s", b, want)
		}
	}
}

func TestHistoryRingKeepsTheLast15Minutes(t *testing.T) {
	h := NewHistory(NewMetrics(&fakeSource{}))
	t0 := time.Unix(1_800_000_000, 0)
	h.Record(t0, Sample{})
	for i := 1; i <= HistoryLen+25; i++ {
		var rs []ReplicaSample
		if i <= 10 { // replica-9 leaves after 10 seconds
			rs = []ReplicaSample{{Name: "replica-9", Count: 1, Mean: time.Millisecond}}
		}
		h.Record(t0.Add(time.Duration(i)*time.Second), Sample{Queued: i, Replicas: rs})
	}
	s := h.since(0)
	if len(s.T) != HistoryLen {
		t.Fatalf("%d points kept, want %d", len(s.T), HistoryLen)
	}
	if s.T[0] != t0.Unix()+26 || s.T[len(s.T)-1] != t0.Unix()+HistoryLen+25 || s.Queued[0] != 26 {
		t.Errorf("kept %d..%d (queued %v first), want the newest %d", s.T[0]-t0.Unix(), s.T[len(s.T)-1]-t0.Unix(), s.Queued[0], HistoryLen)
	}
	for i := 1; i < len(s.T); i++ {
		if s.T[i] != s.T[i-1]+1 {
			t.Fatalf("points out of order at %d: %d after %d", i, s.T[i], s.T[i-1])
		}
	}
	if _, ok := s.Latency["replica-9"]; ok {
		t.Error("a replica gone for 15 minutes still has a sparkline")
	}
	if got := h.since(t0.Unix() + HistoryLen + 20); len(got.T) != 5 || got.Queued[0] != HistoryLen+21 {
		t.Errorf("since the 5th-newest second: %d points from queued %v, want 5", len(got.T), got.Queued)
	}
	// Ticks that come early or late still give one point a second.
	h.Record(t0.Add((HistoryLen+25)*time.Second+300*time.Millisecond), Sample{})
	if s := h.since(0); s.T[len(s.T)-1] != s.T[len(s.T)-2]+1 {
		t.Errorf("an early tick's point at %d after %d", s.T[len(s.T)-1], s.T[len(s.T)-2])
	}
}

func TestEventsRing(t *testing.T) {
	var nilHistory *History
	nilHistory.Event("replica-1", EventStart, "") // no panic
	h := NewHistory(NewMetrics(&fakeSource{}))
	if evs := h.eventsAfter(0); len(evs) != 0 {
		t.Fatalf("events before any: %v", evs)
	}
	for i := 1; i <= eventsKept+100; i++ {
		h.Event("replica-1", EventCrash, strings.Repeat("x", i%3))
	}
	evs := h.eventsAfter(0)
	if len(evs) != eventsKept || evs[0].Seq != 101 || evs[len(evs)-1].Seq != eventsKept+100 {
		t.Fatalf("%d events kept, %d..%d; want the newest %d", len(evs), evs[0].Seq, evs[len(evs)-1].Seq, eventsKept)
	}
	if evs := h.eventsAfter(eventsKept + 90); len(evs) != 10 || evs[0].Seq != eventsKept+91 {
		t.Errorf("after %d: %d events", eventsKept+90, len(evs))
	}
	if evs := h.eventsAfter(eventsKept + 100); len(evs) != 0 {
		t.Errorf("after the last: %d events", len(evs))
	}
}

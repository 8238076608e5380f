package admin

import (
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/mattingctl/mattingctl/internal/latency"
)

// HistoryLen is how many seconds of history the dashboard keeps: 15
// minutes at one point a second.
const HistoryLen = 15 * 60

// Sample is what the instance tells the history once a second; the
// requests answered and their times the history counts itself (Metrics
// feeds it).
type Sample struct {
	Queued   int
	Inflight int64
	// Capacity is how many requests the replicas in rotation may have in
	// flight at once (their number times --max-inflight); 0 when there
	// is no cap.
	Capacity int
	// Rejected is the proxy's count, since the start, of requests it
	// answered 503 itself (queue full or timed out, no replica, buffers
	// full).
	Rejected uint64
	Replicas []ReplicaSample
}

// ReplicaSample is one replica's last whole second.
type ReplicaSample struct {
	Name string
	// Count is the number of its responses in that second and Mean their
	// mean response time.
	Count uint64
	Mean  time.Duration
}

// point is one second of the instance. Rates are per second; times are
// in milliseconds; NaN means none (no response that second, no cap).
type point struct {
	t                          int64 // unix seconds
	ok, c4xx, c5xx, rejected   float32
	p50, p95, p99              float32
	queued, inflight, capacity float32
}

// History keeps the instance's last HistoryLen seconds in fixed rings, and
// its last events, for the dashboard. Record is called once a second by
// one goroutine; everything else reads or appends under mu.
type History struct {
	live   *live
	recent *recentLatency // the last minute, for /metrics' quantiles

	mu       sync.Mutex // guards the fields below
	points   [HistoryLen]point
	n, next  int // points held; where the next goes
	prev     liveSnapshot
	prevRej  uint64
	prevAt   time.Time // zero before the first Record
	replicas map[string]*sparkline
	events   [eventsKept]Event
	seq      uint64 // events recorded; the last one's Seq
}

// sparkline is a replica's mean response time per second, in
// milliseconds, aligned with History.points; NaN for a second it answered
// nothing or did not exist.
type sparkline struct {
	ms   [HistoryLen]float32
	seen int64 // the last second it was sampled
}

// NewHistory returns the history of the requests m observes.
func NewHistory(m *Metrics) *History {
	return &History{live: &m.live, recent: &m.recent, replicas: make(map[string]*sparkline)}
}

// Record adds the second ending at now. The first call only sets the
// start from which the rates of the next are counted.
func (h *History) Record(now time.Time, s Sample) {
	snap := h.live.snapshot()
	h.mu.Lock()
	defer h.mu.Unlock()
	prev, prevRej, prevAt := h.prev, h.prevRej, h.prevAt
	h.prev, h.prevRej, h.prevAt = snap, s.Rejected, now
	if prevAt.IsZero() {
		return
	}
	secs := now.Sub(prevAt).Seconds()
	if secs <= 0 {
		return
	}
	rate := func(n uint64) float32 { return float32(float64(n) / secs) }
	var d latency.Counts
	for i := range d {
		d[i] = snap.buckets[i] - prev.buckets[i]
	}
	h.recent.add(&d, now)
	q := quantilesMs(&d)
	rejected := s.Rejected - prevRej
	c5xx := snap.outcome[outcome5xx] - prev.outcome[outcome5xx]
	p := point{
		t:        now.Round(time.Second).Unix(),
		ok:       rate(snap.outcome[outcomeOK] - prev.outcome[outcomeOK]),
		c4xx:     rate(snap.outcome[outcome4xx] - prev.outcome[outcome4xx]),
		c5xx:     rate(c5xx - min(rejected, c5xx)),
		rejected: rate(rejected),
		p50:      q[0],
		p95:      q[1],
		p99:      q[2],
		queued:   float32(s.Queued),
		inflight: float32(s.Inflight),
		capacity: float32(math.NaN()),
	}
	if s.Capacity > 0 {
		p.capacity = float32(s.Capacity)
	}
	if h.n > 0 {
		p.t = max(p.t, h.points[h.last()].t+1) // strictly increasing, for since
	}
	i := h.next
	h.points[i] = p
	h.next = (h.next + 1) % HistoryLen
	h.n = min(h.n+1, HistoryLen)
	for name, sl := range h.replicas {
		if p.t-sl.seen >= HistoryLen {
			delete(h.replicas, name)
			continue
		}
		sl.ms[i] = float32(math.NaN())
	}
	for _, r := range s.Replicas {
		sl := h.replicas[r.Name]
		if sl == nil {
			sl = &sparkline{}
			for j := range sl.ms {
				sl.ms[j] = float32(math.NaN())
			}
			h.replicas[r.Name] = sl
		}
		sl.seen = p.t
		if r.Count > 0 {
			sl.ms[i] = float32(r.Mean.Seconds() * 1000)
		}
	}
}

func (h *History) last() int { return (h.next - 1 + HistoryLen) % HistoryLen }

// quantilesMs returns the p50, p95 and p99 of the counts in
// milliseconds, NaN when there are none.
func quantilesMs(c *latency.Counts) [3]float32 {
	nan := float32(math.NaN())
	out := [3]float32{nan, nan, nan}
	if c.Total() == 0 {
		return out
	}
	for i, d := range c.Quantiles(0.50, 0.95, 0.99) {
		out[i] = float32(d.Seconds() * 1000)
	}
	return out
}

// Series is the history's points after a time, by column, as
// /api/dashboard sends them. Rates are per second, times in milliseconds;
// null is none.
type Series struct {
	T        []int64 `json:"t"` // unix seconds, one per point
	OK       column  `json:"rps_2xx"`
	C4xx     column  `json:"rps_4xx"`
	C5xx     column  `json:"rps_5xx"`
	Rejected column  `json:"rps_rejected"`
	P50      column  `json:"p50_ms"`
	P95      column  `json:"p95_ms"`
	P99      column  `json:"p99_ms"`
	Queued   column  `json:"queued"`
	Inflight column  `json:"inflight"`
	Capacity column  `json:"capacity"`
	// Latency is each replica's mean response time per second, in
	// milliseconds, aligned with T.
	Latency map[string]column `json:"replica_latency_ms"`
}

// since returns the points after unix second t (all for t <= 0).
func (h *History) since(t int64) Series {
	h.mu.Lock()
	defer h.mu.Unlock()
	k := 0 // the number of points not after t, oldest first
	for k < h.n && h.points[h.index(k)].t <= t {
		k++
	}
	n := h.n - k
	s := Series{
		T: make([]int64, 0, n), OK: make(column, 0, n), C4xx: make(column, 0, n), C5xx: make(column, 0, n),
		Rejected: make(column, 0, n), P50: make(column, 0, n), P95: make(column, 0, n), P99: make(column, 0, n),
		Queued: make(column, 0, n), Inflight: make(column, 0, n), Capacity: make(column, 0, n),
		Latency: make(map[string]column, len(h.replicas)),
	}
	for ; k < h.n; k++ {
		i := h.index(k)
		p := &h.points[i]
		s.T = append(s.T, p.t)
		s.OK, s.C4xx, s.C5xx, s.Rejected = append(s.OK, p.ok), append(s.C4xx, p.c4xx), append(s.C5xx, p.c5xx), append(s.Rejected, p.rejected)
		s.P50, s.P95, s.P99 = append(s.P50, p.p50), append(s.P95, p.p95), append(s.P99, p.p99)
		s.Queued, s.Inflight, s.Capacity = append(s.Queued, p.queued), append(s.Inflight, p.inflight), append(s.Capacity, p.capacity)
		for name, sl := range h.replicas {
			s.Latency[name] = append(s.Latency[name], sl.ms[i])
		}
	}
	return s
}

// index is where the k-th oldest point is.
func (h *History) index(k int) int { return (h.next - h.n + k + HistoryLen) % HistoryLen }

// column is a series of values that encodes NaN as null, and the rest
// rounded to two decimals.
type column []float32

func (c column) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, 2+8*len(c))
	b = append(b, '[')
	for i, v := range c {
		if i > 0 {
			b = append(b, ',')
		}
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			b = append(b, "null"...)
			continue
		}
		b = strconv.AppendFloat(b, math.Round(float64(v)*100)/100, 'f', -1, 64)
	}
	return append(b, ']'), nil
}

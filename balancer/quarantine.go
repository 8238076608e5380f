package balancer

import (
	"crypto/sha256"
	"encoding/hex"
	"sync"
	"sync/atomic"
	"time"
)

// A request whose deliveries killed or reset backends twice, each time
// alone (poison.go), is likely to do it again: the same method, path and
// body are quarantined for Options.Quarantine, and a repeat is answered at
// once with the same 502, instead of taking down two more replicas. The
// key is the SHA-256 of the request, so nothing of the body is kept.
//
// Checking a request costs nothing while the quarantine is empty, and a
// map lookup of its body's length otherwise; only a request whose body has
// the length of a quarantined one is hashed.

// maxQuarantined bounds the entries: past it the oldest is forgotten, so a
// client sending ever new poison bodies costs bounded memory.
const maxQuarantined = 1024

// quarantineKey identifies a request: the SHA-256 of its method, its
// request URI and its body.
type quarantineKey [sha256.Size]byte

func (k quarantineKey) String() string { return hex.EncodeToString(k[:]) }

// quarantine holds the keys of requests that broke backends, until each
// expires.
type quarantine struct {
	ttl time.Duration // 0: nothing is ever quarantined

	size atomic.Int64 // len(entries), read without the lock

	// mu guards entries, order and lens.
	mu      sync.Mutex
	entries map[quarantineKey]quarantined
	order   []quarantineKey // oldest first: every entry lives ttl, so also by expiry
	lens    map[int64]int   // how many entries have each body length
}

// quarantined is one entry: until when, and the answer a repeat gets.
type quarantined struct {
	until   time.Time
	bodyLen int64
	msg     string
}

func newQuarantine(ttl time.Duration) *quarantine {
	return &quarantine{ttl: ttl, entries: make(map[quarantineKey]quarantined), lens: make(map[int64]int)}
}

// add quarantines key, of a request with a body of bodyLen bytes, until
// ttl after now; a repeat is answered msg.
func (q *quarantine) add(key quarantineKey, bodyLen int64, msg string, now time.Time) {
	if q.ttl <= 0 {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.pruneLocked(now)
	if _, ok := q.entries[key]; ok {
		q.removeLocked(key)
		for i, k := range q.order {
			if k == key {
				q.order = append(q.order[:i], q.order[i+1:]...)
				break
			}
		}
	}
	if len(q.order) >= maxQuarantined {
		q.removeLocked(q.order[0])
		q.order = q.order[1:]
	}
	q.entries[key] = quarantined{until: now.Add(q.ttl), bodyLen: bodyLen, msg: msg}
	q.order = append(q.order, key)
	q.lens[bodyLen]++
	q.size.Store(int64(len(q.entries)))
}

// mayHold reports whether a request with a body of bodyLen bytes could be
// quarantined, without hashing it.
func (q *quarantine) mayHold(bodyLen int64) bool {
	if q.size.Load() == 0 {
		return false
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.lens[bodyLen] > 0
}

// lookup returns the answer for key, when it is quarantined at now.
func (q *quarantine) lookup(key quarantineKey, now time.Time) (msg string, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.pruneLocked(now)
	e, ok := q.entries[key]
	return e.msg, ok
}

// pruneLocked forgets the entries expired at now. The caller holds q.mu.
func (q *quarantine) pruneLocked(now time.Time) {
	n := 0
	for n < len(q.order) && !now.Before(q.entries[q.order[n]].until) {
		q.removeLocked(q.order[n])
		n++
	}
	q.order = q.order[n:]
}

// removeLocked deletes key's entry, not its place in order. The caller
// holds q.mu.
func (q *quarantine) removeLocked(key quarantineKey) {
	e, ok := q.entries[key]
	if !ok {
		return
	}
	delete(q.entries, key)
	if q.lens[e.bodyLen]--; q.lens[e.bodyLen] == 0 {
		delete(q.lens, e.bodyLen)
	}
	q.size.Store(int64(len(q.entries)))
}

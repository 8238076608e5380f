package balancer

import (
	"crypto/sha256"
	"strings"
	"testing"
	"time"
)

func TestQuarantine(t *testing.T) {
	now := time.Now()
	key := func(s string) quarantineKey { return sha256.Sum256([]byte(s)) }
	t.Run("holds until its time is up", func(t *testing.T) {
		q := newQuarantine(time.Minute)
		if q.mayHold(5) {
			t.Fatal("an empty quarantine may hold a body")
		}
		q.add(key("a"), 5, "msg a", now)
		if !q.mayHold(5) || q.mayHold(6) {
			t.Errorf("mayHold(5), mayHold(6) = %v, %v; want true, false", q.mayHold(5), q.mayHold(6))
		}
		if msg, ok := q.lookup(key("a"), now.Add(59*time.Second)); !ok || msg != "msg a" {
			t.Errorf("lookup within the minute = %q, %v", msg, ok)
		}
		if _, ok := q.lookup(key("b"), now); ok {
			t.Error("another key is held")
		}
		if _, ok := q.lookup(key("a"), now.Add(time.Minute)); ok {
			t.Error("held past its minute")
		}
		if q.mayHold(5) || q.size.Load() != 0 {
			t.Errorf("an expired entry is still counted: size %d", q.size.Load())
		}
	})
	t.Run("added again: held afresh, counted once", func(t *testing.T) {
		q := newQuarantine(time.Minute)
		q.add(key("a"), 5, "first", now)
		q.add(key("a"), 5, "second", now.Add(30*time.Second))
		if msg, ok := q.lookup(key("a"), now.Add(80*time.Second)); !ok || msg != "second" {
			t.Errorf("lookup = %q, %v; want the second, held from its own time", msg, ok)
		}
		if q.size.Load() != 1 || len(q.order) != 1 || q.lens[5] != 1 {
			t.Errorf("size %d, order %d, lens %v; want one entry", q.size.Load(), len(q.order), q.lens)
		}
	})
	t.Run("bounded: the oldest goes", func(t *testing.T) {
		q := newQuarantine(time.Minute)
		for i := range maxQuarantined + 1 {
			q.add(key(string(rune(i))), int64(i), "m", now)
		}
		if q.size.Load() != maxQuarantined {
			t.Errorf("size %d, want %d", q.size.Load(), maxQuarantined)
		}
		if _, ok := q.lookup(key(string(rune(0))), now); ok {
			t.Error("the oldest entry is still held")
		}
		if _, ok := q.lookup(key(string(rune(maxQuarantined))), now); !ok {
			t.Error("the newest entry is not held")
		}
	})
	t.Run("off", func(t *testing.T) {
		q := newQuarantine(0)
		q.add(key("a"), 5, "m", now)
		if q.mayHold(5) {
			t.Error("a quarantine of 0 held a request")
		}
	})
}

// TestQuarantineKey: the key covers the method, the request URI and the
// body, wherever the body is held.
func TestQuarantineKey(t *testing.T) {
	bufs := newBuffers(1<<20, 1<<20, t.TempDir())
	mem := newTestBody(t, bufs, -1)
	if err := mem.fill(strings.NewReader("poison")); err != nil {
		t.Fatal(err)
	}
	defer mem.done()
	disk := newTestBody(t, newBuffers(0, 1<<20, t.TempDir()), -1)
	if err := disk.fill(strings.NewReader("poison")); err != nil {
		t.Fatal(err)
	}
	defer disk.done()
	if disk.file == nil {
		t.Fatal("the body did not go to disk")
	}
	k := mem.key("POST", "/p?x=1")
	if disk.key("POST", "/p?x=1") != k {
		t.Error("the same body on disk has another key")
	}
	for name, other := range map[string]quarantineKey{
		"method": mem.key("PUT", "/p?x=1"),
		"query":  mem.key("POST", "/p?x=2"),
		"body":   (*bufferedBody)(nil).key("POST", "/p?x=1"),
	} {
		if other == k {
			t.Errorf("another %s, the same key", name)
		}
	}
}

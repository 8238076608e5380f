package replica

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/testutil"
)

// fakeClock is a clock that moves only when told.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time      { return c.t }
func (c *fakeClock) add(d time.Duration) { c.t = c.t.Add(d) }
func limiterAt(rate int64) (*rateLimiter, *fakeClock) {
	c := &fakeClock{t: time.Unix(1_000_000, 0)}
	l := newRateLimiter(rate)
	l.now, l.last = c.now, c.t
	return l, c
}

func TestRateLimiterBudget(t *testing.T) {
	if newRateLimiter(0) != nil {
		t.Fatal("a zero rate made a limiter")
	}
	l, clock := limiterAt(1000)
	if !l.room() {
		t.Fatal("a new budget has no room")
	}
	l.spend(1500) // a line larger than what is left passes whole
	if l.room() {
		t.Fatal("room after spending more than the budget")
	}
	if d := l.untilRoom(); d < 500*time.Millisecond || d > 510*time.Millisecond {
		t.Fatalf("untilRoom = %s, want just over 500ms (500 bytes owed at 1000/s)", d)
	}
	clock.add(501 * time.Millisecond)
	if !l.room() {
		t.Fatal("no room once the debt is paid")
	}
	clock.add(time.Hour)
	l.spend(1000)
	if l.room() {
		t.Fatal("the budget held more than a second's worth")
	}
	// Many small refills add up: none is lost to rounding.
	for range 1000 {
		clock.add(time.Millisecond)
		l.room()
	}
	if l.untilRoom() > 0 {
		t.Fatal("a second of small refills did not refill a second's worth")
	}
}

func TestRateNoticesAreSpaced(t *testing.T) {
	l, clock := limiterAt(1000)
	if n := l.dropped(5); n != 5 {
		t.Fatalf("first notice = %d, want 5 at once", n)
	}
	clock.add(time.Second)
	if n := l.dropped(7); n != 0 {
		t.Fatalf("notice 1s later = %d, want none yet", n)
	}
	clock.add(rateNoticeEvery)
	if n := l.dropped(1); n != 8 {
		t.Fatalf("notice after %s = %d, want 8 (7+1)", rateNoticeEvery, n)
	}
	l.dropped(0)
	if n := l.flush(); n != 0 {
		t.Fatalf("flush = %d, want nothing pending", n)
	}
	if rateNotice(1, 1<<20) != "mattingctl: dropped 1 line: this replica writes more than 1MiB a second (--output-rate)\n" {
		t.Errorf("notice = %q", rateNotice(1, 1<<20))
	}
	if got := formatBytes(1500); got != "1500 bytes" {
		t.Errorf("formatBytes(1500) = %q", got)
	}
}

// feedLimited is feed with a budget of rate bytes a second whose clock
// never moves: what passes is the first second's worth.
func feedLimited(o *Output, rate int64, input string) string {
	var buf bytes.Buffer
	o.Stdout = &buf
	lim, _ := limiterAt(rate)
	r, w := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		o.copyLines(o.Stdout, "r-1", r, lim)
	}()
	_, _ = io.WriteString(w, input)
	w.Close()
	<-done
	return buf.String()
}

// Past the budget lines are dropped whole, counted, and a notice says how
// many; lines passed and dropped add up to what the replica wrote.
func TestOutputOverRateDropsWholeLines(t *testing.T) {
	const lines, size = 10_000, 100 // 1 MB
	line := strings.Repeat("x", size-1) + "\n"
	o := &Output{}
	got := feedLimited(o, 64<<10, strings.Repeat(line, lines))
	passed, noticed := 0, uint64(0)
	for _, l := range strings.Split(strings.TrimSuffix(got, "\n"), "\n") {
		var n uint64
		switch {
		case l == "r-1 | "+line[:size-1]:
			passed++
		case fmtScan(l, "r-1 | mattingctl: dropped %d", &n):
			noticed += n
		default:
			t.Fatalf("a line was cut or mangled: %q", l)
		}
	}
	dropped := o.RateDropped()
	t.Logf("%d lines passed, %d dropped, %d in notices", passed, dropped, noticed)
	if want := (64 << 10) / (size + 6); passed < want || passed > want+2 {
		t.Errorf("%d lines passed, want a budget's worth, %d", passed, want)
	}
	if uint64(passed)+dropped != lines {
		t.Errorf("%d passed + %d dropped != %d written", passed, dropped, lines)
	}
	if noticed != dropped {
		t.Errorf("the notices say %d lines were dropped, not %d", noticed, dropped)
	}
}

// fmtScan reports whether s starts as format says, filling n.
func fmtScan(s, format string, n *uint64) bool {
	_, err := fmt.Sscanf(s, format, n)
	return err == nil
}

// A long line split in pieces, dropped mid-way, counts once; the next
// line after the budget refills comes whole.
func TestOutputOverRateMidLine(t *testing.T) {
	long := strings.Repeat("y", 3*maxLine) + "\n"
	o := &Output{}
	got := feedLimited(o, maxLine, long+"next\n")
	if !strings.HasPrefix(got, "r-1 | "+strings.Repeat("y", maxLine)+"\n") {
		t.Errorf("the first piece, within the budget, did not pass")
	}
	if o.RateDropped() != 2 { // the rest of the long line, and next
		t.Errorf("RateDropped = %d, want 2", o.RateDropped())
	}
}

// A line that comes after a quiet spell, once the budget has room again,
// passes though a flood before it was being dropped: the skim does not
// wait in a read past the moment the budget refills. (A traceback after a
// noisy start must be seen.)
func TestOutputAfterFloodLineIsKept(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	var out testutil.SyncBuffer
	o := &Output{Stdout: &out}
	lim := newRateLimiter(16 << 10)
	done := make(chan struct{})
	go func() {
		defer close(done)
		o.copyLines(o.Stdout, "r-1", r, lim)
	}()
	flood := strings.Repeat(strings.Repeat("z", 99)+"\n", 2000) // 200 KB at 16 KB/s
	if _, err := io.WriteString(w, flood); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 5*time.Second, "the flood to be dropped", func() bool { return o.RateDropped() > 0 })
	time.Sleep(1500 * time.Millisecond) // the budget refills
	if _, err := io.WriteString(w, "Traceback (most recent call last):\n"); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 5*time.Second, "the line after the flood", func() bool {
		return strings.Contains(out.String(), "r-1 | Traceback (most recent call last):\n")
	})
	w.Close()
	<-done
}

// BenchmarkOutputFlood is what a megabyte of 100-byte lines costs to pass
// on (no limit) and to drop (past the rate): compare their ns/op, or MB/s.
func BenchmarkOutputFlood(b *testing.B) {
	chunk := []byte(strings.Repeat(strings.Repeat("x", 99)+"\n", 10_000)) // 1 MB
	for _, tt := range []struct {
		name string
		rate int64
	}{{"unlimited", 0}, {"over-rate", 1}} {
		b.Run(tt.name, func(b *testing.B) {
			r, w, err := os.Pipe()
			if err != nil {
				b.Fatal(err)
			}
			o := &Output{Stdout: io.Discard}
			done := make(chan struct{})
			go func() {
				defer close(done)
				o.copyLines(o.Stdout, "replica-1", r, newRateLimiter(tt.rate))
			}()
			b.SetBytes(int64(len(chunk)))
			b.ResetTimer()
			for range b.N {
				if _, err := w.Write(chunk); err != nil {
					b.Fatal(err)
				}
			}
			w.Close()
			<-done
		})
	}
}

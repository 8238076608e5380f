package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// poisonLine is what fakemodel -poison prints for each delivery of a
// poison request: the deliveries are counted at the replicas.
const poisonLine = "poison request, resetting"

// poison is attack 2: a request whose body makes a live replica reset
// the connection (fakemodel -poison), at default flags (--retries 2),
// replicas of 5 ms. The poison is sent once, then again while
// quarantined; then, for 16 s, a new poison request starts every other
// second. Bound: the first delivered at most --retries+1 = 3 times, the
// repeat answered at once without a delivery, and legitimate throughput
// in the seconds with a poison request at least 90% of that in the
// seconds without (alternate seconds, so that a shared machine's load
// weighs on both alike).
func poison(ctx context.Context, e *environment, _ attackOptions) (attackRow, error) {
	t, err := e.startTarget(ctx, "poison", 0, nil, []string{"-poison", "POISON", "-service", "5ms"})
	if err != nil {
		return attackRow{}, err
	}
	defer t.stop()
	deliveries := func() int { return strings.Count(t.log(), poisonLine) }
	attacker := &http.Client{Timeout: 30 * time.Second}
	defer attacker.CloseIdleConnections()
	send := func(body string) (int, string, time.Duration) {
		t0 := time.Now()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, t.url("/predict"), strings.NewReader(body))
		resp, err := attacker.Do(req)
		if err != nil {
			return 0, errorKind(err), time.Since(t0)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(b)), time.Since(t0)
	}
	legit := startLegit(ctx, t.url("/legit"))
	defer legit.finish()
	sleepCtx(ctx, 300*time.Millisecond)

	row := attackRow{attack: "poison: a body that makes a live replica reset, at default --retries 2; then a new one every other second for 16 s"}
	code, first, took := send(`{"image":"POISON"}`)
	if code != http.StatusBadGateway {
		row.unmet("the poison answered %d %q", code, first)
	}
	sleepCtx(ctx, time.Second) // a late delivery would show by now
	delivered := deliveries()
	code2, again, tookAgain := send(`{"image":"POISON"}`)
	if code2 != http.StatusBadGateway || again != first {
		row.unmet("the repeat answered %d %q", code2, again)
	}
	sleepCtx(ctx, 500*time.Millisecond)
	repeatDelivered := deliveries() - delivered

	var with, without int64
	const pairs = 8
	for i := range 2 * pairs {
		before := legit.served()
		end := time.Now().Add(time.Second)
		if i%2 == 1 {
			if c, answer, _ := send(fmt.Sprintf(`{"image":"POISON %d"}`, i)); c != http.StatusBadGateway {
				row.unmet("poison %d answered %d %q", i, c, answer)
			}
		}
		sleepCtx(ctx, time.Until(end))
		if n := legit.served() - before; i%2 == 1 {
			with += n
		} else {
			without += n
		}
	}
	sleepCtx(ctx, 500*time.Millisecond)
	streamDelivered := deliveries() - delivered - repeatDelivered
	row.legit = legit.finish()
	row.rss = t.peakRSS()
	ratio := 0.0
	if without > 0 {
		ratio = 100 * float64(with) / float64(without)
	}
	row.bound = fmt.Sprintf("delivered %d times (bound: ≤ --retries+1 = 3), answered %d in %s; the repeat %d in %s while quarantined, delivered %d times; "+
		"%d deliveries of the %d in the stream; legit %d req/s with a poison a second, %d without: %.0f%% (bound: ≥ 90%%)",
		delivered, code, took.Round(time.Millisecond), code2, tookAgain.Round(100*time.Microsecond), repeatDelivered,
		streamDelivered, pairs, with/pairs, without/pairs, ratio)
	row.checkCommon(99, 0)
	if delivered < 1 || delivered > 3 {
		row.unmet("delivered %d times", delivered)
	}
	if repeatDelivered != 0 {
		row.unmet("the quarantined repeat was delivered")
	}
	if tookAgain > 500*time.Millisecond {
		row.unmet("the quarantined repeat took %s", tookAgain)
	}
	if ratio < 90 {
		row.unmet("throughput %.0f%% < 90%%", ratio)
	}
	return row, nil
}

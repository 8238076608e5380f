package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// poisonLine is what fakemodel -poison prints for each delivery of a
// poison request: counted at the replicas.
const poisonLine = "poison request, resetting"

// postBody sends body to url and returns the status and the answer.
func postBody(ctx context.Context, url, body string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// TestPoisonRequestStopsAtItsBudget: a request that makes a live replica
// reset the connection is delivered twice (at most --retries+1), answered
// 502 naming the cause, and a repeat of it fails at once, quarantined,
// without reaching a replica; ordinary requests beside it are all served.
func TestPoisonRequestStopsAtItsBudget(t *testing.T) {
	in := start(t, 2, "--retries", "2", "--", fakemodel, "-poison", "POISON")
	in.waitReady(2)
	l := startLoad(in.url("/legit"), 4)

	start := time.Now()
	code, first, err := postBody(t.Context(), in.url("/predict"), `{"image":"POISON"}`)
	if err != nil || code != http.StatusBadGateway || !strings.Contains(first, "reset by replica") {
		t.Fatalf("poison: %d %s (%v); want 502 naming the resets", code, first, err)
	}
	t.Logf("poison answered in %s: %s", time.Since(start), first)
	time.Sleep(time.Second) // any late delivery would show by now
	delivered := strings.Count(in.stdout.String()+in.stderr.String(), poisonLine)
	if delivered < 1 || delivered > 3 {
		t.Errorf("the poison request was delivered %d times, want at most --retries+1 = 3", delivered)
	}
	start = time.Now()
	code, again, err := postBody(t.Context(), in.url("/predict"), `{"image":"POISON"}`)
	if err != nil || code != http.StatusBadGateway || again != first {
		t.Errorf("repeat: %d %s (%v); want the same 502", code, again, err)
	}
	if took := time.Since(start); took > 500*time.Millisecond {
		t.Errorf("the quarantined repeat took %s", took)
	}
	time.Sleep(500 * time.Millisecond)
	if n := strings.Count(in.stdout.String()+in.stderr.String(), poisonLine); n != delivered {
		t.Errorf("the quarantined repeat reached a replica: %d deliveries, were %d", n, delivered)
	}
	ok, failures, _ := l.finish()
	if len(failures) > 0 {
		t.Errorf("%d of %d ordinary requests failed beside the poison: %v", len(failures), ok+len(failures), failures[:min(3, len(failures))])
	}
	st := in.status()
	if st.Quarantined != 1 || st.QuarantineHits != 1 {
		t.Errorf("status: quarantined %d, hits %d; want 1 and 1", st.Quarantined, st.QuarantineHits)
	}
	if !strings.Contains(in.stderr.String(), "quarantined a request that broke replicas twice") {
		t.Errorf("no warning of the quarantine in the log")
	}
}

// TestPoisonRequestStopsWhenItsClientLeaves: a client that gives up on a
// poison request while it is being delivered takes it with it: it is not
// delivered again.
func TestPoisonRequestStopsWhenItsClientLeaves(t *testing.T) {
	in := start(t, 2, "--retries", "2", "--", fakemodel, "-poison", "POISON")
	in.waitReady(2)
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	// The replica holds it for 1s before resetting: the client is gone by then.
	if _, _, err := postBody(ctx, in.url("/predict?sleep=1s"), "POISON"); err == nil {
		t.Fatal("the client's request was answered before it gave up")
	}
	time.Sleep(3 * time.Second)
	if n := strings.Count(in.stdout.String()+in.stderr.String(), poisonLine); n != 1 {
		t.Errorf("delivered %d times, want only the one under way when its client left", n)
	}
}

// TestPoisonStreamCostsLittle: ordinary throughput while a different
// poison request arrives every second is at least 90% of what it is
// without them. One ordinary load runs throughout, and seconds with and
// without a poison request alternate, so that the load of a shared
// machine weighs on both alike.
func TestPoisonStreamCostsLittle(t *testing.T) {
	in := start(t, 2, "--", fakemodel, "-poison", "POISON", "-service", "5ms")
	in.waitReady(2)
	var served atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := get(in.url("/legit")); err != nil {
					t.Errorf("an ordinary request: %v", err)
					return
				}
				served.Add(1)
			}
		}()
	}
	const pairs = 8
	var with, without int64
	var slots []int64
	for i := range 2 * pairs {
		before := served.Load()
		end := time.Now().Add(time.Second)
		if i%2 == 1 {
			if code, _, err := postBody(t.Context(), in.url("/predict"), fmt.Sprintf("POISON %d", i)); code != http.StatusBadGateway {
				t.Errorf("poison %d: %d, %v", i, code, err)
			}
		}
		time.Sleep(time.Until(end))
		n := served.Load() - before
		slots = append(slots, n)
		if i%2 == 1 {
			with += n
		} else {
			without += n
		}
	}
	close(stop)
	wg.Wait()
	t.Logf("ordinary requests a second: %d without poison, %d with one a second (%.0f%%); by second, without and with in turn: %v",
		without/pairs, with/pairs, 100*float64(with)/float64(without), slots)
	if float64(with) < 0.9*float64(without) {
		t.Errorf("with a poison request a second, %d ordinary requests: less than 90%% of %d without", with, without)
	}
	if n := strings.Count(in.stdout.String()+in.stderr.String(), poisonLine); n > 2*pairs {
		t.Errorf("%d deliveries of %d poison requests, want at most 2 each", n, pairs)
	}
}

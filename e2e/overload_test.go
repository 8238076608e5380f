package e2e

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/testutil"
)

// originalSizedBody is a body the size of the original load test's request (~220 KB).
var originalSizedBody = bytes.Repeat([]byte("a"), 220<<10)

type outcome struct {
	code       int
	retryAfter string
	err        error
	took       time.Duration
}

func post(url string, body []byte) outcome {
	start := time.Now()
	resp, err := client.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return outcome{err: err, took: time.Since(start)}
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return outcome{code: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After"), err: err, took: time.Since(start)}
}

// TestKilledReplicaUnderLoadLosesNothing kills a replica with kill -9
// while clients send the original load test's payload: the requests it held are retried
// on the others and no client sees a failure.
func TestKilledReplicaUnderLoadLosesNothing(t *testing.T) {
	t.Parallel()
	in := start(t, 4, "--", fakemodel)
	st := in.waitReady(4)
	victim := st.Replicas[1]

	var mu sync.Mutex
	var ok, failed int
	var firstErr string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				o := post(in.url("/api/matting_base64?sleep=5ms"), originalSizedBody)
				mu.Lock()
				if o.err == nil && o.code == http.StatusOK {
					ok++
				} else {
					failed++
					if firstErr == "" {
						firstErr = strconv.Itoa(o.code) + " " + errString(o.err)
					}
				}
				mu.Unlock()
			}
		}()
	}
	testutil.WaitFor(t, 20*time.Second, "the victim to be busy", func() bool {
		for _, r := range in.status().Replicas {
			if r.ID == victim.ID && r.Inflight > 0 && r.Requests > 20 {
				return true
			}
		}
		return false
	})
	if err := syscall.Kill(victim.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 20*time.Second, "the victim restarted and serving", func() bool {
		r := in.status().Replicas[1]
		return r.State == "ready" && r.Pid != victim.Pid && r.Requests > victim.Requests
	})
	close(stop)
	wg.Wait()
	if failed > 0 {
		t.Fatalf("%d of %d requests failed around the kill -9; first: %s", failed, ok+failed, firstErr)
	}
	after := in.status()
	t.Logf("%d requests, all answered; retried %d, replica-2 restarts %d", ok, after.Retried, after.Replicas[1].Restarts)
	if after.Replicas[1].Restarts != 1 || after.Failed != 0 {
		t.Errorf("after the kill: %+v", after)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestQueueOverflow floods one slow replica: only 200s and 503s, every 503
// with Retry-After, nobody waiting much past the queue timeout.
func TestQueueOverflow(t *testing.T) {
	// Not parallel: it bounds how long a request waits, so it runs alone.
	in := start(t, 1, "--max-inflight", "2", "--queue", "4", "--queue-timeout", "500ms", "--", fakemodel)
	in.waitReady(1)
	const n = 40
	outcomes := make(chan outcome, n)
	for range n {
		go func() { outcomes <- post(in.url("/?sleep=300ms"), []byte(`{}`)) }()
	}
	counts := map[int]int{}
	for range n {
		o := <-outcomes
		if o.err != nil {
			t.Errorf("request failed outright: %v", o.err)
			continue
		}
		counts[o.code]++
		switch o.code {
		case http.StatusOK:
		case http.StatusServiceUnavailable:
			if secs, err := strconv.Atoi(o.retryAfter); err != nil || secs < 1 {
				t.Errorf("503 with Retry-After %q", o.retryAfter)
			}
		default:
			t.Errorf("status %d, want only 200 and 503", o.code)
		}
		// Queue timeout 500ms plus one 300ms service time, with slack for
		// a loaded machine.
		if o.took > 2*time.Second {
			t.Errorf("a request took %s with a 500ms queue timeout", o.took)
		}
	}
	if counts[200] < 2 || counts[503] == 0 {
		t.Errorf("outcomes %v: want some 200s and some 503s", counts)
	}
	st := in.status()
	if st.Rejected != uint64(counts[503]) || st.QueueMax != 4 || st.Replicas[0].MaxInflight != 2 {
		t.Errorf("status rejected=%d queue_max=%d max_inflight=%d; clients saw %d 503s",
			st.Rejected, st.QueueMax, st.Replicas[0].MaxInflight, counts[503])
	}
	table, _, _ := in.ctl("status")
	if !strings.Contains(table, "rejected "+strconv.Itoa(counts[503])) {
		t.Errorf("status table does not show the rejections:\n%s", table)
	}
}

// TestMaxBody answers an oversized body 413 before it reaches a replica,
// and serves on.
func TestMaxBody(t *testing.T) {
	t.Parallel()
	in := start(t, 1, "--max-body", "1k", "--", fakemodel)
	in.waitReady(1)
	if o := post(in.url("/api/matting_base64"), bytes.Repeat([]byte("x"), 2048)); o.code != http.StatusRequestEntityTooLarge {
		t.Fatalf("2 KiB body with --max-body 1k: %+v", o)
	}
	if n := in.status().Replicas[0].Requests; n != 0 {
		t.Errorf("the replica saw %d requests; the oversized one must not reach it", n)
	}
	if o := post(in.url("/api/matting_base64"), bytes.Repeat([]byte("x"), 1024)); o.code != http.StatusOK {
		t.Fatalf("1 KiB body after a 413: %+v", o)
	}
}

package balancer

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

// The operator is told, at warn level and once per summaryEvery while it
// goes on, how many requests were rejected, failed or broken off and why,
// in one line:
//
//	rejected 94 requests in the last 10s: predicted wait over queue timeout (63), queue full (31)
//	broke off 16 responses in the last 10s: client took nothing for --send-timeout (16)
//
// and, at info level, how many were sent to a backend again and why:
//
//	retried 57 requests in the last 10s: replica busy (50), reset by replica (7)
//
// The counts are atomics the request path adds to; one goroutine, for the
// life of Serve, reads and logs them.

// summaryEvery is how often the rejection summary is logged.
const summaryEvery = 10 * time.Second

// Why a request was answered 503 by the proxy itself.
type reason int

const (
	reasonNoBackend reason = iota
	reasonQueueFull
	reasonPredictedWait
	reasonQueueTimeout
	reasonBuffersFull
	reasonBufferDir
	numReasons
)

var reasonText = [numReasons]string{
	reasonNoBackend:     "no ready replica",
	reasonQueueFull:     "queue full",
	reasonPredictedWait: "predicted wait over queue timeout",
	reasonQueueTimeout:  "queue timeout",
	reasonBuffersFull:   "request body buffers full",
	reasonBufferDir:     "cannot write request bodies to --buffer-dir",
}

// reasonOf is the reason for acquire's error err.
func reasonOf(err error) reason {
	switch {
	case errors.Is(err, errQueueFull):
		return reasonQueueFull
	case errors.Is(err, errPredictedWait):
		return reasonPredictedWait
	case errors.Is(err, errQueueTimeout):
		return reasonQueueTimeout
	default:
		return reasonNoBackend
	}
}

var causeText = [numCauses]string{
	sendTimeout:     "client took nothing for --send-timeout",
	upstreamTimeout: "replica sent nothing for --upstream-timeout",
}

// outcomes counts the requests the proxy answered with an error of its
// own, by reason, and the responses it broke off, by cause, since it
// started.
type outcomes struct {
	rejected       [numReasons]atomic.Uint64
	badGateway     atomic.Uint64 // 502: no replica answered
	gatewayTimeout atomic.Uint64 // 504: no answer within the upstream timeout
	poisoned       atomic.Uint64 // 502: its deliveries broke replicas twice
	quarantineHits atomic.Uint64 // 502: quarantined
	limited        [numLimits]atomic.Uint64
	retries        [numFailures]atomic.Uint64 // attempts tried again, by how the one before failed
	rapidResets    atomic.Uint64              // client connections closed for cancelling requests early
	brokenOff      [numCauses]atomic.Uint64
}

// retriedAfter counts a request tried again after a failure f.
func (o *outcomes) retriedAfter(f failure) { o.retries[f].Add(1) }

// reject counts a request answered 503 for why.
func (b *Balancer) reject(why reason) {
	b.rejected.Add(1)
	b.outcomes.rejected[why].Add(1)
}

// failedWith counts a request answered code, 502 or 504, because no
// replica answered it.
func (b *Balancer) failedWith(code int) {
	if code == http.StatusGatewayTimeout {
		b.outcomes.gatewayTimeout.Add(1)
	} else {
		b.outcomes.badGateway.Add(1)
	}
}

// brokeOff counts a response the proxy broke off mid-way for cause;
// notBroken is not counted.
func (b *Balancer) brokeOff(cause breakCause) {
	if cause != notBroken {
		b.outcomes.brokenOff[cause].Add(1)
	}
}

// snapshot is the counts at one moment.
type snapshot struct {
	rejected                   [numReasons]uint64
	badGateway, gatewayTimeout uint64
	poisoned, quarantineHits   uint64
	limited                    [numLimits]uint64
	retries                    [numFailures]uint64
	rapidResets                uint64
	brokenOff                  [numCauses]uint64
}

func (o *outcomes) snapshot() snapshot {
	var s snapshot
	for i := range o.rejected {
		s.rejected[i] = o.rejected[i].Load()
	}
	for i := range o.brokenOff {
		s.brokenOff[i] = o.brokenOff[i].Load()
	}
	s.badGateway = o.badGateway.Load()
	s.gatewayTimeout = o.gatewayTimeout.Load()
	s.poisoned = o.poisoned.Load()
	s.quarantineHits = o.quarantineHits.Load()
	for i := range o.limited {
		s.limited[i] = o.limited[i].Load()
	}
	for i := range o.retries {
		s.retries[i] = o.retries[i].Load()
	}
	s.rapidResets = o.rapidResets.Load()
	return s
}

// summary describes the requests refused or failed in now but not in
// before, over the last every; "" when there are none.
func summary(before, now snapshot, every time.Duration) string {
	var parts []string
	counts := func(what string, texts []string, now, before []uint64) {
		var total uint64
		var why []string
		for i := range now {
			if n := now[i] - before[i]; n > 0 {
				total += n
				why = append(why, fmt.Sprintf("%s (%d)", texts[i], n))
			}
		}
		if total > 0 {
			parts = append(parts, fmt.Sprintf("%s %d %s in the last %s: %s", what, total, requests(total), every, strings.Join(why, ", ")))
		}
	}
	counts("rejected", reasonText[:], now.rejected[:], before.rejected[:])
	counts("refused", limitText[:], now.limited[:], before.limited[:])
	counts("failed", failedText[:],
		[]uint64{now.badGateway, now.poisoned, now.quarantineHits, now.gatewayTimeout},
		[]uint64{before.badGateway, before.poisoned, before.quarantineHits, before.gatewayTimeout})
	if n := now.rapidResets - before.rapidResets; n > 0 {
		parts = append(parts, fmt.Sprintf("closed %d client %s in the last %s that cancelled most of their requests as soon as they sent them (HTTP/2 rapid reset)",
			n, plural(n, "connection", "connections"), every))
	}
	var broken uint64
	var causes []string
	for i := range now.brokenOff {
		if n := now.brokenOff[i] - before.brokenOff[i]; n > 0 {
			broken += n
			causes = append(causes, fmt.Sprintf("%s (%d)", causeText[i], n))
		}
	}
	if broken > 0 {
		parts = append(parts, fmt.Sprintf("broke off %d %s in the last %s: %s", broken, plural(broken, "response", "responses"), every, strings.Join(causes, ", ")))
	}
	return strings.Join(parts, "; ")
}

var failedText = [...]string{
	"502 no answer from a replica",
	"502 request broke replicas twice",
	"502 request quarantined",
	"504 no answer within the upstream timeout",
}

// retrySummary describes the attempts tried again in now but not in
// before, over the last every, by how the attempt before failed; "" when
// there are none.
func retrySummary(before, now snapshot, every time.Duration) string {
	var total uint64
	var why []string
	for _, f := range []failure{busy, reset, dropped, refused} {
		if n := now.retries[f] - before.retries[f]; n > 0 {
			total += n
			why = append(why, fmt.Sprintf("%s (%d)", retryText[f], n))
		}
	}
	if total == 0 {
		return ""
	}
	return fmt.Sprintf("retried %d %s in the last %s: %s", total, requests(total), every, strings.Join(why, ", "))
}

var retryText = [numFailures]string{
	busy:    "replica busy",
	reset:   "reset by replica",
	dropped: "replica died",
	refused: "replica refused",
}

func requests(n uint64) string { return plural(n, "request", "requests") }

// plural is one if n is 1, more otherwise.
func plural(n uint64, one, more string) string {
	if n == 1 {
		return one
	}
	return more
}

// summarize logs the summaries every interval until stop is closed, and
// once more then for what is left.
func (b *Balancer) summarize(every time.Duration, stop <-chan struct{}) {
	t := time.NewTicker(every)
	defer t.Stop()
	last := b.outcomes.snapshot()
	for {
		var stopping bool
		select {
		case <-t.C:
		case <-stop:
			stopping = true
		}
		now := b.outcomes.snapshot()
		if s := summary(last, now, every); s != "" {
			b.cfg().Logger.Warn(s)
		}
		if s := retrySummary(last, now, every); s != "" {
			b.cfg().Logger.Info(s)
		}
		if stopping {
			return
		}
		last = now
	}
}

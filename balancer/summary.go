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
	numReasons
)

var reasonText = [numReasons]string{
	reasonNoBackend:     "no ready replica",
	reasonQueueFull:     "queue full",
	reasonPredictedWait: "predicted wait over queue timeout",
	reasonQueueTimeout:  "queue timeout",
	reasonBuffersFull:   "request body buffers full",
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
	brokenOff      [numCauses]atomic.Uint64
}

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
	return s
}

// summary describes the requests counted in now but not in before, over
// the last every; "" when there are none.
func summary(before, now snapshot, every time.Duration) string {
	var rejected uint64
	var why []string
	for i := range now.rejected {
		if n := now.rejected[i] - before.rejected[i]; n > 0 {
			rejected += n
			why = append(why, fmt.Sprintf("%s (%d)", reasonText[i], n))
		}
	}
	bad := now.badGateway - before.badGateway
	slow := now.gatewayTimeout - before.gatewayTimeout
	var parts []string
	if rejected > 0 {
		parts = append(parts, fmt.Sprintf("rejected %d %s in the last %s: %s", rejected, requests(rejected), every, strings.Join(why, ", ")))
	}
	if bad+slow > 0 {
		var codes []string
		if bad > 0 {
			codes = append(codes, fmt.Sprintf("502 no answer from a replica (%d)", bad))
		}
		if slow > 0 {
			codes = append(codes, fmt.Sprintf("504 no answer within the upstream timeout (%d)", slow))
		}
		parts = append(parts, fmt.Sprintf("failed %d %s in the last %s: %s", bad+slow, requests(bad+slow), every, strings.Join(codes, ", ")))
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
		parts = append(parts, fmt.Sprintf("broke off %d %s in the last %s: %s", broken, plural(broken, "response"), every, strings.Join(causes, ", ")))
	}
	return strings.Join(parts, "; ")
}

func requests(n uint64) string { return plural(n, "request") }

// plural is noun, with an s unless n is 1.
func plural(n uint64, noun string) string {
	if n == 1 {
		return noun
	}
	return noun + "s"
}

// summarize logs the summary every interval until stop is closed, and
// once more then for what is left.
func (b *Balancer) summarize(every time.Duration, stop <-chan struct{}) {
	t := time.NewTicker(every)
	defer t.Stop()
	last := b.outcomes.snapshot()
	for {
		select {
		case <-t.C:
		case <-stop:
			if s := summary(last, b.outcomes.snapshot(), every); s != "" {
				b.opts.Logger.Warn(s)
			}
			return
		}
		now := b.outcomes.snapshot()
		if s := summary(last, now, every); s != "" {
			b.opts.Logger.Warn(s)
		}
		last = now
	}
}

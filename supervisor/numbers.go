package supervisor

import (
	"fmt"
	"strings"
	"time"

	"github.com/mattingctl/mattingctl/balancer"
)

// checkNumbers rejects the numbers and durations of o that are out of
// range, naming the flag. None is ever replaced by a default: a negative
// value is refused, and zero either has the one meaning its field's
// comment gives (and `up --help` states) or is refused too. Defaults come
// from DefaultOptions, so a zero here was asked for.
func (o Options) checkNumbers() error {
	var queueTimeout time.Duration // nil: the --upstream-timeout value, checked as that
	if o.QueueTimeout != nil {
		queueTimeout = *o.QueueTimeout
	}
	var clientBuffer int64 // nil: half of the body budgets, checked as those
	if o.MaxClientBuffer != nil {
		clientBuffer = *o.MaxClientBuffer
	}
	durations := []struct {
		flag   string
		d      time.Duration
		zeroOK bool // zero has a meaning
	}{
		{"--ready-timeout", o.ReadyTimeout, false},
		{"--stop-timeout", o.StopTimeout, false},
		{"--client-timeout", o.ClientTimeout, false},
		{"--upstream-timeout", o.UpstreamTimeout, false},
		{"--send-timeout", o.SendTimeout, false},
		{"--connect-timeout", o.ConnectTimeout, false},
		{"--queue-timeout", queueTimeout, true}, // no limit
		{"--drain-delay", o.DrainDelay, true},   // no delay
		{"--quarantine", o.Quarantine, true},    // never
		{"--upload-grace", o.UploadGrace, true}, // none
		{"--scale-up-delay", o.ScaleUpDelay, false},
		{"--scale-down-delay", o.ScaleDownDelay, false},
	}
	for _, d := range durations {
		switch {
		case d.d < 0:
			return fmt.Errorf("%s must not be negative, not %s", d.flag, d.d)
		case d.d == 0 && !d.zeroOK:
			return fmt.Errorf("%s must be more than 0", d.flag)
		}
	}
	counts := []struct {
		flag string
		n    int64
		min  int64
		zero string // what zero means, for the error; empty when min > 0
	}{
		{"--base-port", int64(o.BasePort), 0, "the proxy port plus one"},
		{"--max-inflight", int64(o.MaxInflight), 0, "no cap"},
		{"--queue", int64(o.Queue), 0, "no queue"},
		{"--retries", int64(o.Retries), 0, "no retries"},
		{"--start-concurrency", int64(o.StartConcurrency), 0, "all at once"},
		{"--max-requests", int64(o.MaxRequests), 0, "never"},
		{"--max-requests-jitter", int64(o.MaxRequestsJitter), 0, "none"},
		{"--max-memory", o.MaxMemory, 0, "never"},
		{"--max-buffer", o.MaxBuffer, 0, "no body in memory"},
		{"--max-disk-buffer", o.MaxDiskBuffer, 0, "no body on disk"},
		{"--response-buffer", o.ResponseBuffer, 0, "no response read ahead"},
		{"--max-client-uploads", int64(o.MaxClientUploads), 0, "no cap"},
		{"--max-client-buffer", clientBuffer, 0, "no cap"},
		{"--min-upload-rate", o.MinUploadRate, 0, "no minimum"},
		{"--output-rate", o.OutputRate, 0, "no bound"},
		{"--max-body", o.MaxBody, 1, ""},
		{"--min-ready", int64(o.MinReady), 1, ""},
		{"--warmup-count", int64(o.WarmupCount), 1, ""},
		{"--admin-max-conns", int64(o.AdminMaxConns), 1, ""},
	}
	if b := o.AdaptiveInflight; b != (balancer.InflightBounds{}) && (b.Min < 1 || b.Max < b.Min) {
		return fmt.Errorf("--max-inflight auto:%d-%d: want 1 <= MIN <= MAX, such as auto:1-32", b.Min, b.Max)
	}
	for _, c := range counts {
		switch {
		case c.n >= c.min:
		case c.min == 0:
			return fmt.Errorf("%s must not be negative (0 means %s), not %d", c.flag, c.zero, c.n)
		default:
			return fmt.Errorf("%s must be at least %d, not %d", c.flag, c.min, c.n)
		}
	}
	if o.MaxRequestsJitter > 0 && o.MaxRequests == 0 {
		return fmt.Errorf("--max-requests-jitter %d needs --max-requests: without it replicas are never recycled", o.MaxRequestsJitter)
	}
	if o.MinReady > o.Replicas {
		return fmt.Errorf("--min-ready %d is more than --replicas %d: /readyz would never answer 200", o.MinReady, o.Replicas)
	}
	return nil
}

// checkBatch checks the --batch-* flags: a path and an endpoint, both
// absolute and apart, a size and a wait within their bounds.
func (o Options) checkBatch() error {
	c := o.Batch
	switch {
	case c.Path == "" && c.Endpoint != "":
		return fmt.Errorf("--batch-endpoint %s needs --batch-path, the path whose requests are batched", c.Endpoint)
	case c.Path == "":
		return nil
	case !strings.HasPrefix(c.Path, "/"):
		return fmt.Errorf("--batch-path %q must start with /", c.Path)
	case c.Endpoint == "":
		return fmt.Errorf("--batch-path %s needs --batch-endpoint, the replicas' path that takes a JSON array of requests", c.Path)
	case !strings.HasPrefix(c.Endpoint, "/"):
		return fmt.Errorf("--batch-endpoint %q must start with /", c.Endpoint)
	case c.Endpoint == c.Path:
		return fmt.Errorf("--batch-endpoint %s is --batch-path too: a request that goes alone must reach the replicas' own single path", c.Endpoint)
	case c.Max < 2 || c.Max > balancer.MaxBatchMax:
		return fmt.Errorf("--batch-max must be from 2 to %d, not %d", balancer.MaxBatchMax, c.Max)
	case c.Wait <= 0 || c.Wait > balancer.MaxBatchWait:
		return fmt.Errorf("--batch-wait must be more than 0 and at most %s, not %s", balancer.MaxBatchWait, c.Wait)
	}
	return nil
}

// checkAutoscale checks the bounds of --replicas MIN:MAX. The ports and
// the descriptor budget are planned for MAX (MostReplicas), so a MAX past
// them is refused there.
func (o Options) checkAutoscale() error {
	switch {
	case o.MaxReplicas < 0:
		return fmt.Errorf("--replicas %d:%d: MAX must be at least MIN", o.Replicas, o.MaxReplicas)
	case !o.Autoscaled():
		return nil
	case o.MaxReplicas < o.Replicas:
		return fmt.Errorf("--replicas %d:%d: MAX must be at least MIN, such as %d:%d", o.Replicas, o.MaxReplicas, o.MaxReplicas, o.Replicas)
	case o.MostInflight() == 0:
		return fmt.Errorf("--replicas %d:%d needs a cap on requests in flight (--max-inflight auto or a number, not 0): autoscaling adds replicas when requests wait in the proxy's queue, and with no cap none ever does", o.Replicas, o.MaxReplicas)
	}
	return nil
}

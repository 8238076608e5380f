package main

import "github.com/mattingctl/mattingctl/internal/control"

// replicaLatency returns replica r's latency over the last minute, p50
// and p99 in milliseconds, and whether the instance reported any. top
// shows its P50 and P99 columns only while some replica has them.
func replicaLatency(r control.ReplicaStatus) (p50, p99 float64, ok bool) {
	return r.P50Ms, r.P99Ms, r.P50Ms > 0 || r.P99Ms > 0
}

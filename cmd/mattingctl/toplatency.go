package main

import "github.com/mattingctl/mattingctl/internal/control"

// replicaLatency returns replica r's latency over the last minute, p50
// and p99 in milliseconds, and whether the instance reported any. top
// shows its P50 and P99 columns only while some replica has them.
//
// MERGE: control.ReplicaStatus does not carry latency yet. Once it has
// the fields P50Ms and P99Ms (json "p50_ms", "p99_ms"), the body becomes
//
//	return r.P50Ms, r.P99Ms, r.P50Ms > 0 || r.P99Ms > 0
func replicaLatency(r control.ReplicaStatus) (p50, p99 float64, ok bool) {
	return 0, 0, false
}

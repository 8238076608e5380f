package admin

// The metrics /metrics exports, all prefixed mattingctl_. Deployment
// examples (a HorizontalPodAutoscaler on in-flight requests) are checked
// against this list.
const (
	MetricRequests        = "mattingctl_requests_total"                // counter {replica, code}
	MetricRequestDuration = "mattingctl_request_duration_seconds"      // histogram {replica}
	MetricInflight        = "mattingctl_inflight_requests"             // gauge {replica}
	MetricMaxInflight     = "mattingctl_max_inflight_requests"         // gauge, per replica cap (0: none), or auto's upper bound
	MetricReplicaLimit    = "mattingctl_replica_limit"                 // gauge {replica}: its cap now, learned under auto
	MetricQueueLength     = "mattingctl_queue_length"                  // gauge
	MetricRejected        = "mattingctl_rejected_total"                // counter: 503 from the queue or no replica
	MetricRetried         = "mattingctl_retried_total"                 // counter
	MetricFailed          = "mattingctl_failed_total"                  // counter: 502 and 504
	MetricBrokenOff       = "mattingctl_responses_broken_off_total"    // counter {cause}: send or upstream timeout
	MetricRestarts        = "mattingctl_replica_restarts_total"        // counter {replica, reason}
	MetricReplicaUp       = "mattingctl_replica_up"                    // gauge {replica}: 1 when ready
	MetricReplicaCPU      = "mattingctl_replica_cpu_percent"           // gauge {replica}
	MetricReplicaRSS      = "mattingctl_replica_resident_memory_bytes" // gauge {replica}
	MetricReplicasDesired = "mattingctl_replicas_desired"              // gauge
	MetricAutoscale       = "mattingctl_autoscale_replicas"            // gauge {bound}: min, max, target under --replicas MIN:MAX
	MetricConns           = "mattingctl_client_connections"            // gauge: open now
	MetricMaxConns        = "mattingctl_max_client_connections"        // gauge: --max-conns
	MetricLogLinesDropped = "mattingctl_log_lines_dropped_total"       // counter: stdout/stderr blocked or gone

	MetricAccessLogLinesDropped = "mattingctl_access_log_lines_dropped_total" // counter: access log slow, blocked or failing
	MetricOutputLinesOverRate   = "mattingctl_output_lines_over_rate_total"   // counter: replica output past --output-rate

	MetricQuarantined    = "mattingctl_quarantined_total"     // counter: requests that killed or reset replicas twice
	MetricQuarantineHits = "mattingctl_quarantine_hits_total" // counter: requests refused at once as quarantined
	MetricClientLimited  = "mattingctl_client_limited_total"  // counter: uploads over their address's share (429) or too slow (408)

	MetricBatches         = "mattingctl_batches_total"          // counter: batches sent to the replicas (--batch-path)
	MetricBatchedRequests = "mattingctl_batched_requests_total" // counter: requests sent in batches
	MetricBatchesSplit    = "mattingctl_batches_split_total"    // counter: batches answered not as a batch, their requests sent alone

	MetricRequestDurationQuantile = "mattingctl_request_duration_quantile_seconds" // gauge {quantile}: 0.5, 0.95, 0.99 of the last minute, all replicas
)

// MetricNames lists every metric /metrics exports.
var MetricNames = []string{
	MetricRequests, MetricRequestDuration, MetricInflight, MetricMaxInflight, MetricReplicaLimit, MetricQueueLength,
	MetricRejected, MetricRetried, MetricFailed, MetricBrokenOff, MetricRestarts, MetricReplicaUp, MetricReplicaCPU,
	MetricReplicaRSS, MetricReplicasDesired, MetricAutoscale, MetricConns, MetricMaxConns, MetricLogLinesDropped,
	MetricAccessLogLinesDropped, MetricOutputLinesOverRate, MetricQuarantined, MetricQuarantineHits, MetricClientLimited,
	MetricBatches, MetricBatchedRequests, MetricBatchesSplit,
	MetricRequestDurationQuantile,
}

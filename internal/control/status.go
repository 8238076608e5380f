// Package control is the contract between a running instance and the
// commands that talk to it: the wire types, the Unix socket they travel
// over, its server and its client. It knows nothing of processes or
// proxies, so `status`, `scale` and `down` link none of the runtime.
package control

import (
	"net"
	"time"
)

// State is a replica's place in its life cycle.
type State string

// The states a replica moves through: starting -> ready -> (draining ->
// stopped | backoff -> starting | failed); ready <-> unhealthy -> backoff.
const (
	Starting State = "starting" // process started, not yet ready
	Ready    State = "ready"    // in rotation
	Draining State = "draining" // out of rotation, finishing its requests
	Backoff  State = "backoff"  // crashed, waiting to be restarted
	Failed   State = "failed"   // crashed too often, or never became ready; not retried
	Stopped  State = "stopped"  // stopped on purpose
	// Unhealthy: ready, then failed --unhealthy-after liveness checks in a
	// row; out of rotation until one passes, restarted after
	// --restart-unhealthy-after.
	Unhealthy State = "unhealthy"
)

// Status is what `mattingctl status --json` prints.
type Status struct {
	Name string `json:"name"`
	// Host is the address the proxy listens on (--host): empty for every
	// interface. Port is its port.
	Host string `json:"host"`
	Port int    `json:"port"`
	// URL is the proxy's URL, as up prints it: with every interface, it
	// names this machine by its hostname.
	URL       string    `json:"url"`
	Pid       int       `json:"pid"`
	Desired   int       `json:"desired"`
	Command   []string  `json:"command"`
	Policy    string    `json:"policy"`
	StartedAt time.Time `json:"started_at"`
	// Admin is the admin listener's address (/metrics, /livez, /readyz),
	// empty when it is off.
	Admin string `json:"admin"`
	// MaxInflight is each replica's cap on requests in flight, 0 meaning
	// none; under --max-inflight auto, the upper bound of the caps the
	// replicas learn (AdaptiveInflight).
	MaxInflight int `json:"max_inflight"`
	// AdaptiveInflight holds the bounds of --max-inflight auto, whose
	// replicas each learn their cap (ReplicaStatus.Limit); null when the
	// cap is fixed.
	AdaptiveInflight *InflightBounds `json:"adaptive_inflight,omitempty"`
	// Autoscale is the autoscaler's state under --replicas MIN:MAX; null
	// when the count was fixed from the start.
	Autoscale *AutoscaleStatus `json:"autoscale,omitempty"`
	// Queued is the number of requests waiting for a replica with room,
	// out of at most QueueMax.
	Queued   int `json:"queued"`
	QueueMax int `json:"queue_max"`
	// Rejected counts requests answered 503 (no ready replica, queue full,
	// predicted wait or queue timeout, body buffers full, upgrades past
	// their cap), Retried the attempts sent to another replica after
	// one failed, and Failed the requests no replica answered (502, 504).
	Rejected uint64 `json:"rejected"`
	Retried  uint64 `json:"retried"`
	Failed   uint64 `json:"failed"`
	// Quarantined counts the requests put in quarantine because their
	// deliveries killed or reset replicas twice (--quarantine), and
	// QuarantineHits the requests then refused at once as quarantined;
	// both are in Failed too. ClientLimited counts the uploads refused
	// (429) for their client address's share, or cut (408) for
	// --min-upload-rate.
	Quarantined    uint64 `json:"quarantined"`
	QuarantineHits uint64 `json:"quarantine_hits"`
	ClientLimited  uint64 `json:"client_limited"`
	// SendTimeouts counts the responses the proxy broke off because their
	// client took nothing for --send-timeout, UpstreamTimeouts those broken
	// off because their replica sent nothing for --upstream-timeout after
	// its response headers.
	SendTimeouts     uint64 `json:"send_timeouts"`
	UpstreamTimeouts uint64 `json:"upstream_timeouts"`
	// Batches counts the batches sent to the replicas (--batch-path) and
	// Batched the requests in them; BatchesSplit the batches a replica
	// answered not as a batch, whose requests then went alone.
	Batches      uint64 `json:"batches"`
	Batched      uint64 `json:"batched"`
	BatchesSplit uint64 `json:"batches_split"`
	// Latency sums up every replica's response times of the last minute
	// together, as ReplicaStatus does each one's.
	Latency LatencyStatus `json:"latency"`
	// Settings holds every setting of up in force, by flag name, with its
	// value as the flag takes it (auto where derived at start), the
	// command under "command"; the admin token is left out.
	Settings map[string]string `json:"settings"`
	// Changed holds the settings that a reload or set has made differ
	// from those up started with, with their values now; ChangedAt and
	// ChangedBy ("reload" or "set") say when and how the last change was
	// made. Empty, and null, when none has been.
	Changed   map[string]string `json:"changed,omitempty"`
	ChangedAt *time.Time        `json:"changed_at,omitempty"`
	ChangedBy string            `json:"changed_by,omitempty"`
	// Replicas lists every replica by id. A replica removed by a scale-down
	// stays listed, draining, until its process has stopped, so it can
	// appear next to a new replica with the same id.
	Replicas []ReplicaStatus `json:"replicas"`
	// Conns is the number of client connections the proxy holds open now,
	// out of at most MaxConns (--max-conns); past it new connections wait
	// in the kernel's listen backlog.
	Conns    int64 `json:"conns"`
	MaxConns int   `json:"max_conns"`
	// MaxUpgraded caps the upgraded connections (WebSocket) open at once
	// over all replicas (--max-upgraded); each replica's are in
	// ReplicaStatus.Upgraded.
	MaxUpgraded int `json:"max_upgraded"`
	// Services lists each service of an instance of several (the config
	// file's services:), with its own status; the fields above then sum
	// theirs up, and Replicas lists every service's, each with its
	// Service. Empty for an instance of one service.
	Services []Status `json:"services,omitempty"`
	// Service and Route are a service's name and route (a path prefix, or
	// host:NAME), in Services; StripPrefix says whether the route's
	// prefix is removed before a request is forwarded.
	Service     string `json:"service,omitempty"`
	Route       string `json:"route,omitempty"`
	StripPrefix bool   `json:"strip_prefix,omitempty"`
}

// AllInterfaces reports whether host, as --host takes it, means every
// interface: empty, 0.0.0.0 or ::.
func AllInterfaces(host string) bool {
	ip := net.ParseIP(host)
	return host == "" || ip != nil && ip.IsUnspecified()
}

// Ready counts the replicas in rotation.
func (st Status) Ready() int {
	n := 0
	for _, r := range st.Replicas {
		if r.State == Ready {
			n++
		}
	}
	return n
}

// ReplicaStatus is one replica in Status.
type ReplicaStatus struct {
	// Service is the replica's service in an instance of several;
	// empty in one of one.
	Service string `json:"service,omitempty"`
	ID      int    `json:"id"`
	Name    string `json:"name"`
	Port    int    `json:"port"`
	// Pid is 0 while no process runs (backoff, failed, stopped).
	Pid   int   `json:"pid"`
	State State `json:"state"`
	// Restarts counts the processes started after the first.
	Restarts int `json:"restarts"`
	// Inflight counts requests being served now; Requests counts the
	// completed ones and Errors those that failed (no answer or 5xx).
	Inflight int64 `json:"inflight"`
	// MaxInflight is Status.MaxInflight: the cap set, or the upper bound
	// under --max-inflight auto; 0 means none.
	MaxInflight int `json:"max_inflight"`
	// Limit is the replica's cap on Inflight now, 0 meaning none: the one
	// set, or under --max-inflight auto the one it has learned, which
	// moves as it serves (0 there while no process has been in rotation).
	Limit      int     `json:"limit"`
	Weight     int     `json:"weight,omitempty"`
	Requests   uint64  `json:"requests"`
	Errors     uint64  `json:"errors"`
	CPUPercent float64 `json:"cpu_percent"`
	RSSBytes   uint64  `json:"rss_bytes"`
	// StartedAt is when the running process started; null when none runs.
	StartedAt *time.Time `json:"started_at"`
	// LastExit is how the previous process ended ("exit code 1").
	LastExit string `json:"last_exit,omitempty"`
	// LastRestart is why the current process was started, when it is not
	// the first: "crash: exit code 1", "rolling restart", "memory",
	// "max-requests" or "scale".
	LastRestart string `json:"last_restart,omitempty"`
	// GPU is the CUDA_VISIBLE_DEVICES the replica was given.
	GPU string `json:"gpu,omitempty"`
	// Error says why a failed replica failed, or why its last start failed
	// while it waits to try again (backoff).
	Error string `json:"error,omitempty"`
	// HealthError is the last liveness check's failure; empty once one
	// passes.
	HealthError string `json:"health_error,omitempty"`
	// NotReady is why a starting replica is not ready yet: its last
	// readiness check's failure, "GET /health -> 503" say; empty once it
	// is ready.
	NotReady string `json:"not_ready,omitempty"`
	// OldestInflightMs is the age of the oldest request in flight on the
	// replica, in milliseconds; 0 when none is.
	OldestInflightMs int64 `json:"oldest_inflight_ms"`
	// Upgraded counts the replica's upgraded connections open now
	// (WebSocket tunnels): past their 101 they are not in Inflight and
	// hold no MaxInflight slot.
	Upgraded int64 `json:"upgraded"`
	// CPUs lists the CPUs the replica's processes are pinned to, as
	// taskset -c writes them ("0-3"); empty when not pinned.
	CPUs string `json:"cpus,omitempty"`
	// RPS is the replica's responses per second over the last 10
	// seconds. P50Ms and P99Ms are the median and 99th percentile of its
	// response times (from handing the request to the replica until its
	// response has been passed on) over the last 50 to 60 seconds, in
	// milliseconds, each within 3.2% of the true value; 0 when it
	// answered nothing in that time.
	RPS   float64 `json:"rps"`
	P50Ms float64 `json:"p50_ms"`
	P99Ms float64 `json:"p99_ms"`
}

// LatencyStatus is the quantiles of response times over the last 50 to
// 60 seconds, in milliseconds, each within 3.2% of the true value; all 0
// when Responses, the number of responses in that time, is.
type LatencyStatus struct {
	Responses uint64  `json:"responses"`
	P50Ms     float64 `json:"p50_ms"`
	P95Ms     float64 `json:"p95_ms"`
	P99Ms     float64 `json:"p99_ms"`
}

// DashboardAccess is what `mattingctl dashboard` gets from an instance.
type DashboardAccess struct {
	// URL is the dashboard's address, http://HOST:PORT/; a loopback host
	// stands for an admin listener on every interface.
	URL string `json:"url"`
	// Token is what the dashboard's actions need, as
	// "Authorization: Bearer TOKEN", and what its page takes as ?token=.
	Token string `json:"token"`
}

// ScaleResult is what a scale call changed.
type ScaleResult struct {
	Name    string          `json:"name"`
	From    int             `json:"from"`
	To      int             `json:"to"`
	Started []ReplicaStatus `json:"started"`
	Stopped []ReplicaStatus `json:"stopped"`
	// Errors lists replicas that were started but did not become ready.
	Errors []string `json:"errors,omitempty"`
	// Warnings are what the scale did that may not be what was meant,
	// such as going below --min-ready.
	Warnings []string `json:"warnings,omitempty"`
	// AutoscaleOff says that the scale turned autoscaling off, when it
	// was on: a count set by hand stays.
	AutoscaleOff string `json:"autoscale_off,omitempty"`
}

// AutoscaleStatus is what the autoscaler of --replicas MIN:MAX is doing.
type AutoscaleStatus struct {
	Min int `json:"min"`
	Max int `json:"max"`
	// On is false once a scale by hand (`mattingctl scale N`) fixed the
	// count.
	On bool `json:"on"`
	// Target is the count the load asks for: more than Desired while the
	// machine has no room for more replicas, or while they start.
	Target int `json:"target"`
	// ScaleUpDelay and ScaleDownDelay are the delays in force, in
	// seconds.
	ScaleUpDelay   float64 `json:"scale_up_delay"`
	ScaleDownDelay float64 `json:"scale_down_delay"`
	// Last is the last decision and why ("scaled 2→3: requests queued for
	// 5.0 s ...", "held at 1, wants 4: no room: ..."), and LastAt when it
	// was made; empty and null before the first.
	Last   string     `json:"last,omitempty"`
	LastAt *time.Time `json:"last_at,omitempty"`
}

// RestartResult is what a rolling restart did.
type RestartResult struct {
	Name string `json:"name"`
	// Replaced lists, in order, the replicas that now run a new process.
	Replaced []Replacement `json:"replaced"`
	// Skipped lists replicas that were not running and are being started
	// anyway (starting, in backoff).
	Skipped []string `json:"skipped,omitempty"`
	// Error says where the restart stopped, if it did.
	Error string `json:"error,omitempty"`
	// CertError says why the proxy's TLS certificate could not be re-read;
	// the previous one is still served.
	CertError string `json:"cert_error,omitempty"`
}

// Replacement is one replica's swap in a rolling restart.
type Replacement struct {
	Name    string `json:"name"`
	OldPid  int    `json:"old_pid"`
	NewPid  int    `json:"new_pid"`
	OldPort int    `json:"old_port"`
	NewPort int    `json:"new_port"`
	// Revived is set when the replica had failed: it had no process
	// (OldPid is 0) and was started afresh.
	Revived bool `json:"revived,omitempty"`
}

// restartRequest is the body of POST /v1/restart. Without Replica (or
// with no body at all) every replica is restarted.
type restartRequest struct {
	Replica *int `json:"replica"`
}

// scaleRequest is the body of POST /v1/scale. Replicas is a pointer so
// that a body without it is an error, not a scale to zero.
type scaleRequest struct {
	Replicas *int `json:"replicas"`
}

// apiError is the body of every answer that is not 200.
type apiError struct {
	Error string `json:"error"`
}

// InflightBounds are the least and most cap --max-inflight auto lets a
// replica learn.
type InflightBounds struct {
	Min int `json:"min"`
	Max int `json:"max"`
}

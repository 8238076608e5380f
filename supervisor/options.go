// Package supervisor owns a mattingctl instance's desired state: it starts
// the replicas, restarts them when they crash, replaces them one at a time
// for a rolling restart or recycling, drains and stops them when scaling
// down or stopping, and tells the balancer which ones are ready.
package supervisor

import (
	"io"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/mattingctl/mattingctl/balancer"
)

// Options configure one instance, as `mattingctl up` takes them: one
// group per concern, each embedded so that code reads opts.Replicas or
// opts.MaxInflight. DefaultOptions are `up`'s defaults. Every field says
// what its zero value means, the same as its flag's 0 (or empty); where
// zero means nothing sensible, resolve (resolve.go) refuses it, naming the
// flag.
type Options struct {
	ReplicaOptions
	AutoscaleOptions
	ProxyOptions
	HealthOptions
	RecycleOptions
	PlacementOptions
	AdminOptions
	AccessLogOptions
	TLSOptions
	ReloadOptions

	// Name selects the instance, so several can run; it names the control
	// socket. Empty means control.DefaultName.
	Name string
	// StateDir holds the control socket; empty means control.StateDir().
	StateDir string
	// Stdout and Stderr receive the replicas' prefixed output; nil means
	// io.Discard. Lines reach them through bounded queues that never block
	// a replica (replica.NewOutput); a *nonblock.Writer is used as given.
	Stdout, Stderr io.Writer
	// Logger receives the supervisor's own log; nil means none.
	Logger hclog.Logger
	// Backoff governs restarts after crashes; the zero value uses the
	// documented defaults.
	Backoff CrashBackoff
	// Reaper is the mattingctl binary, which the supervisor runs again as
	// the instance's reaper (replica.StartReaper): a small process that
	// outlives it and, should it die without stopping (kill -9), kills at
	// once what the replicas left running. Empty means no reaper: that is
	// swept at the next `up` of the name instead.
	Reaper string
	// OnReady, if not nil, is called once, from Run, when every initial
	// replica is ready: the moment the "ready" line is logged. nil means
	// nobody is told. (`up` tells systemd READY=1 then.)
	OnReady func()
	// OnStopping, if not nil, is called once, from Run, when the instance
	// begins to stop, ready or not: before DrainDelay, before the proxy
	// stops accepting. nil means nobody is told. (`up` tells systemd
	// STOPPING=1 then.)
	OnStopping func()
	// Services, when not empty, are the model servers of an instance of
	// several behind its one port (services.go); Command and the other
	// settings of one service are then theirs, not these.
	Services []Service

	// shareOf, in a service's Options, is how many services share the
	// open-file limit: each plans its replicas and connections within
	// its share. 0 means the instance has the limit to itself.
	shareOf int
}

// ReplicaOptions say what the replicas run and how they start and stop.
type ReplicaOptions struct {
	// Command is the model server's command line. {port} and {replica} in
	// its arguments are replaced per replica.
	Command []string
	// Replicas is how many replicas to start with, at least 1; with
	// MaxReplicas, the least the autoscaler keeps.
	Replicas int
	// BasePort is replica 1's port, replica k listening on BasePort+k-1;
	// zero means Port+1.
	BasePort int
	// Env holds extra KEY=VALUE pairs for every replica.
	Env []string
	// StartConcurrency bounds how many replicas start (until ready) at
	// once; zero means all at once.
	StartConcurrency int
	// ReadyTimeout bounds a replica's start, until ready; it must be more
	// than zero.
	ReadyTimeout time.Duration
	// StopTimeout bounds a graceful stop: in-flight requests finishing and
	// replicas exiting after SIGTERM, before SIGKILL. It must be more than
	// zero.
	StopTimeout time.Duration
	// Warmup is a file describing a request (replica.LoadWarmup) sent
	// WarmupCount times to every new process of a replica once it is ready
	// and before it gets traffic; empty means no warm-up.
	Warmup string
	// WarmupCount is how many times the warm-up request is sent, one after
	// another; it must be at least 1.
	WarmupCount int
	// OutputRate bounds each replica's output passed on to Stdout and
	// Stderr, both streams together, in bytes a second; lines past it are
	// dropped and counted (replica.Output.Rate). Zero means no bound.
	OutputRate int64
}

// AutoscaleOptions let the replica count follow the load, between
// Replicas and MaxReplicas (`--replicas MIN:MAX`; autoscale.go).
type AutoscaleOptions struct {
	// MaxReplicas, when more than 0, is the most replicas the autoscaler
	// runs, at least Replicas, which is then the least; zero means the
	// count is Replicas, fixed.
	MaxReplicas int
	// ScaleUpDelay is how long requests must have waited in the proxy's
	// queue, at every reading, before replicas are added; more than 0.
	ScaleUpDelay time.Duration
	// ScaleDownDelay is how long the load must have fitted in fewer
	// replicas, with nothing queued, before one is removed; more than 0.
	ScaleDownDelay time.Duration
	// MemAvailable reads the memory free for another replica, in bytes;
	// nil means the system's (MemAvailable in /proc/meminfo, through
	// gopsutil). Tests set it to fake a machine short of memory.
	MemAvailable func() (uint64, error)
}

// Autoscaled reports whether the replica count follows the load.
func (o *AutoscaleOptions) Autoscaled() bool { return o.MaxReplicas > 0 }

// MostReplicas is the most replicas the instance runs without a scale by
// hand: MaxReplicas when autoscaled, otherwise Replicas. Ports, the
// descriptor budget and --cpus auto are planned for it.
func (o *Options) MostReplicas() int { return max(o.Replicas, o.MaxReplicas) }

// ProxyOptions say where the proxy listens, how it picks a replica, what
// it speaks to them and, in Limits, how much it takes on.
type ProxyOptions struct {
	// Host is the proxy's listen address; empty means all interfaces, as
	// nginx's `listen 9110`.
	Host string
	// Port is the proxy's port, 1-65535.
	Port int
	// Policy names the balancing policy (balancer.PolicyNames); empty
	// means least_conn.
	Policy string
	// Weights gives replica k the weight Weights[k-1] under the weighted
	// policy; replicas past the list weigh 1.
	Weights []int
	// UpstreamProtocol is what the proxy speaks to the replicas:
	// ProtocolHTTP1 or ProtocolH2C. Empty means ProtocolHTTP1.
	UpstreamProtocol string
	// Limits are the proxy's limits, defined (with what each zero means)
	// in balancer and passed to it as they are.
	balancer.Limits
}

// HealthOptions say when a replica is ready, when it is unhealthy, and
// when the instance is.
type HealthOptions struct {
	// Health is the path a replica must answer 2xx on before it gets
	// traffic, or "grpc" or "grpc:SERVICE" for the standard gRPC health
	// check (which needs UpstreamProtocol h2c); empty means its port
	// accepting a connection is enough.
	Health string
	// HealthInterval is how often every ready replica's liveness is
	// checked (GET Health, or a TCP connect without it); zero means never.
	HealthInterval time.Duration
	// HealthTimeout bounds one liveness check; it must be more than zero
	// when HealthInterval is.
	HealthTimeout time.Duration
	// UnhealthyAfter is how many liveness checks in a row a replica must
	// fail to leave rotation as unhealthy; at least 1 when HealthInterval
	// is set. One passing check brings it back.
	UnhealthyAfter int
	// RestartUnhealthyAfter is how long a replica may stay unhealthy
	// before its process group is killed and it is restarted; zero means
	// at once.
	RestartUnhealthyAfter time.Duration
	// MinReady is how many replicas must be ready for /readyz to answer
	// 200: at least 1 and at most Replicas. Scaling below it is allowed,
	// with a warning.
	MinReady int
	// DrainDelay is how long, after SIGTERM or SIGINT, the proxy keeps
	// serving while /readyz answers 503, so that load balancers and
	// orchestrator endpoints stop sending first; zero means no delay.
	DrainDelay time.Duration
}

// RecycleOptions say when a replica is replaced by a fresh process,
// without dropping a request.
type RecycleOptions struct {
	// MaxRequests recycles a replica after it has served this many
	// requests plus a random 0..MaxRequestsJitter; zero means never (and
	// then MaxRequestsJitter must be zero too).
	MaxRequests int
	// MaxRequestsJitter spreads the recycling of replicas that started
	// together; zero means none.
	MaxRequestsJitter int
	// MaxMemory recycles a replica whose process group's resident memory
	// passes this many bytes; zero means never.
	MaxMemory int64
}

// PlacementOptions say which CPUs and GPUs each replica gets.
type PlacementOptions struct {
	// CPUs pins replica k, and every thread and process it starts, to the
	// CPUs in CPUs[(k-1) % len(CPUs)], and sets the thread-count variables
	// (OMP_NUM_THREADS and the others in threadVars) it has not been given
	// to that set's size. Nil means no pinning. It has no effect where CPUs
	// cannot be pinned (replica.PinningSupported: Linux only).
	CPUs [][]int
	// GPUs are handed out to replicas round-robin as CUDA_VISIBLE_DEVICES:
	// replica k gets GPUs[(k-1) % len(GPUs)]. Nil means none is set.
	GPUs []string
}

// AdminOptions configure the admin listener: /metrics, /livez, /readyz
// and the dashboard.
type AdminOptions struct {
	// Admin is the admin listener's address, HOST:PORT; empty means
	// 127.0.0.1 and the proxy port minus one, AdminOff none.
	Admin string
	// AdminToken is needed as a bearer token by the dashboard's actions
	// (scale, rolling restart), on every admin address, loopback included,
	// and by its API to show the command line. Empty means one generated
	// at start. Either way it is kept, for its owner only, in the state
	// directory (control.TokenPath), and `mattingctl dashboard` prints the
	// dashboard's URL with it.
	AdminToken string
	// AdminMaxConns caps the admin listener's connections open at once;
	// past it a new one waits in the kernel's listen backlog. It is part
	// of the file-descriptor budget (fdbudget.Plan) and must be at least
	// 1.
	AdminMaxConns int
}

// AdminOff is the Admin value that turns the admin listener off.
const AdminOff = "none"

// AccessLogOptions configure the access log.
type AccessLogOptions struct {
	// AccessLog is where a line per request answered goes: a file,
	// created if missing and appended to, "-" for Stdout, or empty (or
	// AccessLogOff) for none.
	AccessLog string
	// AccessLogFormat is the access log's format, "combined" (nginx's,
	// and mattingctl's fields after it) or "json"; empty means combined.
	AccessLogFormat string
}

// TLSOptions make the proxy port HTTPS.
type TLSOptions struct {
	// TLSCert and TLSKey are the PEM files of the proxy port's certificate
	// (chain) and private key: both make the port HTTPS, with HTTP/2 by
	// ALPN; the pair is re-read on SIGHUP and on a rolling restart. Both
	// empty mean cleartext; one without the other is refused.
	TLSCert string
	TLSKey  string
}

// ReloadOptions let a running instance's settings change: `mattingctl
// reload`, `mattingctl set` and SIGHUP (reload.go).
type ReloadOptions struct {
	// Source is where the instance's settings came from, to read them
	// again; nil means they cannot change: reload and set are refused.
	Source *Source
	// OnReload, when not nil, is called with ReloadStarted when a reload
	// or set begins, and with ReloadDone when it has ended: applied, after
	// the rolling restart any change needed (whatever its outcome), or
	// refused. A service manager's RELOADING=1 and READY=1: one that sent
	// SIGHUP waits for the READY=1 even when nothing changed.
	OnReload func(phase string)
}

// The phases OnReload is called with.
const (
	ReloadStarted = "reloading"
	ReloadDone    = "ready"
)

// Source is how the instance's settings are read again: up's command
// line, and its config file (-f) if it was given one.
type Source struct {
	// File is the config file's path; empty when up was given none, and
	// then reload is refused (set still works).
	File string
	// Content is the file as up read it at start.
	Content []byte
	// Load returns the Options that up's command line gives with content
	// as the config file's, and then settings (FLAG=VALUE, up's flag
	// names) applied on top; and the values of up's settings that are
	// not Options (its log level and format), which cannot change while
	// the instance runs. An error names the file and line, or the
	// setting, at fault.
	Load func(content []byte, settings []string) (Options, map[string]string, error)
	// Fixed are those values as up started with them.
	Fixed map[string]string
	// LoadService is Load for an instance of several services: the
	// instance's Options as the file gives them, Services and all, with
	// settings applied to the service called name only (none when name is
	// empty). Nil means an instance of several cannot change its
	// settings: reload and set are refused.
	LoadService func(name string, content []byte, settings []string) (Options, map[string]string, error)
}

// DefaultOptions returns Options as `mattingctl up` defaults them: the
// one place their defaults are set. `up`'s flags register with these
// values, a config file applies on top of them, and tests start from them.
// A zero value here is the field's own zero meaning (BasePort: the proxy
// port plus one; MaxConns and MaxUpgraded: derived from the open-file
// limit; AdminToken: generated).
func DefaultOptions() Options {
	return Options{
		ReplicaOptions: ReplicaOptions{
			Replicas:     1,
			ReadyTimeout: 5 * time.Minute,
			StopTimeout:  30 * time.Second,
			WarmupCount:  1,
			// Far more than a model server logs, far less than the core
			// that 100 MB a second of lines cost to pass on.
			OutputRate: 1 << 20,
		},
		// Up within seconds of a queue that lasts, down after five
		// minutes of spare capacity: the HPA's default stabilisation
		// windows (0 up, 300 s down), with a few seconds up so that a
		// burst the queue absorbs starts nothing.
		AutoscaleOptions: AutoscaleOptions{
			ScaleUpDelay:   5 * time.Second,
			ScaleDownDelay: 5 * time.Minute,
		},
		ProxyOptions: ProxyOptions{
			Port:             9110, // the original nginx setup's
			Policy:           "least_conn",
			UpstreamProtocol: ProtocolHTTP1,
			Limits:           balancer.DefaultLimits(),
		},
		// Liveness checks as a Kubernetes liveness probe with
		// periodSeconds 5, timeoutSeconds 2 and failureThreshold 3; an
		// unhealthy replica is restarted after 30s out of rotation.
		HealthOptions: HealthOptions{
			HealthInterval:        5 * time.Second,
			HealthTimeout:         2 * time.Second,
			UnhealthyAfter:        3,
			RestartUnhealthyAfter: 30 * time.Second,
			MinReady:              1,
		},
		// Probes, scrapes and a few dashboards need a handful; 64 keeps
		// a flood of connections to the admin port from taking the
		// descriptors of the proxy and the replicas.
		AdminOptions:     AdminOptions{AdminMaxConns: 64},
		AccessLogOptions: AccessLogOptions{AccessLogFormat: "combined"},
	}
}
